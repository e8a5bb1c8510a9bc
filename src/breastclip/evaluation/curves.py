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
from typing import Literal

import numpy as np
import pandas as pd

from breastclip.evaluation.bootstrap import ClusterResampler
from breastclip.evaluation.metrics import _cumulative_counts, average_precision, binary_auc, roc_points

FPR_GRID = np.linspace(0.0, 1.0, 101)
RECALL_GRID = np.linspace(0.0, 1.0, 101)
GRID_TOL = 1e-9  # grid points equal to a rate up to rounding (0.6 vs 6/10) count as reached


def tpr_on_grid(y_bin: np.ndarray, score: np.ndarray, fpr_grid: np.ndarray = FPR_GRID) -> np.ndarray:
    """Best TPR with FPR <= f, for each f of the grid."""
    fpr, tpr, _ = roc_points(y_bin, score)
    idx = np.searchsorted(fpr, np.asarray(fpr_grid) + GRID_TOL, side="right") - 1
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
    idx = np.searchsorted(recall, np.asarray(recall_grid) - GRID_TOL, side="left")
    return envelope[np.clip(idx, 0, recall.size - 1)]


def _row_searchsorted(rows: np.ndarray, values: np.ndarray, side: Literal["left", "right"]) -> np.ndarray:
    """``searchsorted`` of ``values`` (G,) in every row of ``rows`` (B, E), each row sorted within [0, 1]."""
    b, e = rows.shape
    offset = 2.0 * np.arange(b)[:, None]
    flat = (rows + offset).ravel()
    pos = np.searchsorted(flat, (values[None, :] + offset).ravel(), side=side).reshape(b, -1)
    return pos - e * np.arange(b)[:, None]


def weighted_curves(
    y_bin: np.ndarray, score: np.ndarray, weights: np.ndarray, fpr_grid: np.ndarray, recall_grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TPR on ``fpr_grid`` and interpolated precision on ``recall_grid`` for each row of ``weights`` (B, n),
    and a (B,) mask of the replicates holding both classes. Same values as :func:`tpr_on_grid` and
    :func:`precision_on_grid` on the resampled rows (tested)."""
    y_bin = np.asarray(y_bin).astype(bool)
    score = np.asarray(score, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    b = w.shape[0]
    order = np.argsort(-score, kind="stable")
    s = score[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    wo = w[:, order]
    tps = np.cumsum(wo * y_bin[order], axis=1)[:, ends]
    fps = np.cumsum(wo * ~y_bin[order], axis=1)[:, ends]
    n_pos, n_neg = tps[:, -1], fps[:, -1]
    ok = (n_pos > 0) & (n_neg > 0)
    zeros = np.zeros((b, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.concatenate([zeros, tps / n_pos[:, None]], axis=1)
        fpr = np.concatenate([zeros, fps / n_neg[:, None]], axis=1)
        precision = np.concatenate([np.ones((b, 1)), np.nan_to_num(tps / (tps + fps))], axis=1)
        recall = tpr.copy()
    tpr, fpr, precision, recall = (np.nan_to_num(a) for a in (tpr, fpr, precision, recall))
    idx = _row_searchsorted(fpr, np.asarray(fpr_grid) + GRID_TOL, "right") - 1
    tpr_grid = np.take_along_axis(tpr, np.clip(idx, 0, None), axis=1)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    idx = _row_searchsorted(recall, np.asarray(recall_grid) - GRID_TOL, "left")
    prec_grid = np.take_along_axis(envelope, np.clip(idx, 0, recall.shape[1] - 1), axis=1)
    return tpr_grid, prec_grid, ok


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
    weights = list(sampler.multiplicities(n_boot, seed)) if n_boot > 0 else []
    roc_parts, pr_parts = [], []
    for j in targets:
        yb = (y == j).astype(int)
        s = proba[:, j]
        if yb.sum() in (0, yb.size):
            continue  # one-vs-rest curve undefined for a class absent (or alone) in this sample
        tprs, precs = [], []
        for w in weights:
            t, p, ok = weighted_curves(yb, s, w, fpr_grid, recall_grid)
            tprs.extend(t[ok])
            precs.extend(p[ok])
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
