"""The evaluation layer on a real predictions table: a pixel logistic regression on BreastMNIST's official splits."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from breastclip.evaluation import evaluate_predictions
from breastclip.predictions import make_predictions

pytestmark = pytest.mark.realdata


def test_breastmnist_pixel_baseline_end_to_end(shared_data):
    npz = np.load(shared_data / "breastmnist" / "original" / "breastmnist.npz")
    classes = ["malignant", "normal_or_benign"]  # MedMNIST label ids 0 / 1
    x = {s: npz[f"{s}_images"].reshape(len(npz[f"{s}_images"]), -1) / 255.0 for s in ("train", "val", "test")}
    y = {s: npz[f"{s}_labels"].ravel().astype(int) for s in ("train", "val", "test")}
    model = LogisticRegression(C=0.01, max_iter=2000).fit(x["train"], y["train"])
    frames = []
    for s in ("val", "test"):
        ids = [f"breastmnist:{s}_{i}" for i in range(len(y[s]))]
        frames.append(make_predictions(ids=ids, y_true=[classes[v] for v in y[s]], proba=model.predict_proba(x[s]),
                                       classes=classes, method="pixel_logreg", split=s))
    import pandas as pd

    pred = pd.concat(frames, ignore_index=True)
    ev = evaluate_predictions(pred, n_boot=200, seed=0)
    assert ev.positive_class == "malignant" and ev.positive_class_reason == "class name"
    assert ev.n == {"val": {"images": 78, "patients": 78}, "test": {"images": 156, "patients": 156}}
    auc = ev.headline["roc_auc"]
    # malignant is column 0: the AUC must be that of p_malignant, not of the other column
    ref = roc_auc_score(y["test"] == 0, model.predict_proba(x["test"])[:, 0])
    assert auc["estimate"] == pytest.approx(ref) and 0.6 < ref < 0.95
    assert auc["ci_lo"] < ref < auc["ci_hi"] and auc["ci_hi"] - auc["ci_lo"] < 0.25
    ops = ev.operating_points.set_index("policy")
    assert ops.loc["spec>=0.90", "val_specificity"] >= 0.9
    assert ops.loc["sens>=0.90", "val_sensitivity"] >= 0.9
    assert ops.loc["youden", "tp"] + ops.loc["youden", "fn"] == 42  # 42 malignant test images
    assert ev.calibration["temperature"] > 0 and ev.calibration["after"]["nll"] > 0
    json.dumps(ev.to_dict(), allow_nan=False)
