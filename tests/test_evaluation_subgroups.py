"""Subgroups: estimates equal the metrics on the subset, small groups are reported not computed, columns are
selected with recorded reasons; confident errors are ranked and typed."""

import numpy as np
import pandas as pd
import pytest

from breastclip.evaluation.errors import confident_errors
from breastclip.evaluation.metrics import headline_metrics
from breastclip.evaluation.subgroups import select_columns, subgroup_table
from breastclip.predictions import make_predictions


def _data(n=150, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.01, 0.99)
    meta = pd.DataFrame({
        "view": rng.choice(["CC", "MLO"], n),
        "density": rng.choice([1, 2, 3, 4], n, p=[0.05, 0.45, 0.4, 0.1]),
        "age": rng.integers(30, 85, n),
        "scanner": "A",
        "notes": [f"free text {i}" for i in range(n)],
    })
    meta.loc[:9, "view"] = np.nan
    return y, np.c_[1 - p, p], meta


def test_group_estimates_equal_metrics_on_the_subset_and_small_groups_are_not_computed():
    y, proba, meta = _data()
    table, skipped = subgroup_table(y, proba, ["benign", "malignant"], meta, positive_index=1, min_group_size=20,
                                    n_boot=50, seed=0, columns=["view", "density"])
    assert skipped == {}
    acc = table[table["metric"] == "accuracy"].set_index(["column", "value"])
    for (col, value), row in acc.iterrows():
        mask = (meta[col].astype(str) == value).to_numpy() if value != "(missing)" else meta[col].isna().to_numpy()
        assert row["n"] == mask.sum()
        if min((y[mask] == 1).sum(), (y[mask] == 0).sum()) < 20:  # positives and negatives, not images
            assert row["status"] == "too_small" and np.isnan(row["estimate"]) and row["n_boot_used"] == 0
        else:
            assert row["status"] == "ok"
            assert row["estimate"] == pytest.approx(headline_metrics(y[mask], proba[mask], 1)["accuracy"])
            assert row["ci_lo"] <= row["estimate"] <= row["ci_hi"]
    assert ("view", "(missing)") in acc.index and acc.loc[("view", "(missing)"), "status"] == "too_small"
    assert list(acc.loc["density"].index) == ["1", "2", "3", "4"]
    assert acc.loc[("density", "1"), "status"] == "too_small"


def test_column_selection_skips_with_reasons_and_bins_on_request():
    _, _, meta = _data()
    meta["id"] = "x"
    meta["p_benign"] = 0.5
    chosen, skipped = select_columns(meta)
    assert set(chosen) == {"view", "density", "age"}  # age: continuous, binned into ranges (not one group per age)
    assert "constant" in skipped["scanner"]
    assert "high-cardinality" in skipped["notes"]
    assert chosen["age"].nunique() == 4
    for label, age in zip(chosen["age"], meta["age"], strict=True):
        lo, hi = map(int, label.split("-"))
        assert lo <= age <= hi
    chosen, skipped = select_columns(meta, bins={"age": 4})
    assert chosen["age"].nunique() == 4 and "age" not in skipped
    chosen, _ = select_columns(meta, ["age"], bins={"age": [0, 50, 120]})
    assert sorted(chosen["age"].unique()) == ["(-0.001, 50.0]", "(50.0, 120.0]"]
    with pytest.raises(ValueError, match="not in the joined table"):
        select_columns(meta, ["magnification"])
    # a manifest read back from CSV as text: '' is missing, numbers in strings are still continuous
    text = meta.astype(str).replace("nan", "")
    chosen, skipped = select_columns(text, bins={"age": 4})
    assert "(missing)" in set(chosen["view"]) and chosen["age"].nunique() == 4
    assert select_columns(text)[0]["age"].tolist() == chosen_ranges(meta)


def chosen_ranges(meta):
    return select_columns(meta)[0]["age"].tolist()


def test_ages_are_binned_into_ordered_ranges_and_few_distinct_values_stay_groups():
    from breastclip.evaluation.subgroups import _natural, range_labels

    ages = pd.Series([31, 38, 45, 52, 59, 66, 73, 80, np.nan])
    labels = range_labels(ages, 4)
    assert labels.iloc[-1] == "(missing)" and labels.iloc[0] == "31-42" and labels.iloc[-2].endswith("-80")
    assert sorted(["10-19", "5-9", "(missing)", "20-29"], key=_natural) == ["5-9", "10-19", "20-29", "(missing)"]
    few = pd.DataFrame({"density": [1, 2, 3, 4] * 10})
    assert sorted(select_columns(few)[0]["density"].unique()) == ["1", "2", "3", "4"]
    sizes = pd.DataFrame({"size_mm": np.linspace(1.5, 30.25, 40)})
    assert select_columns(sizes)[0]["size_mm"].nunique() == 4


