"""Breast- and exam-level aggregation of image predictions (evaluation/levels.py): worst label, mean / max /
noisy-or on cumulative severity probabilities, split leaks refused, bootstrap by patient at unit level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastclip.evaluation import evaluate_predictions
from breastclip.evaluation.levels import aggregate_predictions, severity_order, unit_manifest
from breastclip.predictions import make_predictions

CLASSES = ["benign", "malignant", "normal"]  # alphabetical, as a manifest sorts them: severity is not table order


def _manifest_df() -> pd.DataFrame:
    rows = []
    for pid, labels in (("P1", {"L": ("normal", "normal"), "R": ("malignant", "benign")}),
                        ("P2", {"L": ("benign", "normal"), "R": ("normal", "normal")})):
        for lat, (cc, mlo) in labels.items():
            for view, lab in (("CC", cc), ("MLO", mlo)):
                rows.append({"id": f"{pid}_{lat}_{view}", "patient_id": pid, "laterality": lat, "view": view,
                             "exam_id": f"{pid}-e1", "label": lab, "split": "test", "density": "B"})
    return pd.DataFrame(rows)


def _pred(mdf: pd.DataFrame, proba: np.ndarray) -> pd.DataFrame:
    return make_predictions(ids=mdf["id"], y_true=mdf["label"], proba=proba, classes=CLASSES, method="m",
                            split=mdf["split"].tolist(), patient_id=mdf["patient_id"])


def test_severity_order_puts_known_names_in_clinical_order():
    assert severity_order(CLASSES) == ["normal", "benign", "malignant"]
    assert severity_order(["neg", "pos"]) == ["neg", "pos"]
    assert severity_order(["a", "b"], ["b", "a"]) == ["b", "a"]
    with pytest.raises(ValueError, match="lacks the classes \\['b'\\]"):
        severity_order(["a", "b"], ["a"])


def test_breast_label_is_the_worst_view_and_rules_match_hand_computation():
    mdf = _manifest_df()
    # columns follow CLASSES = benign, malignant, normal
    proba = np.array([[0.1, 0.1, 0.8], [0.2, 0.1, 0.7],      # P1 L
                      [0.2, 0.6, 0.2], [0.5, 0.2, 0.3],      # P1 R
                      [0.4, 0.1, 0.5], [0.1, 0.0, 0.9],      # P2 L
                      [0.0, 0.0, 1.0], [0.1, 0.1, 0.8]])     # P2 R
    pred = _pred(mdf, proba)
    mean = aggregate_predictions(pred, mdf, "breast", "mean").set_index("id")
    assert mean.loc["P1|R", "y_true"] == "malignant" and mean.loc["P2|L", "y_true"] == "benign"
    assert mean.loc["P1|L", "y_true"] == "normal" and (mean["n_images"] == 2).all()
    np.testing.assert_allclose(mean.loc["P1|R", ["p_benign", "p_malignant", "p_normal"]].to_numpy(float),
                               [0.35, 0.4, 0.25])
    mx = aggregate_predictions(pred, mdf, "breast", "max").set_index("id")
    # q(>=benign) = max(0.8, 0.7) = 0.8, q(malignant) = max(0.6, 0.2) = 0.6 -> p = (0.2, 0.6, 0.2)
    np.testing.assert_allclose(mx.loc["P1|R", ["p_benign", "p_malignant", "p_normal"]].to_numpy(float),
                               [0.2, 0.6, 0.2])
    no = aggregate_predictions(pred, mdf, "breast", "noisy_or").set_index("id")
    q_ge_benign = 1 - (1 - 0.8) * (1 - 0.7)
    q_mal = 1 - (1 - 0.6) * (1 - 0.2)
    np.testing.assert_allclose(no.loc["P1|R", ["p_benign", "p_malignant", "p_normal"]].to_numpy(float),
                               [q_ge_benign - q_mal, q_mal, 1 - q_ge_benign])
    for t in (mean, mx, no):
        np.testing.assert_allclose(t[["p_benign", "p_malignant", "p_normal"]].sum(axis=1), 1.0)
        assert set(t["patient_id"]) == {"P1", "P2"} and len(t) == 4
    exam = aggregate_predictions(pred, mdf, "exam", "max").set_index("id")
    assert list(exam.index) == ["P1|P1-e1", "P2|P2-e1"] and list(exam["y_true"]) == ["malignant", "benign"]
    assert (exam["n_images"] == 4).all()


def test_binary_noisy_or_is_one_minus_product():
    mdf = _manifest_df()
    p = np.linspace(0.1, 0.8, len(mdf))
    pred = make_predictions(ids=mdf["id"], y_true=np.where(mdf["label"] == "malignant", "malignant", "benign"),
                            proba=np.c_[1 - p, p], classes=["benign", "malignant"], method="m", split="test",
                            patient_id=mdf["patient_id"])
    out = aggregate_predictions(pred, mdf, "breast", "noisy_or").set_index("id")
    np.testing.assert_allclose(out.loc["P1|L", "p_malignant"], 1 - (1 - p[0]) * (1 - p[1]))


def test_units_spanning_splits_and_missing_laterality_are_refused():
    mdf = _manifest_df()
    mdf.loc[0, "split"] = "val"
    pred = _pred(mdf, np.full((len(mdf), 3), 1 / 3))
    with pytest.raises(ValueError, match="lie in more than one split, e.g. \\['P1\\|L'\\]"):
        aggregate_predictions(pred, mdf, "breast")
    mdf = _manifest_df()
    mdf.loc[2, "laterality"] = ""
    with pytest.raises(ValueError, match="1 image\\(s\\) have no laterality, e.g. \\['P1_R_CC'\\]"):
        aggregate_predictions(_pred(mdf, np.full((len(mdf), 3), 1 / 3)), mdf, "breast")
    with pytest.raises(ValueError, match="needs a 'laterality' column"):
        aggregate_predictions(_pred(mdf, np.full((len(mdf), 3), 1 / 3)), mdf.drop(columns="laterality"), "breast")
    with pytest.raises(ValueError, match="aggregate must be one of"):
        aggregate_predictions(_pred(mdf, np.full((len(mdf), 3), 1 / 3)), mdf, "exam", "median")


def test_exam_without_exam_id_groups_by_patient_with_a_note():
    mdf = _manifest_df().drop(columns="exam_id")
    notes: list[str] = []
    out = aggregate_predictions(_pred(mdf, np.full((len(mdf), 3), 1 / 3)), mdf, "exam", notes=notes)
    assert list(out["id"]) == ["P1", "P2"] and "no exam_id column" in notes[0]


def test_breast_level_evaluation_resamples_patients():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        for lat in "LR":
            sick = rng.random() < 0.3
            for view in ("CC", "MLO"):
                rows.append({"id": f"P{i}_{lat}_{view}", "patient_id": f"P{i}", "laterality": lat, "view": view,
                             "label": "malignant" if sick and view == "CC" else "benign", "split": "test",
                             "density": "AB"[i % 2]})
    mdf = pd.DataFrame(rows)
    p = np.clip(np.where(mdf["label"] == "malignant", 0.7, 0.3) + rng.normal(0, 0.2, len(mdf)), 0.01, 0.99)
    pred = make_predictions(ids=mdf["id"], y_true=mdf["label"], proba=np.c_[1 - p, p],
                            classes=["benign", "malignant"], method="m", split="test", patient_id=mdf["patient_id"])
    breast = aggregate_predictions(pred, mdf, "breast", "max")
    assert len(breast) == 120 and breast["patient_id"].nunique() == 60
    ev = evaluate_predictions(breast, unit_manifest(mdf, "breast"), n_boot=50, seed=0,
                              subgroup_columns=["density"], min_group_size=5)
    assert ev.bootstrap["unit"] == "patient"
    assert ev.n["test"]["images"] == 120 and ev.n["test"]["patients"] == 60
    assert ev.headline["roc_auc"]["estimate"] > 0.8
    assert {r["column"] for r in ev.to_dict()["subgroups"]} == {"density"}
