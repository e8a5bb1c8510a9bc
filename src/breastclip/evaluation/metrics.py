"""Classification metrics on plain arrays, fast enough to run inside a 1,000-replicate bootstrap.

Inputs everywhere: ``y`` integer labels (index into the class list), ``proba`` (n, k) probabilities, and for the
binary curve functions ``y_bin`` (0/1, 1 = positive class) with a ``score`` (higher = more positive). Predictions
are ``argmax(proba)`` (the predictions-table contract). The implementations are numpy, not scikit-learn calls,
because the bootstrap runs them thousands of times; each is tested equal to scikit-learn on random inputs
(tests/test_evaluation_metrics.py).

Definitions (matching scikit-learn with ``zero_division=0``):

- ``precision_macro`` / ``recall_macro`` / ``f1_macro``: unweighted mean over the labels present in ``y`` or in
  the predictions (scikit-learn's default label set); a 0/0 ratio counts as 0.
- ``balanced_accuracy``: mean recall over the classes present in ``y``.
- ``roc_auc``: binary -> AUC of the positive-class score; multi-class -> one-vs-rest macro AUC over the classes
  that have both positives and negatives (NaN when none). Ties get half credit (Mann-Whitney).
- ``average_precision``: binary -> AP of the positive class; multi-class -> one-vs-rest macro AP over the classes
  present in ``y``. AP is scikit-learn's step-wise sum over distinct thresholds, without interpolation.
- binary problems also report ``sensitivity`` (recall of the positive class) and ``specificity`` at the argmax
  decision; thresholded operating points live in :mod:`breastclip.evaluation.thresholds`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

POSITIVE_NAME = re.compile(r"malignan|cancer|actionable|positive|tumou?r", re.IGNORECASE)
BINARY_HEADLINE = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc",
                   "average_precision", "sensitivity", "specificity")
MULTICLASS_HEADLINE = BINARY_HEADLINE[:7]


def resolve_positive_class(classes: Sequence[str], positive_class: str | None = None) -> tuple[str | None, str]:
    """The positive class and why it was chosen: ``(name, reason)``.

    Explicit argument first; else a class named like malignant / cancer / actionable; else, for binary problems,
    the second class. Multi-class problems with no such class have none (``(None, "none")``): no operating points.
    """
    classes = [str(c) for c in classes]
    if positive_class is not None:
        if positive_class not in classes:
            raise ValueError(f"positive_class {positive_class!r} is not one of the classes {classes}")
        return positive_class, "argument"
    named = [c for c in classes if POSITIVE_NAME.search(c) and not re.search(r"non|not|benign|negative", c, re.I)]
    if len(named) == 1:
        return named[0], "class name"
    if len(classes) == 2:
        return classes[1], "second class"
    return None, "none"


def confusion_counts(y: np.ndarray, y_hat: np.ndarray, n_classes: int) -> np.ndarray:
    """(k, k) counts, rows = true class, columns = predicted class."""
    y = np.asarray(y, dtype=int)
    y_hat = np.asarray(y_hat, dtype=int)
    return np.bincount(y * n_classes + y_hat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def normalise_rows(cm: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix (each true class sums to 1; empty rows stay 0)."""
    cm = np.asarray(cm, dtype=float)
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class support, precision, recall, F1 and specificity from a confusion matrix (0/0 -> 0)."""
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    fp = predicted - tp
    fn = support - tp
    tn = cm.sum() - tp - fp - fn
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    specificity = _ratio(tn, tn + fp)
    return {"support": support, "predicted": predicted, "precision": precision, "recall": recall, "f1": f1,
            "specificity": specificity}


def binary_auc(y_bin: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney statistic with mid-ranks (ties count half); NaN with one class only."""
    y_bin = np.asarray(y_bin).astype(bool)
    n_pos = int(y_bin.sum())
    n_neg = y_bin.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y_bin].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_points(y_bin: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score, starting at (0, 0) with threshold +inf.

    Rule: positive when ``score >= threshold``. Like ``sklearn.metrics.roc_curve(drop_intermediate=False)``.
    """
    tps, fps, thr = _cumulative_counts(y_bin, score)
    n_pos, n_neg = tps[-1] if tps.size else 0, fps[-1] if fps.size else 0
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(tps.size + 1, np.nan)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(fps.size + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def _cumulative_counts(y_bin: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True / false positive counts when thresholding at each distinct score, from the highest down."""
    y_bin = np.asarray(y_bin, dtype=float)
    score = np.asarray(score, dtype=float)
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    yb = y_bin[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1] if s.size else np.array([], dtype=int)
    tps = np.cumsum(yb)[last]
    fps = (last + 1) - tps
    return tps, fps, s[last]


def average_precision(y_bin: np.ndarray, score: np.ndarray) -> float:
    """Average precision (scikit-learn's definition: sum of precision times recall increments); NaN if no positive."""
    tps, fps, _ = _cumulative_counts(y_bin, score)
    if tps.size == 0 or tps[-1] == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ovr_auc_ap(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class one-vs-rest AUC and AP (NaN where a class has no positives or no negatives)."""
    k = proba.shape[1]
    auc = np.array([binary_auc(y == j, proba[:, j]) for j in range(k)])
    ap = np.array([average_precision(y == j, proba[:, j]) for j in range(k)])
    return auc, ap


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def headline_metrics(y: np.ndarray, proba: np.ndarray, positive_index: int | None = None) -> dict[str, float]:
    """Headline metrics of one sample (see the module docstring for exact definitions).

    ``positive_index`` is required for binary problems (it picks the ROC / AP score and sensitivity); for
    multi-class problems AUC and AP are one-vs-rest macro averages whatever it is.
    """
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    k = proba.shape[1]
    y_hat = proba.argmax(axis=1)
    cm = confusion_counts(y, y_hat, k)
    pc = per_class_from_confusion(cm)
    labels = (pc["support"] > 0) | (pc["predicted"] > 0)
    in_y = pc["support"] > 0
    out = {
        "accuracy": float(np.trace(cm) / max(y.size, 1)) if y.size else float("nan"),
        "balanced_accuracy": float(pc["recall"][in_y].mean()) if in_y.any() else float("nan"),
        "precision_macro": float(pc["precision"][labels].mean()) if labels.any() else float("nan"),
        "recall_macro": float(pc["recall"][labels].mean()) if labels.any() else float("nan"),
        "f1_macro": float(pc["f1"][labels].mean()) if labels.any() else float("nan"),
    }
    if k == 2:
        if positive_index is None:
            raise ValueError("binary problems need positive_index")
        pos = positive_index
        out["roc_auc"] = binary_auc(y == pos, proba[:, pos])
        out["average_precision"] = average_precision(y == pos, proba[:, pos])
        out["sensitivity"] = float(pc["recall"][pos]) if pc["support"][pos] else float("nan")
        neg = 1 - pos
        out["specificity"] = float(pc["recall"][neg]) if pc["support"][neg] else float("nan")
    else:
        auc, ap = ovr_auc_ap(y, proba)
        out["roc_auc"] = _nanmean(auc)
        out["average_precision"] = _nanmean(ap)
    return out


def per_class_table(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """One row per class: support, precision, recall (sensitivity), F1, specificity, one-vs-rest AUC and AP."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    cm = confusion_counts(y, proba.argmax(axis=1), proba.shape[1])
    pc = per_class_from_confusion(cm)
    auc, ap = ovr_auc_ap(y, proba)
    return pd.DataFrame({
        "class": [str(c) for c in classes],
        "support": pc["support"].astype(int),
        "precision": pc["precision"],
        "recall": pc["recall"],
        "f1": pc["f1"],
        "specificity": pc["specificity"],
        "roc_auc": auc,
        "average_precision": ap,
    })


def confusion_matrices(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict:
    """``{"classes", "counts", "normalised"}`` as nested lists (rows = true class, columns = predicted)."""
    cm = confusion_counts(np.asarray(y, dtype=int), np.asarray(proba).argmax(axis=1), len(classes))
    return {"classes": [str(c) for c in classes], "counts": cm.tolist(), "normalised": normalise_rows(cm).tolist()}
