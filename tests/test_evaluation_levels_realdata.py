"""Breast- and exam-level evaluation end to end on real layouts: the NYU full-field samples (labels.csv with
patient_id / view / laterality; real 16-bit PNGs decoded and embedded) and a CBIS-DDSM-style manifest built from
the official case-description rows (several abnormalities per breast, LEFT/RIGHT spelled out)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastclip.backbones import create_backbone, embed_manifest
from breastclip.data.manifest import Manifest
from breastclip.evaluation import evaluate_predictions
from breastclip.evaluation.levels import aggregate_predictions, unit_manifest
from breastclip.heads import ZeroShotHead
from breastclip.predictions import make_predictions

pytestmark = pytest.mark.realdata
CLASSES = ["benign", "malignant", "normal"]


def _nyu_manifest(shared_data) -> Manifest:
    root = shared_data / "mammography_samples"
    table = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    nyu = table[table["path"].str.startswith(("nyu_ffdm/breast_cancer_classifier/", "nyu_ffdm/gmic/cropped_images/"))]
    rows = nyu.rename(columns={"path": "image"}).assign(split="test")
    return Manifest.from_records(rows, root, name="nyu", source="nyu", classes=CLASSES).validate()


def test_nyu_samples_breast_and_exam_level_end_to_end(shared_data, tmp_path):
    m = _nyu_manifest(shared_data)
    assert len(m) == 8 and set(m.df["laterality"]) == {"L", "R"} and set(m.df["view"]) == {"CC", "MLO"}
    model = create_backbone("tiny-test", "cpu")
    X, ids, failures = embed_manifest(m, model, cache_dir=tmp_path / "cache", progress=False, num_workers=0)
    assert not failures and len(ids) == 8
    head = ZeroShotHead(text_embeddings=model.encode_text([f"a mammogram, {c}" for c in CLASSES]),
                        classes=CLASSES).fit(X)
    df = m.df.set_index("id").loc[ids]
    pred = make_predictions(ids=ids, y_true=df["label"], proba=head.predict_proba(X), classes=CLASSES,
                            method="zeroshot", split="test", patient_id=df["patient_id"])

    breast = aggregate_predictions(pred, m.df, "breast", "max").set_index("id")
    truth = {"nyu_bcc_exam1|L": "normal", "nyu_bcc_exam1|R": "malignant", "nyu_bcc_exam2|L": "benign",
             "nyu_bcc_exam2|R": "normal", "nyu_gmic_exam0|L": "normal", "nyu_gmic_exam0|R": "benign"}
    assert breast["y_true"].to_dict() == truth
    assert breast["n_images"].to_dict() == {k: 2 if k.startswith("nyu_gmic") else 1 for k in truth}  # CC + MLO
    np.testing.assert_allclose(breast[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1.0)
    ev = evaluate_predictions(breast.reset_index(), unit_manifest(m.df, "breast"), n_boot=30, seed=0)
    assert ev.n["test"] == {"images": 6, "patients": 3} and ev.bootstrap["unit"] == "patient"

    notes: list[str] = []
    exam = aggregate_predictions(pred, m.df, "exam", "noisy_or", notes=notes).set_index("id")
    assert exam["y_true"].to_dict() == {"nyu_bcc_exam1": "malignant", "nyu_bcc_exam2": "benign",
                                        "nyu_gmic_exam0": "benign"}
    assert "no exam_id column" in notes[0]


def test_cbis_ddsm_style_manifest_breast_level(shared_data):
    """Official CBIS-DDSM rows: one row per abnormality; a breast's label is its worst abnormality's."""
    rows = pd.read_csv(shared_data / "cbis_ddsm_metadata" / "mass_case_description_train_set.csv", dtype=str)
    rows = rows[rows["patient_id"].isin(rows["patient_id"].unique()[:40])]
    table = pd.DataFrame({
        "image": rows["image file path"].str.strip(), "patient_id": rows["patient_id"],
        "laterality": rows["left or right breast"], "view": rows["image view"],
        "label": rows["pathology"].map({"MALIGNANT": "malignant", "BENIGN": "benign",
                                        "BENIGN_WITHOUT_CALLBACK": "benign_without_callback"}),
        "split": "test"}).drop_duplicates(["image", "label"])
    table["id"] = [f"cbis:{i}" for i in range(len(table))]
    m = Manifest.from_records(table, "/nonexistent", name="cbis", source="cbis_ddsm",
                              classes=["benign_without_callback", "benign", "malignant"]).validate(check_files=False)
    assert set(m.df["laterality"]) == {"L", "R"}  # LEFT / RIGHT normalised
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), len(m))
    pred = make_predictions(ids=m.df["id"], y_true=m.df["label"], proba=p, classes=m.classes, method="r",
                            split="test", patient_id=m.df["patient_id"])
    breast = aggregate_predictions(pred, m.df, "breast", "mean")
    expected = (m.df.assign(sev=m.y()).groupby(["patient_id", "laterality"])["sev"].max())
    assert len(breast) == len(expected)
    got = breast.set_index("id")["y_true"]
    for (pid, lat), sev in expected.items():
        assert got[f"{pid}|{lat}"] == m.classes[sev]
    assert (breast["n_images"] > 1).any()  # CC + MLO (and multi-abnormality rows) pooled
