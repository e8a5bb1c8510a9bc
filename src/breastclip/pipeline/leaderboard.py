"""The leaderboard: methods x headline metrics with confidence intervals, and each method's paired comparison
against the best one (DeLong for binary ROC AUC without patient clusters, paired bootstrap otherwise)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.evaluation import Evaluation
from breastclip.report.markdown import md_cell, md_text

#: Metrics shown, in order, when present in the evaluations.
LEADERBOARD_METRICS = ("roc_auc", "average_precision", "accuracy", "balanced_accuracy", "f1_macro",
                       "sensitivity", "specificity")
METRIC_LABELS = {"roc_auc": "AUC", "average_precision": "AP", "accuracy": "Acc", "balanced_accuracy": "Bal. acc",
                 "f1_macro": "F1 (macro)", "sensitivity": "Sens", "specificity": "Spec",
                 "precision_macro": "Prec (macro)", "recall_macro": "Recall (macro)"}


def build_leaderboard(
    evaluations: Mapping[str, Evaluation],
    comparisons: pd.DataFrame | None,
    *,
    info: Mapping[str, Mapping[str, object]] | None = None,
    primary: str = "roc_auc",
    metrics: Sequence[str] = LEADERBOARD_METRICS,
) -> pd.DataFrame:
    """One row per method, best ``primary`` first; numeric columns ``<metric>``, ``<metric>_ci_lo/_hi``."""
    rows = []
    for label, ev in evaluations.items():
        headline = ev.headline
        row: dict = {"method": label, **(dict(info.get(label, {})) if info else {})}
        for m in metrics:
            h = headline.get(m)
            if h is None:
                continue
            row[m] = _f(h.get("estimate"))
            row[f"{m}_ci_lo"] = _f(h.get("ci_lo"))
            row[f"{m}_ci_hi"] = _f(h.get("ci_hi"))
        row["n_test"] = (ev.n.get("test") or {}).get("images")
        rows.append(row)
    board = pd.DataFrame(rows)
    if board.empty:
        return board
    key = primary if primary in board.columns else next((m for m in metrics if m in board.columns), None)
    if key is not None:
        board = board.sort_values(key, ascending=False, na_position="last", kind="mergesort")
    board = board.reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    best = board.loc[0, "method"]
    for col in ("vs_best_diff", "vs_best_ci_lo", "vs_best_ci_hi", "vs_best_p", "vs_best_p_holm", "vs_best_test"):
        board[col] = None
    if comparisons is not None and not comparisons.empty and key is not None:
        cmp = comparisons[(comparisons["metric"] == key) & (comparisons["baseline"] == best)]
        for _, r in cmp.iterrows():
            i = board.index[board["method"] == r["method"]]
            if len(i):
                board.loc[i, ["vs_best_diff", "vs_best_ci_lo", "vs_best_ci_hi", "vs_best_p", "vs_best_p_holm",
                              "vs_best_test"]] = [_f(r["diff"]), _f(r["ci_lo"]), _f(r["ci_hi"]), _f(r["p_value"]),
                                                  _f(r.get("p_holm")), r["test"]]
    board.attrs["primary"] = key
    board.attrs["best"] = best
    return board


def _f(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_ci(est, lo, hi, digits: int = 3) -> str:
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return "n/a"
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _vs_best_cell(r, fmt) -> str:
    """'best' for the top row, '' without a comparison, else ``fmt(diff, p)`` with the Holm-adjusted p-value
    (the raw one when no adjusted value exists)."""
    if int(r["rank"]) == 1:
        return "best"
    d = _f(r.get("vs_best_diff"))
    if d is None:
        return ""
    p = _f(r.get("vs_best_p_holm"))
    return fmt(d, p if p is not None else _f(r.get("vs_best_p")))


def display_rows(board: pd.DataFrame, metrics: Sequence[str] = LEADERBOARD_METRICS) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows (estimate [95% CI], and the primary metric's difference to the best)."""
    shown = [m for m in metrics if m in board.columns]
    primary = board.attrs.get("primary") or (shown[0] if shown else None)
    extra = [c for c in ("backbone", "head") if c in board.columns]
    header = ["#", "method", *extra, *[METRIC_LABELS.get(m, m) for m in shown],
              f"Δ{METRIC_LABELS.get(primary, primary)} vs best (p)" if primary else "vs best"]
    rows = []
    for _, r in board.iterrows():
        cells = [str(r["rank"]), str(r["method"]), *[str(r[c]) if r[c] is not None else "" for c in extra]]
        cells += [fmt_ci(_f(r[m]), _f(r.get(f"{m}_ci_lo")), _f(r.get(f"{m}_ci_hi"))) for m in shown]
        lo, hi = _f(r.get("vs_best_ci_lo")) or 0, _f(r.get("vs_best_ci_hi")) or 0
        cells.append(_vs_best_cell(r, lambda d, p, lo=lo, hi=hi: f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                                   + (f" (p={p:.3g})" if p is not None else "")))
        rows.append(cells)
    return header, rows


def to_markdown(board: pd.DataFrame, *, title: str = "Leaderboard (test split)") -> str:
    header, rows = display_rows(board)
    lines = [f"# {md_text(title)}", "", f"*{RESEARCH_ONLY}*", "",
             "| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    lines += ["", "Estimates with 95% bootstrap confidence intervals (patients resampled when patient ids exist). "
              "The last column is the paired difference to the best method on the same test images, with the "
              "Holm-adjusted p-value."]
    return "\n".join(lines) + "\n"


#: Columns of the terminal table (the full set with CIs is in leaderboard.md / .csv and the report).
TERMINAL_METRICS = ("roc_auc", "accuracy", "sensitivity", "specificity")


def rich_table(board: pd.DataFrame, *, title: str = "Leaderboard (test split)"):
    """A compact terminal table (fits 80 columns): AUC with its 95% CI, a few estimates, the paired difference
    to the best method with its Holm-adjusted p-value. The full table is leaderboard.md."""
    from rich.table import Table

    primary = board.attrs.get("primary") or "roc_auc"
    shown = [m for m in TERMINAL_METRICS if m in board.columns]
    backbones = sorted({str(b) for b in board.get("backbone", []) if b and not str(b).startswith("(")})
    if len(backbones) == 1:
        title = f"{title}, {backbones[0]} embeddings"
    table = Table(title=title, caption=RESEARCH_ONLY, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("method", overflow="fold", min_width=12)
    for m in shown:
        table.add_column(METRIC_LABELS.get(m, m) + (" (95% CI)" if m == primary else ""), justify="right",
                         no_wrap=True)
    table.add_column(f"Δ{METRIC_LABELS.get(primary, primary)} (p)", justify="right", no_wrap=True)
    for _, r in board.iterrows():
        label = str(r["method"])
        if str(r.get("backbone", "")).startswith("("):  # the end-to-end CNN baseline
            label += " (CNN)"
        cells = [str(r["rank"]), label]
        for m in shown:
            v = _f(r[m])
            if v is None:
                cells.append("n/a")
            elif m == primary:
                lo, hi = _f(r.get(f"{m}_ci_lo")), _f(r.get(f"{m}_ci_hi"))
                cells.append(f"{v:.3f}" + (f" ({lo:.2f}-{hi:.2f})" if lo is not None and hi is not None else ""))
            else:
                cells.append(f"{v:.3f}")
        cells.append(_vs_best_cell(
            r, lambda d, p: f"{d:+.3f}" + ("" if p is None else " (<0.001)" if p < 0.001 else f" ({p:.2f})")))
        table.add_row(*cells)
    return table
