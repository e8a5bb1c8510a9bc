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
     "before": {"ece", "brier", "nll", "bins": [ {bin_lo, bin_hi, count, confidence, accuracy}, ... ]},
     "after":  {...same, on test after temperature scaling...} | None}
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

EPS = 1e-12
LOG_T_BOUNDS = (np.log(0.01), np.log(100.0))


def reliability_bins(y: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Per equal-width confidence bin: bounds, count, mean confidence and accuracy (NaN for empty bins)."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
    return pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:], "count": count,
                         "confidence": mean_conf, "accuracy": acc})


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with equal-width bins."""
    bins = reliability_bins(y, proba, n_bins)
    n = bins["count"].sum()
    if n == 0:
        return float("nan")
    filled = bins[bins["count"] > 0]
    return float((filled["count"] / n * (filled["accuracy"] - filled["confidence"]).abs()).sum())


def brier_score(y: np.ndarray, proba: np.ndarray, positive_index: int | None = None) -> float:
    """Binary: mean squared error of the positive-class probability; multi-class: summed over classes."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    onehot = np.eye(proba.shape[1])[y]
    if proba.shape[1] == 2:
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
    z = np.asarray(logits, dtype=float) if logits is not None else to_logits(proba)
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
    z = np.asarray(logits, dtype=float) if logits is not None else to_logits(proba)
    return softmax(z / float(temperature), axis=1)


def _block(y: np.ndarray, proba: np.ndarray, n_bins: int, positive_index: int | None) -> dict:
    return {"ece": expected_calibration_error(y, proba, n_bins), "brier": brier_score(y, proba, positive_index),
            "nll": nll(y, to_logits(proba)),
            "bins": reliability_bins(y, proba, n_bins).to_dict(orient="records")}


def calibration_summary(
    y_test: np.ndarray,
    proba_test: np.ndarray,
    y_val: np.ndarray | None = None,
    proba_val: np.ndarray | None = None,
    *,
    n_bins: int = 15,
    positive_index: int | None = None,
) -> dict:
    """Test-set calibration before and after temperature scaling fitted on validation (skipped without it)."""
    out = {"n_bins": int(n_bins), "temperature": None, "fitted_on": None,
           "before": _block(y_test, proba_test, n_bins, positive_index), "after": None}
    if y_val is not None and proba_val is not None and len(y_val) > 0:
        t = fit_temperature(y_val, proba=proba_val)
        out.update(temperature=t, fitted_on="val",
                   after=_block(y_test, apply_temperature(t, proba=proba_test), n_bins, positive_index))
    return out