def test_minimum_group_size_counts_positives_and_negatives():
    from breastclip.evaluation.subgroups import subgroup_operating_points

    # site a: 60 images but 3 positives; site b: 24 positives and 24 negatives
    y = np.array([1] * 3 + [0] * 57 + [1] * 24 + [0] * 24)
    p = np.clip(0.3 + 0.4 * y + np.linspace(-0.2, 0.2, y.size), 0, 1)
    meta = pd.DataFrame({"site": ["a"] * 60 + ["b"] * 48})
    table, _ = subgroup_table(y, np.c_[1 - p, p], ["neg", "pos"], meta, positive_index=1, min_group_size=10,
                              n_boot=20)
    status = table.drop_duplicates("value").set_index("value")["status"]
    assert status["a"] == "too_small" and status["b"] == "ok"
    ops = subgroup_operating_points(y == 1, p, meta, {"youden": 0.5}, min_group_size=10, n_boot=20)
    assert ops.set_index("value").loc["a", "status"] == "too_small"


def test_single_class_groups_give_nan_auc_not_an_error():
    y = np.array([0] * 30 + [1] * 30)
    proba = np.c_[np.linspace(0.9, 0.1, 60), np.linspace(0.1, 0.9, 60)]
    meta = pd.DataFrame({"site": ["a"] * 30 + ["b"] * 30})
    table, _ = subgroup_table(y, proba, ["neg", "pos"], meta, positive_index=1, n_boot=30, min_group_size=10)
    auc = table[table["metric"] == "roc_auc"].set_index("value")
    assert np.isnan(auc.loc["a", "estimate"]) and auc.loc["a", "classes_present"] == "neg"
    acc = table[table["metric"] == "accuracy"].set_index("value")
    assert acc.loc["a", "estimate"] == 1.0


def test_confident_errors_are_ranked_typed_and_carry_metadata():
    proba = np.array([[0.1, 0.9], [0.95, 0.05], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    pred = make_predictions(ids=list("abcde"), y_true=["benign", "malignant", "malignant", "malignant", "benign"],
                            proba=proba, classes=["benign", "malignant"], method="m", split="test")
    pred["view"] = ["CC", "MLO", "CC", "MLO", "CC"]
    pred["image"] = [f"{i}.png" for i in "abcde"]
    out = confident_errors(pred, k=10, positive_class="malignant")
    assert list(out["id"]) == ["b", "a", "e", "c"]
    assert list(out["error_type"]) == ["FN", "FP", "FP", "FN"]
    assert list(out["confidence"]) == [0.95, 0.9, 0.7, 0.6]
    assert list(out["view"]) == ["MLO", "CC", "CC", "CC"] and "image" in out
    assert len(confident_errors(pred, k=2)) == 2


@pytest.mark.realdata
def test_real_cbis_ddsm_metadata_columns(shared_data):
    """The official CBIS-DDSM case descriptions: the clinically used columns are analysed, paths and fine
    free-text categories are skipped with a reason, density is ordered numerically."""
    folder = shared_data / "cbis_ddsm_metadata"
    mass = pd.read_csv(folder / "mass_case_description_test_set.csv").rename(columns={"breast_density": "breast density"})
    calc = pd.read_csv(folder / "calc_case_description_test_set.csv")
    meta = pd.concat([mass, calc], ignore_index=True)
    y = meta["pathology"].eq("MALIGNANT").astype(int).to_numpy()
    rng = np.random.default_rng(0)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.01, 0.99)
    chosen, skipped = select_columns(meta.drop(columns=["patient_id"]))
    assert {"breast density", "image view", "abnormality type", "left or right breast", "subtlety"} <= set(chosen)
    assert skipped["image file path"].startswith("high-cardinality")
    assert "bins" not in skipped["mass margins"]
    table, _ = subgroup_table(y, np.c_[1 - p, p], ["benign", "malignant"], meta,
                              groups=meta["patient_id"].to_numpy(), positive_index=1, n_boot=50,
                              columns=["breast density", "abnormality type"])
    dens = table[(table["column"] == "breast density") & (table["metric"] == "roc_auc")]
    assert list(dens["value"]) == ["0", "1", "2", "3", "4"]
    ok = dens[dens["status"] == "ok"]
    assert len(ok) >= 3 and (ok["n_patients"] <= ok["n"]).all() and ok["estimate"].between(0.6, 1).all()


def test_subgroup_operating_points_apply_the_frozen_thresholds_per_group():
    from breastclip.evaluation.subgroups import subgroup_operating_points

    y, proba, meta = _data(n=200, seed=4)
    table = subgroup_operating_points(y == 1, proba[:, 1], meta, {"youden": 0.45, "fixed=0.5": 0.5},
                                      columns=["view", "density"], min_group_size=20, n_boot=50)
    assert set(table["policy"]) == {"youden", "fixed=0.5"}
    for _, row in table[table["status"] == "ok"].iterrows():
        labels = meta[row["column"]].astype(str)
        mask = (labels == row["value"]).to_numpy()
        hit = proba[mask, 1] >= row["threshold"]
        assert row["tp"] == np.sum(hit & (y[mask] == 1)) and row["fn"] == np.sum(~hit & (y[mask] == 1))
        assert row["n_positive"] == (y[mask] == 1).sum()
    small = table[table["status"] == "too_small"]
    assert len(small) and small["tp"].isna().all()
