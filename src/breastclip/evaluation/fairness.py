"""Fairness summary: for each metadata attribute, the largest gap in sensitivity, specificity and ROC AUC between
its groups on the test split, with a bootstrap CI.

Sensitivity and specificity are taken at the threshold frozen on validation; AUC is threshold-free. A group enters
a metric's comparison only when it holds at least ``min_group_size`` images of the class the metric counts
(positives for sensitivity, negatives for specificity, both for AUC). The gap is the highest group value minus the
lowest; its CI comes from the same (patient-cluster) bootstrap replicates as every other interval, each replicate
recomputing every group's value and the gap between the groups compared on the full sample. A max-minus-min gap is
biased upwards when groups are small (noise alone separates them), so read a gap with its interval.

One row per (attribute, metric)::

    column, metric, n_groups, low_group, low_value, high_group, high_value, gap, ci_lo, ci_hi, n_boot_used
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from breastclip.evaluation.bootstrap import bootstrap_weighted
from breastclip.evaluation.subgroups import aligned_columns
from breastclip.evaluation.weighted import weighted_ovr_auc_ap

FAIRNESS_METRICS = ("sensitivity", "specificity", "roc_auc")
COLUMNS = ["column", "metric", "n_groups", "low_group", "low_value", "high_group", "high_value", "gap", "ci_lo",
           "ci_hi", "n_boot_used"]


def _group_values(metric: str, y_bin: np.ndarray, score: np.ndarray, hit: np.ndarray, masks: list[np.ndarray],
                  w: np.ndarray) -> np.ndarray:
    """(B, G) values of ``metric`` in each group for each weight row of ``w`` (B, n)."""
    out = np.full((w.shape[0], len(masks)), np.nan)
    for g, m in enumerate(masks):
        with np.errstate(invalid="ignore", divide="ignore"):
            if metric == "sensitivity":
                out[:, g] = (w @ (hit & y_bin & m)) / (w @ (y_bin & m))
            elif metric == "specificity":
                out[:, g] = (w @ (~hit & ~y_bin & m)) / (w @ (~y_bin & m))
            else:
                proba = np.c_[1 - score[m], score[m]]
                out[:, g] = weighted_ovr_auc_ap(y_bin[m].astype(int), proba, w[:, m])[0][:, 1]
    return out


def _eligible(metric: str, y_bin: np.ndarray, mask: np.ndarray, min_group_size: int) -> bool:
    pos, neg = int((y_bin & mask).sum()), int((~y_bin & mask).sum())
    need = {"sensitivity": pos, "specificity": neg, "roc_auc": min(pos, neg)}[metric]
    return need >= max(int(min_group_size), 1)


def fairness_gaps(
    y_bin: np.ndarray,
    score: np.ndarray,
    threshold: float,
    meta: pd.DataFrame,
    *,
    groups: Sequence | np.ndarray | None = None,
    columns: Sequence[str] | None = None,
    bins: Mapping[str, int | Sequence[float]] | None = None,
    min_group_size: int = 20,
    max_levels: int = 12,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The largest between-group gap of each metric per attribute (see the module docstring)."""
    y_bin = np.asarray(y_bin).astype(bool)
    score = np.asarray(score, dtype=float)
    chosen, _ = aligned_columns(meta, y_bin.size, columns, max_levels=max_levels, bins=bins)
    hit = score >= threshold
    rows = []
    for col, labels in chosen.items():
        values = sorted(labels.unique(), key=str)
        for metric in FAIRNESS_METRICS:
            names = [v for v in values if _eligible(metric, y_bin, (labels == v).to_numpy(), min_group_size)]
            if len(names) < 2:
                continue
            masks = [(labels == v).to_numpy() for v in names]
            point = _group_values(metric, y_bin, score, hit, masks, np.ones((1, y_bin.size)))[0]
            if np.isnan(point).sum() > len(point) - 2:
                continue
            low, high = int(np.nanargmin(point)), int(np.nanargmax(point))

            def stat(w: np.ndarray, metric=metric, masks=masks) -> dict[str, np.ndarray]:
                v = _group_values(metric, y_bin, score, hit, masks, w)
                with warnings.catch_warnings():  # a replicate may leave every group of a metric empty
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return {"gap": np.nanmax(v, axis=1) - np.nanmin(v, axis=1)}

            res = bootstrap_weighted(stat, y_bin.size, groups=groups, n_boot=n_boot, seed=seed, alpha=alpha)["gap"]
            rows.append({"column": col, "metric": metric, "n_groups": len(names), "low_group": str(names[low]),
                         "low_value": float(point[low]), "high_group": str(names[high]),
                         "high_value": float(point[high]), "gap": float(point[high] - point[low]),
                         "ci_lo": res["ci_lo"], "ci_hi": res["ci_hi"], "n_boot_used": res["n_boot_used"]})
    return pd.DataFrame(rows, columns=COLUMNS)
