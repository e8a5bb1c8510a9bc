"""``experiment.seeds = [0, 1, 2]``: every method runs once per seed (labels ``<method>.seed<k>``); the leaderboard
keeps the per-seed rows and ``seeds.csv`` / ``seeds.md`` give each method's mean and standard deviation over seeds
(test metrics and the selection figure), the convention of MedMNIST+ and of most benchmark tables."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.config import ExperimentConfig
from breastclip.evaluation.leaderboard import metric_column
from breastclip.pipeline.run_folder import RunFolder

_SUFFIX = re.compile(r"^(?P<method>.+)\.seed(?P<seed>-?\d+)$")
#: Leaderboard columns averaged over seeds (those present), by the name they take in seeds.csv: the selection
#: figure and test metrics (``accuracy`` etc. at the argmax decision, see evaluation.leaderboard.metric_column).
SEED_COLUMNS = {"selection_value": "selection_value",
                **{m: metric_column(m) for m in ("roc_auc", "accuracy", "balanced_accuracy", "average_precision",
                                                 "f1_macro", "sensitivity", "specificity")}}


def seed_suffix(seed: int) -> str:
    return f".seed{seed}"


def with_seed(cfg: ExperimentConfig, seed: int) -> ExperimentConfig:
    """The config with ``experiment.seed = seed`` (heads' ``random_state``, CV folds); the split is unchanged
    (``split.seed`` defaults to the master seed given in the file, not to each run seed)."""
    split = cfg.split if cfg.split.seed >= 0 else replace(cfg.split, seed=cfg.experiment.seed)
    return replace(cfg, experiment=replace(cfg.experiment, seed=int(seed)), split=split)


def seed_table(board: pd.DataFrame, seeds: Sequence[int]) -> pd.DataFrame:
    """One row per method: ``<col>_mean`` and ``<col>_sd`` (ddof 1) over its seeds, ``n_seeds``; best mean
    selection figure first (test figures never order it)."""
    parts = board["method"].astype(str).str.extract(_SUFFIX)
    df = board.assign(base=parts["method"], seed=pd.to_numeric(parts["seed"]))
    df = df[df["seed"].isin(list(seeds))]
    cols = {name: c for name, c in SEED_COLUMNS.items() if c in df.columns}
    rows = []
    for base, g in df.groupby("base", sort=False):
        row: dict = {"method": base, "n_seeds": len(g), "seeds": " ".join(str(int(s)) for s in sorted(g["seed"]))}
        for c, column in cols.items():
            v = pd.to_numeric(g[column], errors="coerce").to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            row[f"{c}_mean"] = float(v.mean()) if len(v) else np.nan
            row[f"{c}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    key = "selection_value_mean" if "selection_value_mean" in out.columns else None
    return out.sort_values(key, ascending=False, na_position="last", kind="stable") if key else out


def summarise_seeds(board: pd.DataFrame, seeds: Sequence[int], folder: RunFolder) -> pd.DataFrame:
    """Write ``seeds.csv`` and ``seeds.md`` (mean +- sd per method) into the results folder."""
    table = seed_table(board, seeds)
    folder.write_csv(RunFolder.SEEDS, table)
    cols = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    lines = [f"# Mean +- sd over seeds {list(seeds)}", "", f"{RESEARCH_ONLY}", "",
             "| method | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = [f"{r[c + '_mean']:.3f} +- {r[c + '_sd']:.3f}" if np.isfinite(r[c + "_mean"]) and
                 np.isfinite(r[c + "_sd"]) else (f"{r[c + '_mean']:.3f}" if np.isfinite(r[c + "_mean"]) else "")
                 for c in cols]
        lines.append(f"| {r['method']} | {r['n_seeds']} | " + " | ".join(cells) + " |")
    folder.write_text(RunFolder.SEEDS_MD, "\n".join(lines) + "\n")
    return table
