"""ROC and precision-recall curve data with bootstrap bands, for the figures (no plotting here).

Curves are evaluated on fixed grids so replicates can be stacked: TPR at each false-positive rate of
``fpr_grid`` (the best TPR reachable with FPR <= f: the ROC step function), and interpolated precision at each
recall of ``recall_grid`` (the highest precision at recall >= r, as in PASCAL VOC). Bands are pointwise percentile
intervals over (patient-cluster) bootstrap replicates; replicates without both classes are skipped.

Returned tables (one row per class and grid point; binary problems give the positive class only)::

    roc: class, fpr, tpr, tpr_lo, tpr_hi, auc
    pr:  class, recall, precision, precision_lo, precision_hi, average_precision, prevalence
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from breastclip.evaluation.bootstrap import ClusterResampler
from breastclip.evaluation.metrics import _cumulative_counts, average_precision, binary_auc, roc_points

FPR_GRID = np.linspace(0.0, 1.0, 101)
RECALL_GRID = np.linspace(0.0, 1.0, 101)


def tpr_on_grid(y_bin: np.ndarray, score: np.ndarray, fpr_grid: np.ndarray = FPR_GRID) -> np.ndarray:
    """Best TPR with FPR <= f, for each f of the grid."""
    fpr, tpr, _ = roc_points(y_bin, score)
    idx = np.searchsorted(fpr, fpr_grid, side="right") - 1
    return tpr[np.clip(idx, 0, None)]


def precision_on_grid(y_bin: np.ndarray, score: np.ndarray, recall_grid: np.ndarray = RECALL_GRID) -> np.ndarray:
    """Interpolated precision: the highest precision at recall >= r, for each r of the grid."""
    tps, fps, _ = _cumulative_counts(y_bin, score)
    if tps.size == 0 or tps[-1] == 0:
        return np.full(len(recall_grid), np.nan)
    precision = np.concatenate(([1.0], tps / (tps + fps)))
    recall = np.concatenate(([0.0], tps / tps[-1]))
    # running max from the right gives max precision at recall >= recall[i]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, recall_grid, side="left")
    return envelope[np.clip(idx, 0, recall.size - 1)]


def curve_bands(
    y: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    *,
    positive_index: int | None = None,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    fpr_grid: np.ndarray = FPR_GRID,
    recall_grid: np.ndarray = RECALL_GRID,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(roc, pr)`` tables: one-vs-rest per class, or the positive class only for binary problems."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    k = proba.shape[1]
    targets = [positive_index if positive_index is not None else 1] if k == 2 else list(range(k))
    sampler = ClusterResampler(y.size, groups)
    reps = list(sampler.replicates(n_boot, seed)) if n_boot else []
    roc_parts, pr_parts = [], []
    for j in targets:
        yb = (y == j).astype(int)
        s = proba[:, j]
        if yb.sum() in (0, yb.size):
            continue  # one-vs-rest curve undefined for a class absent (or alone) in this sample
        tprs, precs = [], []
        for idx in reps:
            if yb[idx].sum() in (0, idx.size):
                continue
            tprs.append(tpr_on_grid(yb[idx], s[idx], fpr_grid))
            precs.append(precision_on_grid(yb[idx], s[idx], recall_grid))
        lo_q, hi_q = alpha / 2, 1 - alpha / 2
        t_lo, t_hi = (np.quantile(tprs, [lo_q, hi_q], axis=0) if len(tprs) >= 10
                      else (np.full(len(fpr_grid), np.nan),) * 2)
        p_lo, p_hi = (np.quantile(precs, [lo_q, hi_q], axis=0) if len(precs) >= 10
                      else (np.full(len(recall_grid), np.nan),) * 2)
        roc_parts.append(pd.DataFrame({"class": str(classes[j]), "fpr": fpr_grid, "tpr": tpr_on_grid(yb, s, fpr_grid),
                                       "tpr_lo": t_lo, "tpr_hi": t_hi, "auc": binary_auc(yb, s)}))
        pr_parts.append(pd.DataFrame({"class": str(classes[j]), "recall": recall_grid,
                                      "precision": precision_on_grid(yb, s, recall_grid),
                                      "precision_lo": p_lo, "precision_hi": p_hi,
                                      "average_precision": average_precision(yb, s), "prevalence": yb.mean()}))
    roc_cols = ["class", "fpr", "tpr", "tpr_lo", "tpr_hi", "auc"]
    pr_cols = ["class", "recall", "precision", "precision_lo", "precision_hi", "average_precision", "prevalence"]
    roc = pd.concat(roc_parts, ignore_index=True) if roc_parts else pd.DataFrame(columns=roc_cols)
    pr = pd.concat(pr_parts, ignore_index=True) if pr_parts else pd.DataFrame(columns=pr_cols)
    return roc, pr
