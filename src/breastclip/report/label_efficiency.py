"""The label-efficiency curve in the report: mean +- sd over seeds per method and budget, its figure and table.

The rows come from ``label_efficiency.csv`` (written by :mod:`breastclip.pipeline.label_efficiency`): one per
method, seed and budget, with the test figures of that refit. Nothing here computes a metric; it averages them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from breastclip.report import figures as F
from breastclip.report.content import FigureRef, Note, Section, Table

FIGURE_KEY = "label_efficiency"  # figures/label_efficiency.png, the run folder's figure of the same name


def curve_summary(table: pd.DataFrame, metric: str = "roc_auc") -> pd.DataFrame:
    """One row per method, budget kind and value: ``n_train``, ``mean`` and ``sd`` (ddof 1) of ``metric`` over the
    seeds that produced a figure, ``n_seeds``; shots before fractions, small budgets first."""
    rows = []
    for (method, budget, value), g in table.groupby(["method", "budget", "value"], sort=True):
        v = pd.to_numeric(g[metric], errors="coerce").to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        rows.append({"method": str(method), "budget": str(budget), "value": float(value),
                     "n_train": int(round(float(g["n_train"].mean()))),
                     "mean": float(v.mean()) if len(v) else np.nan,
                     "sd": float(v.std(ddof=1)) if len(v) > 1 else np.nan, "n_seeds": int(len(v))})
    out = pd.DataFrame(rows, columns=["method", "budget", "value", "n_train", "mean", "sd", "n_seeds"])
    order = out["budget"].map({"shots": 0, "fraction": 1}).fillna(2)
    return out.assign(_o=order).sort_values(["_o", "value", "method"], kind="stable").drop(columns="_o")


def budget_label(budget: str, value: float, n_train: int) -> str:
    """``4/class (n=12)`` or ``10% (n=62)``."""
    return f"{value:g}/class (n={n_train})" if budget == "shots" else f"{value:.0%} (n={n_train})"


def curve_table(summary: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Methods as rows, budgets as columns, cells ``mean +- sd`` (``-`` where no seed produced a figure)."""
    cols: dict[str, dict[str, str]] = {}
    for r in summary.itertuples(index=False):
        cell = "-" if not np.isfinite(r.mean) else (
            f"{r.mean:.{digits}f}" + (f" \u00b1 {r.sd:.{digits}f}" if np.isfinite(r.sd) else ""))
        cols.setdefault(budget_label(r.budget, r.value, r.n_train), {})[r.method] = cell
    methods = sorted(summary["method"].unique())
    return pd.DataFrame({"method": methods, **{k: [v.get(m, "-") for m in methods] for k, v in cols.items()}})


def metric_label(table: pd.DataFrame) -> str:
    """The y axis: ``test ROC AUC (macro one-vs-rest, 3 classes)`` from the table's ``auc_definition``."""
    if "auc_definition" in table.columns and table["auc_definition"].notna().any():
        return f"test ROC AUC ({table['auc_definition'].dropna().iloc[0]})"
    return "test ROC AUC"


def draw(table: pd.DataFrame):
    """The curve figure of ``label_efficiency.csv`` rows (the run folder and the report draw the same one)."""
    return F.label_efficiency(curve_summary(table), metric_label=metric_label(table))


def protocol_text(table: pd.DataFrame) -> str:
    seeds = sorted({int(s) for s in table["seed"]})
    pool = str(table["pool"].iloc[0]) if "pool" in table.columns and len(table) else "train"
    return (f"Each method is refitted on nested, stratified subsets of its training pool ({pool}; the rows the main "
            f"fit used) and scored on the test split; seeds {', '.join(map(str, seeds))} draw different subsets. "
            "Shots keep n images of every class (class-balanced); fractions keep that share of every class (the "
            "pool's class mix), so the two designs are drawn in separate panels. Hyperparameters and ensemble "
            "members stay at the main fit's choice, made once on the full pool: small budgets are therefore "
            "slightly optimistic. The 100 % point is the leaderboard's own fit. Test figures describe the curve; "
            "they chose nothing.")


def label_efficiency_section(table: pd.DataFrame | None, fw) -> Section | None:
    """``Label efficiency``: the figure (same file as the run's figures/label_efficiency.png) and the table."""
    if table is None or not len(table):
        return None
    s = Section("Label efficiency")
    s.add(protocol_text(table))
    failed = table[table["roc_auc"].isna()] if "roc_auc" in table.columns else table.iloc[:0]
    if len(failed):
        what = sorted({f"{r.method} at {budget_label(r.budget, r.value, int(r.n_train))}"
                       for r in failed.itertuples(index=False)})
        s.add(Note(f"No test figure for {len(failed)} refit(s): {'; '.join(what)} (label_efficiency.csv gives "
                   "each reason).", "warn"))
    ref: FigureRef = fw(draw(table), FIGURE_KEY, "Label efficiency: test AUC against training images",
                        f"Mean over seeds; error bars: sd over seeds. {metric_label(table)}.")
    s.add(ref)
    s.add(Table(f"{FIGURE_KEY}_table", f"{metric_label(table)}, mean \u00b1 sd over seeds",
                curve_table(curve_summary(table)),
                caption="Columns: budget (images per class for shots, share of the pool for fractions) and n, the "
                        "training images of that refit. Test figures describe the curve; they chose nothing."))
    return s
