"""The bootstrap resamples patients (whole clusters), counts skipped replicates and is reproducible."""

import numpy as np
import pytest

from breastclip.evaluation.bootstrap import ClusterResampler, bootstrap_metrics
from breastclip.evaluation.metrics import headline_metrics


def test_replicates_take_whole_patients():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 6, size=40)
    groups = np.repeat([f"p{i}" for i in range(40)], sizes)
    rng.shuffle(groups)
    sampler = ClusterResampler(groups.size, groups)
    assert sampler.clustered and sampler.n_groups == 40
    distinct_patients = []
    for idx in sampler.replicates(50, seed=1):
        drawn = groups[idx]
        patients, counts = np.unique(drawn, return_counts=True)
        distinct_patients.append(patients.size)
        for p, c in zip(patients, counts, strict=True):
            size = int((groups == p).sum())
            assert c % size == 0, "a patient contributed part of its images"
            # every image of a drawn patient is there
            assert set(np.nonzero(groups == p)[0]) == set(idx[drawn == p])
    # about 1 - 1/e of the patients appear in each replicate, not all of them
    assert 0.5 < np.mean(distinct_patients) / 40 < 0.75


def test_cluster_interval_is_wider_when_images_of_a_patient_are_correlated():
    # 30 patients x 8 identical images: the effective sample is 30, not 240
    rng = np.random.default_rng(3)
    y_pat = rng.integers(0, 2, 30)
    correct_pat = rng.random(30) < 0.7
    y = np.repeat(y_pat, 8)
    correct = np.repeat(correct_pat, 8)
    proba = np.where((y == 1) == correct, 0.8, 0.2)
    proba = np.c_[1 - proba, proba]
    groups = np.repeat(np.arange(30), 8)

    def stat(idx):
        return headline_metrics(y[idx], proba[idx], positive_index=1)

    by_image = bootstrap_metrics(stat, y.size, n_boot=200, seed=0, required_labels=y)["accuracy"]
    by_patient = bootstrap_metrics(stat, y.size, groups=groups, n_boot=200, seed=0, required_labels=y)["accuracy"]
    assert by_image["estimate"] == by_patient["estimate"] == pytest.approx(correct.mean())
    width_img = by_image["ci_hi"] - by_image["ci_lo"]
    width_pat = by_patient["ci_hi"] - by_patient["ci_lo"]
    assert width_pat > 2 * width_img  # ~sqrt(8) times wider in expectation


def test_degenerate_replicates_are_skipped_and_counted_and_seed_is_fixed():
    y = np.array([0] * 18 + [1, 1])
    proba = np.c_[np.linspace(0.9, 0.1, 20), np.linspace(0.1, 0.9, 20)]

    def stat(idx):
        return headline_metrics(y[idx], proba[idx], positive_index=1)

    res = bootstrap_metrics(stat, 20, n_boot=200, seed=5, required_labels=y)
    auc = res["roc_auc"]
    # P(no positive in a replicate) = 0.9^20 ~ 12%
    assert 5 < auc["n_boot_skipped"] < 60
    assert auc["n_boot_used"] + auc["n_boot_skipped"] == 200
    assert auc["ci_lo"] <= auc["estimate"] <= auc["ci_hi"]
    assert bootstrap_metrics(stat, 20, n_boot=200, seed=5, required_labels=y) == res
    assert bootstrap_metrics(stat, 20, n_boot=200, seed=6, required_labels=y) != res


def test_too_few_usable_replicates_give_nan_interval():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    proba = np.c_[1 - np.linspace(0, 1, 10), np.linspace(0, 1, 10)]
    res = bootstrap_metrics(lambda idx: headline_metrics(y[idx], proba[idx], positive_index=1), 10,
                            n_boot=8, seed=0, required_labels=y)
    assert res["roc_auc"]["n_boot_used"] < 10
    assert np.isnan(res["roc_auc"]["ci_lo"]) and res["roc_auc"]["estimate"] == 1.0


def test_groups_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="groups has 3 entries for 4 samples"):
        ClusterResampler(4, ["a", "b", "c"])


