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

# in priority order: DBT's {normal, actionable, benign, cancer} picks cancer
POSITIVE_NAMES = tuple(re.compile(p, re.IGNORECASE) for p in (r"malignan|cancer|carcinoma", r"tumou?r|lesion",
                                                                r"positive", r"actionable|abnormal"))
NEGATIONS = {"no", "not", "non", "free", "without", "benign", "negative", "normal", "absent"}
BINARY_HEADLINE = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc",
                   "average_precision", "sensitivity", "specificity")
MULTICLASS_HEADLINE = BINARY_HEADLINE[:7]


def _negated(name: str) -> bool:
    """True for names that deny the finding: non_malignant, no cancer, tumour_free, benign, ..."""
    tokens = [t for t in re.split(r"[^a-z]+", name.lower()) if t]
    return any(t in NEGATIONS or t.startswith("non") for t in tokens)


def resolve_positive_class(classes: Sequence[str], positive_class: str | None = None) -> tuple[str | None, str]:
    """The positive class and why it was chosen: ``(name, reason)``.

    Explicit argument first; else the one class named like malignant / cancer (then tumour / lesion, positive,
    actionable / abnormal; names that deny it, like ``non_malignant`` or ``tumour_free``, never count); else, for
    binary problems, the second class. Multi-class problems without such a class have none (``(None, "none")``):
    no operating points then.
    """
    classes = [str(c) for c in classes]
    if positive_class is not None:
        if positive_class not in classes:
            raise ValueError(f"positive_class {positive_class!r} is not one of the classes {classes}")
        return positive_class, "argument"
    for pattern in POSITIVE_NAMES:
        named = [c for c in classes if pattern.search(c) and not _negated(c)]
        if len(named) == 1:
            return named[0], "class name"
        if len(named) > 1:
            break  # ambiguous (e.g. two cancer subtypes): fall through to the binary default
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


