"""The headline and per-class metrics of many bootstrap replicates at once, as weighted samples.

A bootstrap replicate is the original sample with each image weighted by how often it was drawn (its
multiplicity). Every metric here is a function of weighted counts: confusion cells are ``W @ indicator`` and the
ROC / PR counts are cumulative weighted sums along the score order, which is the same for every replicate. So one
sort per class serves all replicates, and a (B, n) matrix product replaces B Python-level metric calls.

Results equal :func:`breastclip.evaluation.metrics.sample_metrics` on the resampled rows (tested), up to floating
point summation order.
"""

from __future__ import annotations

import numpy as np

TINY = 1e-300


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def weighted_ovr_auc_ap(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, k) one-vs-rest AUC and AP for each row of ``weights`` (B, n); NaN where undefined."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    b, (n, k) = w.shape[0], proba.shape
    auc = np.full((b, k), np.nan)
    ap = np.full((b, k), np.nan)
    if n == 0:
        return auc, ap
    for j in range(k):
        order = np.argsort(-proba[:, j], kind="stable")
        s = proba[order, j]
        ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last image of each run of tied scores
        hit = y[order] == j
        wo = w[:, order]
        tps = np.cumsum(wo * hit, axis=1)[:, ends]
        fps = np.cumsum(wo * ~hit, axis=1)[:, ends]
        tp_prev = np.concatenate([np.zeros((b, 1)), tps[:, :-1]], axis=1)
        fp_prev = np.concatenate([np.zeros((b, 1)), fps[:, :-1]], axis=1)
        n_pos, n_neg = tps[:, -1], fps[:, -1]
        d_tp = tps - tp_prev
        with np.errstate(invalid="ignore", divide="ignore"):
            auc_j = np.sum((fps - fp_prev) * (tps + tp_prev), axis=1) / (2.0 * n_pos * n_neg)
            ap_j = np.sum(np.where(d_tp > 0, d_tp * tps / np.maximum(tps + fps, TINY), 0.0), axis=1) / n_pos
        auc[:, j] = np.where((n_pos > 0) & (n_neg > 0), auc_j, np.nan)
        ap[:, j] = np.where(n_pos > 0, ap_j, np.nan)
    return auc, ap


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=1)
    total = np.where(mask, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(values)
    return _masked_mean(np.nan_to_num(values), ok)


def weighted_sample_metrics(
    y: np.ndarray, proba: np.ndarray, positive_index: int | None, weights: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(headline, per_class)`` like ``sample_metrics``, for each row of ``weights``: (B,) and (B, k) arrays."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    b, k = w.shape[0], proba.shape[1]
    cell = y * k + proba.argmax(axis=1)
    cm = (w @ (cell[:, None] == np.arange(k * k)).astype(float)).reshape(b, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(axis=2)
    predicted = cm.sum(axis=1)
    total = cm.sum(axis=(1, 2))
    fp, fn = predicted - tp, support - tp
    tn = total[:, None] - tp - fp - fn
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    specificity = _ratio(tn, tn + fp)
    labels = (support > 0) | (predicted > 0)
    in_y = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(total > 0, tp.sum(axis=1) / total, np.nan)
    out = {"accuracy": accuracy, "balanced_accuracy": _masked_mean(recall, in_y),
           "precision_macro": _masked_mean(precision, labels), "recall_macro": _masked_mean(recall, labels),
           "f1_macro": _masked_mean(f1, labels)}
    auc, ap = weighted_ovr_auc_ap(y, proba, w)
    if k == 2:
        if positive_index is None:
            raise ValueError("binary problems need positive_index")
        pos, neg = positive_index, 1 - positive_index
        out["roc_auc"], out["average_precision"] = auc[:, pos], ap[:, pos]
        out["sensitivity"] = np.where(support[:, pos] > 0, recall[:, pos], np.nan)
        out["specificity"] = np.where(support[:, neg] > 0, recall[:, neg], np.nan)
    else:
        out["roc_auc"], out["average_precision"] = _nanmean_rows(auc), _nanmean_rows(ap)
    per_class = {"support": support, "precision": precision, "recall": recall, "f1": f1,
                 "specificity": specificity, "roc_auc": auc, "average_precision": ap}
    return out, per_class
