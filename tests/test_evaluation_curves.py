"""ROC / PR curve data on fixed grids against scikit-learn's curves, and bootstrap bands around them."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_recall_curve, roc_curve

from breastclip.evaluation.curves import curve_bands, precision_on_grid, tpr_on_grid


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(5, 80), st.booleans())
def test_grid_curves_equal_sklearn_envelopes(seed, n, coarse):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.normal(y, 1.0)
    if coarse:
        s = np.round(s)
    grid = np.linspace(0, 1, 21)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    expected = [tpr[fpr <= f + 1e-12].max() for f in grid]
    np.testing.assert_allclose(tpr_on_grid(y, s, grid), expected)
    prec, rec, _ = precision_recall_curve(y, s)
    expected = [prec[rec >= r - 1e-12].max() for r in grid]
    np.testing.assert_allclose(precision_on_grid(y, s, grid), expected)


def test_bands_surround_the_curve_and_absent_classes_are_skipped():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    logits = rng.normal(size=(150, 3)) + 1.5 * np.eye(3)[y]  # class 2 never occurs
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    roc, pr = curve_bands(y, proba, ["a", "b", "c"], n_boot=100, seed=0)
    assert set(roc["class"]) == {"a", "b"} and set(pr["class"]) == {"a", "b"}
    assert len(roc) == 2 * 101
    inside = (roc["tpr_lo"] <= roc["tpr"] + 1e-12) & (roc["tpr"] <= roc["tpr_hi"] + 1e-12)
    assert inside.mean() > 0.9
    assert (roc["tpr_hi"] - roc["tpr_lo"]).median() < 0.2
    binary = curve_bands(y, proba[:, :2] / proba[:, :2].sum(1, keepdims=True), ["a", "b"], positive_index=0,
                         n_boot=0)[0]
    assert set(binary["class"]) == {"a"} and binary["tpr_lo"].isna().all()


def test_weighted_curves_equal_the_resampled_curves():
    from breastclip.evaluation.bootstrap import ClusterResampler
    from breastclip.evaluation.curves import weighted_curves

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.normal(y, 1.0), 1)
    grid = np.linspace(0, 1, 41)
    sampler = ClusterResampler(50, np.repeat(np.arange(25), 2))
    idxs = list(sampler.replicates(40, seed=1))
    w = next(sampler.multiplicities(40, seed=1))
    tpr, prec, ok = weighted_curves(y, s, w, grid, grid)
    for b, idx in enumerate(idxs):
        assert ok[b] == (0 < y[idx].sum() < idx.size)
        if ok[b]:
            np.testing.assert_allclose(tpr[b], tpr_on_grid(y[idx], s[idx], grid))
            np.testing.assert_allclose(prec[b], precision_on_grid(y[idx], s[idx], grid))
