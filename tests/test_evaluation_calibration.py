"""Calibration: ECE and reliability bins against direct computation and scikit-learn; temperature scaling
recovers a known temperature, works from logits or probabilities alike and keeps the argmax."""

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from breastclip.evaluation.calibration import (
    apply_temperature,
    brier_score,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    nll,
    positive_reliability,
    reliability_bins,
)


def _sample(n, k, temperature, seed):
    """True probabilities softmax(z), labels drawn from them, and a model reporting logits z * temperature."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, k))
    p_true = softmax(z, axis=1)
    y = np.array([rng.choice(k, p=p) for p in p_true])
    return y, z * temperature


def test_ece_equals_a_direct_loop():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), 500)
    y = rng.integers(0, 3, 500)
    conf, correct = proba.max(1), proba.argmax(1) == y
    edges = np.linspace(0, 1, 11)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(ece)
    bins = reliability_bins(y, proba, n_bins=10)
    assert bins["count"].sum() == 500 and len(bins) == 10


def test_positive_reliability_and_brier_equal_sklearn():
    rng = np.random.default_rng(1)
    p = rng.random(400)
    y = (rng.random(400) < p).astype(int)
    bins = positive_reliability(y, p, n_bins=15)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=15, strategy="uniform")
    filled = bins[bins["count"] > 0]
    np.testing.assert_allclose(filled["fraction_positive"], prob_true)
    np.testing.assert_allclose(filled["mean_predicted"], prob_pred)
    proba = np.c_[1 - p, p]
    assert brier_score(y, proba, positive_index=1) == pytest.approx(brier_score_loss(y, p))
    y3 = rng.integers(0, 3, 300)
    p3 = rng.dirichlet(np.ones(3), 300)
    assert brier_score(y3, p3) == pytest.approx(brier_score_loss(y3, p3, labels=[0, 1, 2]))
    assert nll(y3, np.log(p3)) == pytest.approx(log_loss(y3, p3))


@pytest.mark.parametrize("true_t", [0.5, 3.0])
def test_temperature_scaling_recovers_a_known_temperature(true_t):
    y, logits = _sample(3000, 3, true_t, seed=2)
    t = fit_temperature(y, logits=logits)
    assert t == pytest.approx(true_t, rel=0.12)
    calibrated = apply_temperature(t, logits=logits)
    assert expected_calibration_error(y, calibrated) < expected_calibration_error(y, softmax(logits, axis=1))
    np.testing.assert_array_equal(calibrated.argmax(1), logits.argmax(1))


def test_temperature_from_probabilities_equals_from_logits():
    # zero-shot style: logits = 100 * cosine similarity; the predictions table only holds their softmax
    y, logits = _sample(500, 4, 2.0, seed=3)
    proba = softmax(logits, axis=1)
    assert fit_temperature(y, proba=proba) == pytest.approx(fit_temperature(y, logits=logits), rel=1e-4)
    np.testing.assert_allclose(apply_temperature(1.7, proba=proba), apply_temperature(1.7, logits=logits), atol=1e-9)
    with pytest.raises(ValueError, match="exactly one"):
        fit_temperature(y, logits=logits, proba=proba)


def test_summary_fits_on_validation_only():
    y_val, z_val = _sample(800, 2, 3.0, seed=4)
    y_test, z_test = _sample(800, 2, 3.0, seed=5)
    p_val, p_test = softmax(z_val, axis=1), softmax(z_test, axis=1)
    out = calibration_summary(y_test, p_test, y_val, p_val, n_bins=15, positive_index=1)
    assert out["temperature"] == pytest.approx(fit_temperature(y_val, proba=p_val))
    assert out["after"]["ece"] < out["before"]["ece"]
    assert out["after"]["nll"] < out["before"]["nll"]
    assert len(out["before"]["positive_bins"]) == 15
    shuffled = calibration_summary(np.random.default_rng(0).permutation(y_test), p_test, y_val, p_val)
    assert shuffled["temperature"] == out["temperature"]  # test labels do not enter the fit
    assert calibration_summary(y_test, p_test)["after"] is None


def test_calibration_intervals_equal_a_replicate_loop():
    from breastclip.evaluation.bootstrap import ClusterResampler, percentile_ci

    y, logits = _sample(120, 3, 2.0, seed=6)
    proba = softmax(logits, axis=1)
    groups = np.repeat(np.arange(60), 2)
    out = calibration_summary(y, proba, n_boot=80, seed=2, groups=groups)["before"]
    reps = list(ClusterResampler(120, groups).replicates(80, 2))
    for key, fn in (("ece", lambda i: expected_calibration_error(y[i], proba[i])),
                    ("brier", lambda i: brier_score(y[i], proba[i]))):
        np.testing.assert_allclose(out[f"{key}_ci"], percentile_ci(np.array([fn(i) for i in reps])))
