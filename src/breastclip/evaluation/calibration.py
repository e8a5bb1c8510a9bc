"""Calibration: expected calibration error, reliability bins, Brier score and temperature scaling.

- ECE (Guo et al. 2017, top-label): confidence = the highest class probability; equal-width bins on [0, 1]
  (15 by default, right-closed, the first bin also holds 0); ECE = sum over bins of (bin share) x |accuracy -
  mean confidence|.
- Brier score: binary problems -> mean (p_positive - y)^2 (``sklearn.metrics.brier_score_loss``); multi-class ->
  mean over images of the sum over classes of (p_c - 1[y = c])^2 (Brier 1950's original, range 0..2).
- Temperature scaling: one scalar T > 0 fitted on the validation split by minimising the negative log-likelihood of
  ``softmax(logits / T)`` over log T (``scipy.optimize.minimize_scalar``, bounded to T in [0.01, 100]). It accepts
  logits (e.g. zero-shot similarity x logit scale) or probabilities; probabilities are turned into logits by
  ``log(p)``, which is exact because softmax ignores a per-row constant. T > 1 softens over-confident models.
  Temperature scaling never changes the argmax, so accuracy is unchanged; ranking metrics (AUC) are unchanged for
  binary problems.

:func:`calibration_summary` returns (JSON-ready)::

    {"n_bins": int, "temperature": float | None, "fitted_on": "val" | None,
     "before": {"ece", "ece_ci": [lo, hi], "brier", "brier_ci": [lo, hi], "nll",
                "bins": [{bin_lo, bin_hi, count, confidence, accuracy}, ...],        (top-label, all classes)
                "positive_bins": [{bin_lo, bin_hi, count, mean_predicted, fraction_positive}, ...] | None},
     "after":  {...same, on test after temperature scaling...} | None}

``positive_bins`` (the classic risk reliability diagram of the positive class) is given when there is a positive
class. Bins are right-closed, ``[0, 1/15], (1/15, 2/15], ...``, as in scikit-learn's ``calibration_curve``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from breastclip.evaluation.bootstrap import bootstrap_weighted

EPS = 1e-12
LOG_T_BOUNDS = (np.log(0.01), np.log(100.0))


def _top_label_bins(y: np.ndarray, proba: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Per bin: count, summed confidence and number correct (top-label, equal-width, right-closed bins)."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    b = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], conf, side="left")
    return (np.bincount(b, minlength=n_bins), np.bincount(b, weights=conf, minlength=n_bins),
            np.bincount(b, weights=correct, minlength=n_bins))


def reliability_bins(y: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Per equal-width confidence bin: bounds, count, mean confidence and accuracy (NaN for empty bins)."""
    count, conf_sum, correct_sum = _top_label_bins(y, proba, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:], "count": count,
                             "confidence": conf_sum / count, "accuracy": correct_sum / count})


def positive_reliability(y_bin: np.ndarray, score: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Risk reliability of one class (binary: the positive class): per equal-width bin of its predicted
    probability, the count, mean predicted probability and observed fraction of positives.

    Same bins as ``sklearn.calibration.calibration_curve(strategy="uniform")``; empty bins are kept with NaN.
    """
    y_bin = np.asarray(y_bin, dtype=float)
    score = np.asarray(score, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.searchsorted(edges[1:-1], score, side="left")
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(b, weights=score, minlength=n_bins) / count
        frac = np.bincount(b, weights=y_bin, minlength=n_bins) / count
    return pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:], "count": count,
                         "mean_predicted": mean_pred, "fraction_positive": frac})


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with equal-width bins: sum over bins of |correct - confidence| / n."""
    count, conf_sum, correct_sum = _top_label_bins(y, proba, n_bins)
    n = count.sum()
    return float(np.abs(correct_sum - conf_sum).sum() / n) if n else float("nan")


def brier_score(y: np.ndarray, proba: np.ndarray, positive_index: int | None = None) -> float:
    """Binary: mean squared error of the positive-class probability; multi-class: summed over classes."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    onehot = np.eye(proba.shape[1])[y]
    if proba.shape[1] == 2:  # positive_index does not matter: both columns give the same error
        pos = 1 if positive_index is None else positive_index
        return float(np.mean((proba[:, pos] - onehot[:, pos]) ** 2))
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def to_logits(proba: np.ndarray) -> np.ndarray:
    """Log-probabilities (clipped at 1e-12): logits up to a per-row constant."""
    return np.log(np.clip(np.asarray(proba, dtype=float), EPS, 1.0))


def nll(y: np.ndarray, logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / T)."""
    lp = log_softmax(np.asarray(logits, dtype=float) / temperature, axis=1)
    return float(-np.mean(lp[np.arange(len(y)), np.asarray(y, dtype=int)]))


def fit_temperature(y_val: np.ndarray, *, logits: np.ndarray | None = None, proba: np.ndarray | None = None) -> float:
    """The temperature minimising validation NLL; pass ``logits`` or ``proba`` (validation rows only)."""
    if (logits is None) == (proba is None):
        raise ValueError("fit_temperature needs exactly one of logits= or proba=")
    z = np.asarray(logits if logits is not None else to_logits(np.asarray(proba)), dtype=float)
    y_val = np.asarray(y_val, dtype=int)
    if y_val.size == 0:
        raise ValueError("fit_temperature needs at least one validation row")
    res = minimize_scalar(lambda lt: nll(y_val, z, float(np.exp(lt))), bounds=LOG_T_BOUNDS, method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))


