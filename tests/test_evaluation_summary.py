"""evaluate_predictions end to end: JSON-ready structure, val-only fitting, patient bootstrap, no torch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from breastclip.evaluation import compare_methods, evaluate_predictions
from breastclip.evaluation.metrics import headline_metrics
from breastclip.predictions import make_predictions, proba_of, y_true_index

EVAL_DIR = Path(__file__).resolve().parents[1] / "src" / "breastclip" / "evaluation"


def _preds(classes=("benign", "malignant"), n_patients=120, per_patient=2, seed=0, method="probe"):
    rng = np.random.default_rng(seed)
    k = len(classes)
    pid = np.repeat(np.arange(n_patients), per_patient)
    y = np.repeat(rng.integers(0, k, n_patients), per_patient)
    logits = rng.normal(size=(pid.size, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    split = np.where(pid < n_patients // 3, "val", "test")
    ids = [f"img{i}" for i in range(pid.size)]
    pred = make_predictions(ids=ids, y_true=[classes[v] for v in y], proba=proba, classes=list(classes),
                            method=method, split=split, patient_id=[f"p{v}" for v in pid])
    manifest = pd.DataFrame({"id": ids, "image": [f"{i}.png" for i in ids], "label": pred["y_true"],
                             "patient_id": pred["patient_id"], "split": split, "source": "synthetic",
                             "view": rng.choice(["CC", "MLO"], pid.size),
                             "density": rng.choice(["A", "B", "C", "D"], pid.size, p=[0.05, 0.45, 0.4, 0.1])})
    return pred, manifest


def test_binary_evaluation_is_complete_and_json_ready():
    pred, manifest = _preds()
    ev = evaluate_predictions(pred, manifest, n_boot=100, seed=0, min_group_size=20)
    d = ev.to_dict()
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN / inf left
    assert d["positive_class"] == "malignant" and d["positive_class_reason"] == "class name"
    assert d["bootstrap"]["unit"] == "patient" and d["n"]["test"] == {"images": 160, "patients": 80}
    test = pred[pred["split"] == "test"]
    ref = headline_metrics(y_true_index(test), proba_of(test), positive_index=1)
    for m, v in ref.items():
        h = d["headline"][m]
        assert h["estimate"] == pytest.approx(v)
        assert h["ci_lo"] <= h["estimate"] <= h["ci_hi"] and h["n_boot_used"] + h["n_boot_skipped"] == 100
    assert [r["class"] for r in d["per_class"]] == ["benign", "malignant"]
    assert all(r["recall_ci_lo"] <= r["recall"] <= r["recall_ci_hi"] for r in d["per_class"])
    assert np.array(d["confusion"]["counts"]).sum() == 160
    assert {r["policy"] for r in d["operating_points"]} == {"youden", "spec>=0.90", "sens>=0.90", "cost=5",
                                                            "fixed=0.5"}
    assert {r["split"] for r in d["threshold_sweep"]} == {"val", "test"}
    assert {r["class"] for r in d["roc"]} == {"malignant"} and len(d["roc"]) == 101
    assert d["calibration"]["fitted_on"] == "val" and d["calibration"]["temperature"] > 0
    before = d["calibration"]["before"]
    assert before["brier_ci"][0] <= before["brier"] <= before["brier_ci"][1] and before["ece_ci"][0] > 0
    assert d["settings"]["threshold_rule"] == "positive when p >= threshold"
    assert {r["column"] for r in d["subgroups"]} == {"view", "density"}
    assert "source" in d["subgroups_skipped"]
    sub_ops = ev.subgroup_operating_points
    assert set(sub_ops["policy"]) == set(ev.operating_points["policy"]) and set(sub_ops["column"]) == {"view", "density"}
    frozen = dict(zip(ev.operating_points["policy"], ev.operating_points["threshold"], strict=True))
    assert all(frozen[p] == t for p, t in zip(sub_ops["policy"], sub_ops["threshold"], strict=True))
    assert d["confident_errors"] and {"view", "image", "error_type"} <= set(d["confident_errors"][0])
    assert "research use only" in d["disclaimer"].lower()
    assert not any("both 'val' and 'test'" in n for n in d["notes"])
    text = ev.methods_text()
    assert "160 images from 80 patients" in text and "100 replicates" in text and "cluster bootstrap" in text
    assert "chosen on the val split only" in text and f"T = {ev.calibration['temperature']:.3g}" in text
    leaky = pred.copy()
    leaky.loc[leaky.index[0], "patient_id"] = pred[pred["split"] == "test"]["patient_id"].iloc[0]
    notes = evaluate_predictions(leaky, n_boot=0).notes
    assert any("1 patient(s) have images in both 'val' and 'test'" in n for n in notes)


def test_thresholds_and_temperature_never_depend_on_test_rows():
    pred, manifest = _preds(seed=1)
    ref = evaluate_predictions(pred, manifest, n_boot=20, seed=0)
    rng = np.random.default_rng(7)
    perturbed = pred.copy()
    test = perturbed["split"] == "test"
    p = rng.random(int(test.sum()))
    perturbed.loc[test, "p_benign"], perturbed.loc[test, "p_malignant"] = 1 - p, p
    perturbed.loc[test, "y_true"] = rng.choice(["benign", "malignant"], int(test.sum()))
    other = evaluate_predictions(perturbed, manifest, n_boot=20, seed=0)
    assert list(other.operating_points["threshold"]) == list(ref.operating_points["threshold"])
    assert list(other.operating_points["val_sensitivity"]) == list(ref.operating_points["val_sensitivity"])
    assert other.calibration["temperature"] == ref.calibration["temperature"]
    assert list(other.operating_points["sensitivity"]) != list(ref.operating_points["sensitivity"])


def test_without_validation_rows_nothing_is_fitted_on_test():
    pred, _ = _preds(seed=2)
    ev = evaluate_predictions(pred[pred["split"] == "test"], n_boot=20)
    assert ev.operating_points.empty and ev.calibration["temperature"] is None
    assert any("thresholds are chosen on validation only" in n for n in ev.notes)
    assert set(ev.threshold_sweep["split"]) == {"test"}


def test_multiclass_uses_one_vs_rest_for_the_named_positive_class():
    pred, manifest = _preds(classes=("benign", "malignant", "normal"), per_patient=1, n_patients=240, seed=3)
    ev = evaluate_predictions(pred, manifest, n_boot=30)
    assert ev.positive_class == "malignant" and ev.bootstrap["unit"] == "image"
    assert any("every test patient has one image" in n for n in ev.notes)
    no_ids = evaluate_predictions(pred.assign(patient_id=pred["id"]), n_boot=0)
    assert any("no patient ids" in n for n in no_ids.notes) and no_ids.bootstrap["patient_ids"] is False
    assert "without patient ids" in no_ids.methods_text()
    assert len(ev.operating_points) == 5 and set(ev.roc["class"]) == {"benign", "malignant", "normal"}
    test = pred[pred["split"] == "test"]
    y = (test["y_true"] == "malignant").to_numpy()
    youden = ev.operating_points.set_index("policy").loc["youden"]
    assert youden["tp"] == int(np.sum(y & (test["p_malignant"].to_numpy() >= youden["threshold"])))
    no_pos = evaluate_predictions(pred.rename(columns={"p_malignant": "p_tumour_free"}).assign(
        y_true=lambda d: d["y_true"].replace("malignant", "tumour_free")), n_boot=10)
    assert no_pos.positive_class is None and no_pos.operating_points.empty


def test_method_selection_and_bad_input():
    a, _ = _preds(method="a")
    noise = np.random.default_rng(4).random(len(a))
    b = a.assign(method="b", p_benign=1 - noise, p_malignant=noise)  # same images and labels, other scores
    both = pd.concat([a, b])
    with pytest.raises(ValueError, match="pass method="):
        evaluate_predictions(both, n_boot=10)
    assert evaluate_predictions(both, method="b", n_boot=10).method == "b"
    with pytest.raises(ValueError, match="no rows with split == 'test'"):
        evaluate_predictions(a[a["split"] == "val"], n_boot=10)
    with pytest.raises(ValueError, match="not one of the classes"):
        evaluate_predictions(a, positive_class="cancer", n_boot=10)
    assert len(compare_methods(both, baseline_method="a", n_boot=20)) == 9  # binary: 9 headline metrics
    with pytest.raises(ValueError, match="unknown threshold policy"):
        evaluate_predictions(a, threshold_policies=("youden", "best"), n_boot=10)


def test_bca_intervals_on_request():
    pred, manifest = _preds(seed=6, n_patients=60)
    pct = evaluate_predictions(pred, manifest, n_boot=100)
    bca = evaluate_predictions(pred, manifest, n_boot=100, interval="bca")
    assert bca.bootstrap["interval"] == "bca" and "BCa bootstrap" in bca.methods_text()
    for m, v in bca.headline.items():
        assert v["estimate"] == pct.headline[m]["estimate"]
    assert any(bca.headline[m]["ci_lo"] != pct.headline[m]["ci_lo"] for m in bca.headline)
    with pytest.raises(ValueError, match="interval must be"):
        evaluate_predictions(pred, n_boot=10, interval="normal")


def test_zero_bootstrap_gives_estimates_without_intervals():
    pred, manifest = _preds(seed=5)
    ev = evaluate_predictions(pred, manifest, n_boot=0)
    d = ev.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["headline"]["roc_auc"]["estimate"] > 0.5 and d["headline"]["roc_auc"]["ci_lo"] is None
    assert ev.operating_points["sensitivity_ci_lo"].isna().all()
    assert list(ev.headline_frame()["metric"])[:2] == ["accuracy", "balanced_accuracy"]
    assert "No confidence intervals were computed" in ev.methods_text()


def test_evaluation_never_imports_torch():
    for path in EVAL_DIR.glob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "from torch" not in text, path
    code = ("import sys; import breastclip.evaluation, breastclip.evaluation.summary; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    src = str(EVAL_DIR.parents[1])
    assert subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": src}).returncode == 0
