"""``experiment.seeds = [0, 1, 2]``: every method runs once per seed (labels ``<method>.seed<k>``). The leaderboard
(:mod:`breastclip.evaluation.leaderboard`) keeps the per-seed rows but ranks and selects methods by their mean
selection figure over seeds; ``seeds.csv`` / ``seeds.md`` render its pooled columns as one row per method (mean and
standard deviation over seeds of the selection figure and the test metrics, the convention of MedMNIST+ and of most
benchmark tables), with the pooled ``status`` and ``selected``
(:func:`~breastclip.evaluation.leaderboard.seeds_table`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.config import ExperimentConfig
from breastclip.evaluation.leaderboard import OK, seed_label, seeds_table
from breastclip.pipeline.run_folder import RunFolder


def seed_suffix(seed: int) -> str:
    """``.seed<k>``: what a method's label gets for one seed (:func:`~breastclip.evaluation.leaderboard.seed_label`)."""
    return seed_label("", seed)


def with_seed(cfg: ExperimentConfig, seed: int) -> ExperimentConfig:
    """The config with ``experiment.seed = seed`` (heads' ``random_state``, CV folds); the split is unchanged
    (``split.seed`` defaults to the master seed given in the file, not to each run seed)."""
    split = cfg.split if cfg.split.seed >= 0 else replace(cfg.split, seed=cfg.experiment.seed)
    return replace(cfg, experiment=replace(cfg.experiment, seed=int(seed)), split=split)


def summarise_seeds(board: pd.DataFrame, seeds: Sequence[int], folder: RunFolder) -> pd.DataFrame:
    """Write ``seeds.csv`` and ``seeds.md`` (mean +- sd per method, status, selected) into the results folder."""
    table = seeds_table(board)
    folder.write_csv(RunFolder.SEEDS, table)
    cols = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    metric = board.attrs.get("selection_metric") or "selection"
    master = board.attrs.get("master_seed")
    lines = [f"# Mean +- sd over seeds {list(seeds)}", "", f"{RESEARCH_ONLY}", "",
             f"Methods are ranked by their mean {metric} over seeds (ok methods first; a method is ok only when "
             f"every seed is); the test split chooses nothing. The selected method deploys the fitted model of the "
             f"master seed {master} (column 'deployed'); every seed's own row is in leaderboard.csv.", "",
             "| method | status | selected | n | deployed | " + " | ".join(cols) + " |",
             "|---|---|---|---|---|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = [f"{r[c + '_mean']:.3f} +- {r[c + '_sd']:.3f}" if np.isfinite(r[c + "_mean"]) and
                 np.isfinite(r[c + "_sd"]) else (f"{r[c + '_mean']:.3f}" if np.isfinite(r[c + "_mean"]) else "")
                 for c in cols]
        lines.append(f"| {r['method']} | {r['status'] if r['status'] == OK else 'flagged: ' + r['status']} | "
                     f"{'yes' if r['selected'] else ''} | {r['n_seeds']} | {r['deployed']} | "
                     + " | ".join(cells) + " |")
    folder.write_text(RunFolder.SEEDS_MD, "\n".join(lines) + "\n")
    return table