def test_cluster_bootstrap_keeps_nominal_coverage_where_the_image_bootstrap_does_not():
    """150 simulated test sets of 40 patients x 5 images whose calls are correlated within a patient (ICC ~0.6):
    the patient bootstrap covers the true accuracy ~95% of the time, the naive image bootstrap far less."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 5)
    hits = {"patient": 0, "image": 0}
    for r in range(150):
        p_patient = rng.beta(0.5, 0.25, 40)  # mean 2/3
        correct = (rng.random((40, 5)) < p_patient[:, None]).ravel().astype(float)

        def stat(idx, correct=correct):
            return {"acc": correct[idx].mean()}

        for unit, g in (("patient", groups), ("image", None)):
            ci = bootstrap_metrics(stat, correct.size, groups=g, n_boot=200, seed=r)["acc"]
            hits[unit] += ci["ci_lo"] <= 2 / 3 <= ci["ci_hi"]
    assert hits["patient"] / 150 >= 0.88
    assert hits["image"] / 150 <= 0.80


def test_bca_agrees_with_scipy_and_corrects_a_skewed_statistic():
    from scipy.stats import bootstrap

    x = np.random.default_rng(1).exponential(1.0, 80) ** 2  # strongly skewed: BCa matters

    def stat(idx):
        return {"mean": x[idx].mean()}

    ours = bootstrap_metrics(stat, x.size, n_boot=2000, seed=0, interval="bca")["mean"]
    pct = bootstrap_metrics(stat, x.size, n_boot=2000, seed=0)["mean"]
    ref = bootstrap((x,), np.mean, n_resamples=2000, method="BCa", random_state=0).confidence_interval
    scale = x.std() / np.sqrt(x.size)
    assert abs(ours["ci_lo"] - ref.low) < 0.25 * scale and abs(ours["ci_hi"] - ref.high) < 0.25 * scale
    assert ours["ci_hi"] > pct["ci_hi"]  # right skew: BCa moves the interval up
    with pytest.raises(ValueError, match="interval must be"):
        bootstrap_metrics(stat, x.size, n_boot=10, interval="basic")


def test_bca_jackknife_leaves_out_whole_patients():
    from breastclip.evaluation.bootstrap import jackknife_values

    groups = np.array(["a", "a", "b", "c", "c", "c"])
    seen = []
    jackknife_values(lambda idx: seen.append(tuple(idx)) or {"n": idx.size}, 6, groups)
    assert seen == [(2, 3, 4, 5), (0, 1, 3, 4, 5), (0, 1, 2)]


@pytest.mark.parametrize("k", [2, 4])
def test_weighted_bootstrap_equals_the_replicate_loop(k):
    """The vectorised path (weights per image) gives the same replicates, skips and intervals as resampling."""
    from breastclip.evaluation.bootstrap import bootstrap_weighted
    from breastclip.evaluation.metrics import sample_metrics
    from breastclip.evaluation.weighted import weighted_sample_metrics

    rng = np.random.default_rng(k)
    n = 60
    y = rng.integers(0, k, n)
    y[:3] = k - 1  # the last class is rare (a few patients), so some replicates lack it and are skipped
    y[3:] = np.where(y[3:] == k - 1, 0, y[3:])
    proba = rng.dirichlet(np.ones(k), n)
    proba = np.round(proba, 1) / np.round(proba, 1).sum(1, keepdims=True)  # ties
    groups = np.repeat(np.arange(30), 2)
    pos = 1 if k == 2 else None

    def loop_stat(idx):
        head, pc = sample_metrics(y[idx], proba[idx], pos)
        return {**head, **{f"auc@{j}": pc["roc_auc"][j] for j in range(k)}}

    def batch_stat(w):
        head, pc = weighted_sample_metrics(y, proba, pos, w)
        return {**head, **{f"auc@{j}": pc["roc_auc"][:, j] for j in range(k)}}

    for interval in ("percentile", "bca"):
        ref = bootstrap_metrics(loop_stat, n, groups=groups, required_labels=y, n_boot=120, seed=4,
                                interval=interval)
        got = bootstrap_weighted(batch_stat, n, groups=groups, required_labels=y, n_boot=120, seed=4,
                                 interval=interval)
        assert set(got) == set(ref)
        for m in ref:
            assert got[m]["n_boot_used"] == ref[m]["n_boot_used"], m
            for key in ("estimate", "ci_lo", "ci_hi"):
                assert got[m][key] == pytest.approx(ref[m][key], abs=1e-9, nan_ok=True), (m, key)
    assert ref["accuracy"]["n_boot_skipped"] > 0
