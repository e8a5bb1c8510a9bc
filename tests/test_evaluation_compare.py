"""DeLong against a hand-computed case, a brute-force structural-components reference and the bootstrap;
paired bootstrap and compare_methods on predictions tables."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from breastclip.evaluation.compare import (
    compare_methods,
    delong_covariance,
    delong_test,
    holm,
    paired_bootstrap,
)
from breastclip.evaluation.metrics import binary_auc
from breastclip.predictions import make_predictions


def _brute_delong(y, scores):
    """DeLong, DeLong & Clarke-Pearson (1988) directly: psi over all positive/negative pairs, O(m n)."""
    y = np.asarray(y).astype(bool)
    comps10, comps01 = [], []
    for s in scores:
        x, z = s[y][:, None], s[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)
        comps10.append(psi.mean(axis=1))  # V10: one per positive
        comps01.append(psi.mean(axis=0))  # V01: one per negative
    s10, s01 = np.atleast_2d(np.cov(comps10)), np.atleast_2d(np.cov(comps01))
    return np.array([c.mean() for c in comps10]), s10 / y.sum() + s01 / (~y).sum()


def test_hand_computed_case():
    # positives score 0.9, 0.4; negatives 0.6, 0.1: 3 of 4 pairs ordered -> AUC 0.75
    # V10 = [1, 0.5], V01 = [0.5, 1]: var = 0.125 / 2 + 0.125 / 2 = 0.125
    aucs, cov = delong_covariance([1, 1, 0, 0], [[0.9, 0.4, 0.6, 0.1]])
    assert aucs[0] == pytest.approx(0.75)
    assert cov[0, 0] == pytest.approx(0.125)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_equals_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 90)
    y[:2] = [0, 1]
    a = np.round(rng.normal(y, 1.0), 1)
    b = np.round(0.5 * a + rng.normal(0.5 * y, 1.0), 1)
    aucs, cov = delong_covariance(y, np.vstack([a, b]))
    ref_aucs, ref_cov = _brute_delong(y, [a, b])
    np.testing.assert_allclose(aucs, ref_aucs)
    np.testing.assert_allclose(aucs, [roc_auc_score(y, a), roc_auc_score(y, b)])
    np.testing.assert_allclose(cov, ref_cov)


def test_delong_variance_agrees_with_the_bootstrap():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    a = rng.normal(y, 1.0)
    b = 0.6 * a + rng.normal(0.4 * y, 1.0)
    res = delong_test(y, a, b)
    diffs = []
    for _ in range(600):
        i = rng.integers(0, y.size, y.size)
        diffs.append(binary_auc(y[i], a[i]) - binary_auc(y[i], b[i]))  # equal to sklearn (metrics tests)
    assert res["se"] == pytest.approx(np.std(diffs, ddof=1), rel=0.15)
    assert res["ci_lo"] < res["diff"] < res["ci_hi"]


def test_single_auc_interval():
    from breastclip.evaluation.compare import delong_auc_ci

    res = delong_auc_ci([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1])
    assert res["auc"] == 0.75 and res["se"] == pytest.approx(np.sqrt(0.125))
    assert res["ci_lo"] == pytest.approx(max(0.0, 0.75 - 1.959964 * np.sqrt(0.125))) and res["ci_hi"] == 1.0


def test_published_hanley_mcneil_example():
    """Hanley & McNeil (1982) Radiology 143:29, Table 1: 5-point ratings of 58 normal and 51 abnormal CT images;
    published AUC 0.8932 with SE 0.0327 (their exponential approximation, which DeLong's estimator should
    approach)."""
    from breastclip.evaluation.compare import delong_auc_ci

    neg = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    pos = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    res = delong_auc_ci(np.r_[np.zeros(58), np.ones(51)], np.r_[neg, pos].astype(float))
    assert res["auc"] == pytest.approx(0.8932, abs=5e-5)
    assert res["se"] == pytest.approx(0.0327, rel=0.1)


def test_identical_scores_give_no_difference():
    y = np.array([0, 1] * 10)
    s = np.linspace(0, 1, 20)
    res = delong_test(y, s, s)
    assert res["diff"] == 0 and res["p_value"] == 1.0


def test_paired_bootstrap_sees_a_real_difference():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    good = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    bad = np.clip(rng.normal(0.45 + 0.1 * y, 0.2), 0, 1)
    res = paired_bootstrap(y, np.c_[1 - good, good], np.c_[1 - bad, bad], positive_index=1, n_boot=200, seed=0,
                           metrics=["roc_auc", "accuracy"])
    assert res["roc_auc"]["diff"] > 0.1 and res["roc_auc"]["ci_lo"] > 0 and res["roc_auc"]["p_value"] < 0.05
    same = paired_bootstrap(y, np.c_[1 - good, good], np.c_[1 - good, good], positive_index=1, n_boot=50)
    assert same["accuracy"]["diff"] == 0 and same["accuracy"]["p_value"] == 1.0


def test_holm_adjustment():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])


def _table(method, proba, y, ids, patients, classes=("benign", "malignant")):
    return make_predictions(ids=ids, y_true=[classes[v] for v in y], proba=proba, classes=list(classes),
                            method=method, split="test", patient_id=patients)


def test_compare_methods_uses_delong_unclustered_and_patient_bootstrap_clustered():
    rng = np.random.default_rng(5)
    n = 120
    y = rng.integers(0, 2, n)
    ids = [f"i{i}" for i in range(n)]
    scores = {"strong": np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1),
              "weak": np.clip(rng.normal(0.45 + 0.1 * y, 0.2), 0, 1),
              "mid": np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)}
    preds = pd.concat([_table(m, np.c_[1 - s, s], y, ids, ids) for m, s in scores.items()])
    out = compare_methods(preds, n_boot=100, seed=0)
    assert set(out["baseline"]) == {"strong"}  # the best AUC is the default reference
    auc = out[out["metric"] == "roc_auc"].set_index("method")
    assert set(auc["test"]) == {"DeLong"}
    ref = delong_test(y, scores["weak"], scores["strong"])
    assert auc.loc["weak", "p_value"] == pytest.approx(ref["p_value"])
    assert auc.loc["weak", "diff"] < 0
    assert (auc["p_holm"] >= auc["p_value"]).all()
    # two images per patient: the comparison must resample patients, not DeLong on correlated images
    patients = [f"p{i // 2}" for i in range(n)]
    preds_c = pd.concat([_table(m, np.c_[1 - s, s], y, ids, patients) for m, s in scores.items()])
    out_c = compare_methods(preds_c, baseline_method="mid", n_boot=100, seed=0)
    assert set(out_c["test"]) == {"paired bootstrap (patients)"}
    assert set(out_c["n_patients"]) == {60}


def test_compare_methods_refuses_mismatched_tables():
    y = np.array([0, 1, 0, 1])
    p = np.full((4, 2), 0.5)
    a = _table("a", p, y, list("wxyz"), list("wxyz"))
    b = _table("b", p, 1 - y, list("wxyz"), list("wxyz"))
    with pytest.raises(ValueError, match="disagree on y_true"):
        compare_methods(pd.concat([a, b]), n_boot=10)
    with pytest.raises(ValueError, match="at least two methods"):
        compare_methods(a, n_boot=10)
    with pytest.raises(ValueError, match="duplicate image ids"):
        compare_methods(pd.concat([a, a.iloc[:1], a.assign(method="c")]), n_boot=10)