def apply_temperature(temperature: float, *, logits: np.ndarray | None = None,
                      proba: np.ndarray | None = None) -> np.ndarray:
    """Calibrated probabilities softmax(logits / T)."""
    if (logits is None) == (proba is None):
        raise ValueError("apply_temperature needs exactly one of logits= or proba=")
    z = np.asarray(logits if logits is not None else to_logits(np.asarray(proba)), dtype=float)
    return softmax(z / float(temperature), axis=1)


def _block(y: np.ndarray, proba: np.ndarray, n_bins: int, positive_index: int | None, boot: dict) -> dict:
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    out = {"ece": expected_calibration_error(y, proba, n_bins), "brier": brier_score(y, proba, positive_index),
           "nll": nll(y, to_logits(proba)), "bins": reliability_bins(y, proba, n_bins).to_dict(orient="records"),
           "positive_bins": None}
    if positive_index is not None:
        out["positive_bins"] = positive_reliability(y == positive_index, proba[:, positive_index],
                                                    n_bins).to_dict(orient="records")

    # per-image terms, so a replicate's ECE and Brier are weighted sums (all replicates at once)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    onehot_bin = (np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], conf, side="left")[:, None]
                  == np.arange(n_bins)).astype(float)
    onehot_y = np.eye(proba.shape[1])[y]
    if proba.shape[1] == 2:  # the binary Brier score (either column gives the same error)
        sq = (proba[:, 1] - onehot_y[:, 1]) ** 2
    else:
        sq = np.sum((proba - onehot_y) ** 2, axis=1)

    def stat(w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        gap = np.abs(w @ (onehot_bin * correct[:, None]) - w @ (onehot_bin * conf[:, None])).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"ece": gap / total, "brier": (w @ sq) / total}

    cis = bootstrap_weighted(stat, y.size, **boot)
    out["ece_ci"] = [cis["ece"]["ci_lo"], cis["ece"]["ci_hi"]]
    out["brier_ci"] = [cis["brier"]["ci_lo"], cis["brier"]["ci_hi"]]
    return out


def calibration_summary(
    y_test: np.ndarray,
    proba_test: np.ndarray,
    y_val: np.ndarray | None = None,
    proba_val: np.ndarray | None = None,
    *,
    n_bins: int = 15,
    positive_index: int | None = None,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 0,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Test-set calibration before and after temperature scaling fitted on validation (skipped without it).

    ECE and Brier get (patient-cluster) bootstrap intervals when ``n_boot > 0``; the temperature is fitted once
    on the validation rows and held fixed across replicates. Binned ECE is biased upwards in small samples, and
    more so in resamples, so its percentile interval can sit above the point estimate: read it as sampling
    variability, not as a bias-corrected range.
    """
    boot = {"groups": groups, "n_boot": n_boot, "seed": seed, "alpha": alpha}
    out: dict[str, Any] = {"n_bins": int(n_bins), "temperature": None, "fitted_on": None,
           "before": _block(y_test, proba_test, n_bins, positive_index, boot), "after": None}
    if y_val is not None and proba_val is not None and len(y_val) > 0:
        t = fit_temperature(y_val, proba=proba_val)
        out.update(temperature=t, fitted_on="val",
                   after=_block(y_test, apply_temperature(t, proba=proba_test), n_bins, positive_index, boot))
    return out
