"""Fairness summary: the largest between-group gap in sensitivity, specificity and AUC, checked against
scikit-learn on each group, with groups too small in positives or negatives left out of a metric's comparison."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from breastclip.evaluation.fairness import fairness_gaps


def _data(seed=0):
    rng = np.random.default_rng(seed)
    n = 300
    site = rng.choice(["a", "b", "c"], n, p=[0.45, 0.45, 0.10])
    y = rng.integers(0, 2, n).astype(bool)
    shift = np.where(site == "b", 0.15, 0.0)  # site b scores positives lower: a real sensitivity gap
    score = np.clip(rng.normal(0.35 + 0.3 * y - shift * y, 0.15), 0, 1)
    y[(site == "c")] = False  # site c: negatives only
    return y, score, pd.DataFrame({"site": site, "constant": "x"})


def test_gaps_equal_the_group_metrics_and_small_groups_are_left_out():
    y, score, meta = _data()
    t = 0.5
    table = fairness_gaps(y, score, t, meta, min_group_size=10, n_boot=200, seed=0).set_index("metric")
    site = meta["site"].to_numpy()
    sens = {g: np.mean(score[(site == g) & y] >= t) for g in ("a", "b")}
    spec = {g: np.mean(score[(site == g) & ~y] < t) for g in ("a", "b", "c")}
    auc = {g: roc_auc_score(y[site == g], score[site == g]) for g in ("a", "b")}
    assert table.loc["sensitivity", "n_groups"] == 2  # site c has no positives
    assert table.loc["sensitivity", "gap"] == pytest.approx(max(sens.values()) - min(sens.values()))
    assert table.loc["sensitivity", "low_group"] == "b"
    assert table.loc["specificity", "n_groups"] == 3
    assert table.loc["specificity", "gap"] == pytest.approx(max(spec.values()) - min(spec.values()))
    assert table.loc["roc_auc", "gap"] == pytest.approx(max(auc.values()) - min(auc.values()))
    for _, r in table.iterrows():
        assert r["ci_lo"] <= r["gap"] <= r["ci_hi"] and r["n_boot_used"] > 150


def test_no_comparison_without_two_large_enough_groups():
    y, score, meta = _data()
    assert fairness_gaps(y, score, 0.5, meta, min_group_size=1000, n_boot=20).empty