def _cumulative_counts(y_bin: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True / false positive counts when thresholding at each distinct score, from the highest down."""
    y_bin = np.asarray(y_bin, dtype=float)
    score = np.asarray(score, dtype=float)
    order = np.argsort(-score)
    s = score[order]
    last = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1) if s.size else np.zeros(0, dtype=int)
    tps = np.cumsum(y_bin[order])[last]
    return tps, (last + 1) - tps, s[last]


def _auc_ap(tps: np.ndarray, fps: np.ndarray) -> tuple[float, float]:
    """ROC AUC (trapezoids between distinct thresholds: ties count half, as Mann-Whitney) and AP from counts."""
    n_pos = tps[-1] if tps.size else 0.0
    n_neg = fps[-1] if fps.size else 0.0
    d_tp = np.diff(tps, prepend=0.0)
    ap = float(np.sum(d_tp * (tps / (tps + fps))) / n_pos) if n_pos > 0 else float("nan")
    if n_pos == 0 or n_neg == 0:
        return float("nan"), ap
    auc = float(np.sum(np.diff(fps, prepend=0.0) * (2 * tps - d_tp)) / (2.0 * n_pos * n_neg))
    return auc, ap


def binary_auc(y_bin: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, ties counting half (the Mann-Whitney statistic); NaN with one class only."""
    return _auc_ap(*_cumulative_counts(y_bin, score)[:2])[0]


def average_precision(y_bin: np.ndarray, score: np.ndarray) -> float:
    """Average precision (scikit-learn's definition: sum of precision times recall increments); NaN if no positive."""
    return _auc_ap(*_cumulative_counts(y_bin, score)[:2])[1]


def roc_points(y_bin: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at every distinct score, starting at (0, 0) with threshold +inf.

    Rule: positive when ``score >= threshold``. Like ``sklearn.metrics.roc_curve(drop_intermediate=False)``.
    """
    tps, fps, thr = _cumulative_counts(y_bin, score)
    n_pos, n_neg = tps[-1] if tps.size else 0, fps[-1] if fps.size else 0
    tpr = np.concatenate(([0.0], tps / n_pos)) if n_pos else np.full(tps.size + 1, np.nan)
    fpr = np.concatenate(([0.0], fps / n_neg)) if n_neg else np.full(fps.size + 1, np.nan)
    return fpr, tpr, np.concatenate(([np.inf], thr))


def ovr_auc_ap(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class one-vs-rest AUC and AP (NaN where a class has no positives or no negatives).

    All classes in one pass: each column sorted once; tie runs are collapsed by only counting at the last image
    of a run (the same definitions as :func:`binary_auc` / :func:`average_precision`, vectorised for speed).
    """
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    n, k = proba.shape
    if n == 0:
        return np.full(k, np.nan), np.full(k, np.nan)
    order = np.argsort(-proba, axis=0)
    s = np.take_along_axis(proba, order, axis=0)
    hit = (y[order] == np.arange(k)).astype(float)            # (n, k) one-vs-rest labels in score order
    tps = np.cumsum(hit, axis=0)
    fps = np.arange(1, n + 1)[:, None] - tps
    end = np.ones((n, k), dtype=bool)
    end[:-1] = s[1:] != s[:-1]                                 # last image of each run of tied scores
    # counts at the previous run end (0 before the first): running max of the counts at run ends, shifted
    tp_prev = np.zeros((n, k))
    fp_prev = np.zeros((n, k))
    tp_prev[1:] = np.maximum.accumulate(np.where(end, tps, 0.0), axis=0)[:-1]
    fp_prev[1:] = np.maximum.accumulate(np.where(end, fps, 0.0), axis=0)[:-1]
    n_pos, n_neg = tps[-1], fps[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.sum(np.where(end, (fps - fp_prev) * (tps + tp_prev), 0.0), axis=0) / (2.0 * n_pos * n_neg)
        ap = np.sum(np.where(end, (tps - tp_prev) * tps / (tps + fps), 0.0), axis=0) / n_pos
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    ap[n_pos == 0] = np.nan
    return auc, ap


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


PER_CLASS_METRICS = ("precision", "recall", "f1", "specificity", "roc_auc", "average_precision")


def sample_metrics(
    y: np.ndarray, proba: np.ndarray, positive_index: int | None = None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """``(headline, per_class)`` of one sample in one pass (the bootstrap calls this once per replicate).

    ``per_class`` maps support and each of :data:`PER_CLASS_METRICS` to a (k,) array (AUC / AP one-vs-rest).
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
        "accuracy": float(np.trace(cm) / y.size) if y.size else float("nan"),
        "balanced_accuracy": float(pc["recall"][in_y].mean()) if in_y.any() else float("nan"),
        "precision_macro": float(pc["precision"][labels].mean()) if labels.any() else float("nan"),
        "recall_macro": float(pc["recall"][labels].mean()) if labels.any() else float("nan"),
        "f1_macro": float(pc["f1"][labels].mean()) if labels.any() else float("nan"),
    }
    auc, ap = ovr_auc_ap(y, proba)
    if k == 2:
        if positive_index is None:
            raise ValueError("binary problems need positive_index")
        pos, neg = positive_index, 1 - positive_index
        # one-vs-rest AUC of the positive column is the binary AUC; AP depends on which class is positive
        out["roc_auc"] = float(auc[pos])
        out["average_precision"] = float(ap[pos])
        out["sensitivity"] = float(pc["recall"][pos]) if pc["support"][pos] else float("nan")
        out["specificity"] = float(pc["recall"][neg]) if pc["support"][neg] else float("nan")
    else:
        out["roc_auc"] = _nanmean(auc)
        out["average_precision"] = _nanmean(ap)
    per_class = {"support": pc["support"], "precision": pc["precision"], "recall": pc["recall"], "f1": pc["f1"],
                 "specificity": pc["specificity"], "roc_auc": auc, "average_precision": ap}
    return out, per_class


def headline_metrics(y: np.ndarray, proba: np.ndarray, positive_index: int | None = None) -> dict[str, float]:
    """Headline metrics of one sample (see the module docstring for exact definitions).

    ``positive_index`` is required for binary problems (it picks the ROC / AP score and sensitivity); for
    multi-class problems AUC and AP are one-vs-rest macro averages whatever it is.
    """
    return sample_metrics(y, proba, positive_index)[0]


def per_class_table(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """One row per class: support, precision, recall (sensitivity), F1, specificity, one-vs-rest AUC and AP."""
    _, pc = sample_metrics(y, proba, positive_index=1)
    return pd.DataFrame({"class": [str(c) for c in classes], "support": pc["support"].astype(int),
                         **{m: pc[m] for m in PER_CLASS_METRICS}})


def confusion_matrices(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict:
    """``{"classes", "counts", "normalised"}`` as nested lists (rows = true class, columns = predicted)."""
    cm = confusion_counts(np.asarray(y, dtype=int), np.asarray(proba).argmax(axis=1), len(classes))
    return {"classes": [str(c) for c in classes], "counts": cm.tolist(), "normalised": normalise_rows(cm).tolist()}
