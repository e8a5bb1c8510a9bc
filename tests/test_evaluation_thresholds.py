"""Operating points: each policy is optimal on validation (brute force), and test rows never move a threshold."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breastclip.evaluation.thresholds import (
    choose_threshold,
    confusion_at,
    operating_points,
    parse_policy,
    threshold_sweep,
)

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def binary_samples(draw):
    n = draw(st.integers(6, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    score = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)
    if draw(st.booleans()):
        score = np.round(score, 1)  # ties
    return y, score


def _all_candidates(y, score):
    thresholds = np.r_[np.inf, np.unique(score)[::-1]]
    return [(t, confusion_at(y, score, t)) for t in thresholds]


@SETTINGS
@given(binary_samples(), st.sampled_from(["youden", "spec>=0.8", "sens>=0.9", "cost=5", "cost=0.5"]))
def test_policies_are_optimal_by_brute_force(sample, spec):
    y, score = sample
    thr = choose_threshold(y, score, spec)
    cands = _all_candidates(y, score)
    pol = parse_policy(spec)
    if np.isnan(thr):  # not attainable: only "nothing positive" (or a cut no better than chance) meets the rule
        finite = [c for t, c in cands[1:]]
        if pol.kind == "youden":
            assert max(c["sensitivity"] - (1 - c["specificity"]) for c in finite) <= 1e-12
        elif pol.kind == "spec":
            assert all(c["sensitivity"] == 0 for c in finite if c["specificity"] >= pol.value)
        elif pol.kind == "cost":
            assert min(pol.value * c["fn"] + c["fp"] for c in finite) >= pol.value * int(y.sum())
        else:
            raise AssertionError(f"{spec} is always attainable")
        return
    # between two validation scores, never on one (unless every image is positive and the lowest score is 0)
    assert np.isfinite(thr) and (thr not in set(score) or thr == score.min() <= 0)
    got = confusion_at(y, score, thr)
    if pol.kind == "youden":
        best = max(c["sensitivity"] + c["specificity"] for _, c in cands)
        assert got["sensitivity"] + got["specificity"] == pytest.approx(best)
    elif pol.kind == "spec":
        assert got["specificity"] >= pol.value
        best = max(c["sensitivity"] for _, c in cands if c["specificity"] >= pol.value)
        assert got["sensitivity"] == pytest.approx(best)
    elif pol.kind == "sens":
        assert got["sensitivity"] >= pol.value
        best = max(c["specificity"] for _, c in cands if c["sensitivity"] >= pol.value)
        assert got["specificity"] == pytest.approx(best)
    else:
        best = min(pol.value * c["fn"] + c["fp"] for _, c in cands)
        assert pol.value * got["fn"] + got["fp"] == pytest.approx(best)


@SETTINGS
@given(binary_samples())
def test_sweep_matches_confusion_at_every_threshold(sample):
    y, score = sample
    grid = np.r_[np.linspace(0, 1, 11), np.unique(score)]
    sweep = threshold_sweep(y, score, grid)
    for _, row in sweep.iterrows():
        ref = confusion_at(y, score, row["threshold"])
        for key in ("tp", "fp", "tn", "fn"):
            assert row[key] == ref[key]
        for key in ("sensitivity", "specificity", "ppv", "npv"):
            assert row[key] == pytest.approx(ref[key], nan_ok=True)


def test_test_rows_never_influence_the_threshold():
    rng = np.random.default_rng(0)
    y_val = rng.integers(0, 2, 80)
    s_val = np.clip(rng.normal(0.35 + 0.3 * y_val, 0.2), 0, 1)
    y_test = rng.integers(0, 2, 120)
    s_test = np.clip(rng.normal(0.35 + 0.3 * y_test, 0.2), 0, 1)
    policies = ("youden", "spec>=0.9", "sens>=0.9", "cost=5", "fixed=0.5")
    ref = operating_points(y_val, s_val, y_test, s_test, policies)
    for trial in range(3):
        other = np.random.default_rng(trial + 10)
        perturbed = operating_points(y_val, s_val, other.integers(0, 2, 50), other.random(50), policies)
        assert list(perturbed["threshold"]) == list(ref["threshold"])
        assert list(perturbed["val_sensitivity"]) == list(ref["val_sensitivity"])
    # and the validation data does drive them (the check above is not vacuous)
    moved = operating_points(y_val, s_val ** 2, y_test, s_test, policies)
    assert list(moved["threshold"][:4]) != list(ref["threshold"][:4])
    # test counts are those of the frozen threshold applied to test
    for _, row in ref[ref["attainable"]].iterrows():
        assert row["fp"] == int(np.sum((s_test >= row["threshold"]) & (y_test == 0)))
        assert row["fn"] == int(np.sum((s_test < row["threshold"]) & (y_test == 1)))


def test_operating_point_intervals_cover_the_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    ops = operating_points(y[:100], s[:100], y[100:], s[100:], ("youden",), n_boot=200, seed=0)
    row = ops.iloc[0]
    for m in ("sensitivity", "specificity", "ppv", "npv"):
        assert row[f"{m}_ci_lo"] <= row[m] <= row[f"{m}_ci_hi"]


def test_bad_policies_and_degenerate_validation_are_refused():
    for bad in ("median", "spec>=1.5", "cost=0", "youden0.3", "sens>=x"):
        with pytest.raises(ValueError, match="policy"):
            parse_policy(bad)
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.zeros(10), np.linspace(0, 1, 10), "youden")
    assert choose_threshold(np.zeros(10), np.linspace(0, 1, 10), "fixed=0.3") == 0.3


def test_vectorised_intervals_equal_a_replicate_loop():
    from breastclip.evaluation.bootstrap import ClusterResampler, percentile_ci
    from breastclip.evaluation.thresholds import apply_thresholds

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 90)
    s = np.round(np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1), 2)
    groups = np.repeat(np.arange(45), 2)
    thresholds = {"a": 0.3, "b": 0.55}
    got = apply_thresholds(y, s, thresholds, groups=groups, n_boot=100, seed=3).set_index("policy")
    reps = list(ClusterResampler(90, groups).replicates(100, 3))
    for name, t in thresholds.items():
        for m in ("sensitivity", "specificity", "ppv", "npv"):
            lo, hi = percentile_ci(np.array([confusion_at(y[i], s[i], t)[m] for i in reps]))
            assert got.loc[name, f"{m}_ci_lo"] == pytest.approx(lo)
            assert got.loc[name, f"{m}_ci_hi"] == pytest.approx(hi)


def test_threshold_is_the_midpoint_between_the_validation_scores_that_bound_the_cut():
    # separable validation: Youden's cut lies halfway between the classes, not at the lowest positive score
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.05, 0.2, 0.3, 0.99993, 0.99995, 0.99999])
    assert choose_threshold(y, s, "youden") == pytest.approx((0.3 + 0.99993) / 2)
    # a positive at 0.996 (under the lowest validation positive) is now called positive
    assert 0.996 >= choose_threshold(y, s, "youden")
    # every image positive (sens>=1.0 with an overlapping negative at the bottom): halfway to zero
    y2 = np.array([1, 0, 1, 0, 1])
    s2 = np.array([0.1, 0.2, 0.4, 0.6, 0.8])
    assert choose_threshold(y2, s2, "sens>=1.0") == pytest.approx(0.05)


def test_unattainable_policy_is_reported_not_applied():
    # the highest validation score is a negative: no cut that finds a positive reaches spec >= 0.90 with 5 negatives
    y_val = np.array([0, 1, 0, 1, 0, 0, 1, 0])
    s_val = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.95])
    assert np.isnan(choose_threshold(y_val, s_val, "spec>=0.9"))
    # Youden's J never above zero (scores anti-correlated with the label)
    assert np.isnan(choose_threshold(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9]), "youden"))
    ops = operating_points(y_val, s_val, np.array([0, 1]), np.array([0.2, 0.9]), ("spec>=0.9", "youden"), n_boot=20)
    row = ops.set_index("policy").loc["spec>=0.9"]
    assert not row["attainable"] and np.isnan(row["threshold"]) and np.isnan(row["sensitivity"])
    assert not np.isinf(ops["threshold"].to_numpy(float)).any()
    yrow = ops.set_index("policy").loc["youden"]
    assert yrow["attainable"] and yrow["tp"] + yrow["fn"] == 1
