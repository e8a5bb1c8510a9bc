"""The synthetic lesion set: deterministic bytes, a valid manifest, learnable by shape but not by brightness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from breastclip.data.images import load_image, load_images
from breastclip.data.synthetic import SYNTHETIC_CLASSES, make_synthetic


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_same_bytes(tmp_path):
    make_synthetic(tmp_path / "a", n_patients=6, images_per_patient=2, size=32, seed=3, masks=True)
    make_synthetic(tmp_path / "b", n_patients=6, images_per_patient=2, size=32, seed=3, masks=True)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and len(a) == 6 * 2 * 2 + 1


def test_other_seed_other_images(tmp_path):
    m1 = make_synthetic(tmp_path / "a", n_patients=6, size=32, seed=0)
    m2 = make_synthetic(tmp_path / "b", n_patients=6, size=32, seed=1)
    assert all(not np.array_equal(load_image(p), load_image(q)) for p, q in zip(m1.paths(), m2.paths(), strict=True))


def test_manifest_is_valid_and_balanced(tmp_path):
    m = make_synthetic(tmp_path, n_patients=9, images_per_patient=3, size=48, seed=0)
    m.validate(check_files=True)
    assert m.patient_ids_from_source and m.classes == list(SYNTHETIC_CLASSES)
    assert len(m) == 27 and m.df["patient_id"].nunique() == 9
    per_patient = m.df.groupby("patient_id")["label"].first().value_counts()
    assert per_patient["benign"] == 5 and per_patient["malignant"] == 4
    assert (m.df["split"] == "").all() and (m.df["source"] == "synthetic").all()
    for col in ("side", "view", "density", "age", "lesion_x", "lesion_y", "lesion_radius"):
        assert col in m.metadata_columns
    assert m.df.groupby("patient_id")[["side", "density", "age", "label"]].nunique().max().max() == 1
    assert m.df.groupby("patient_id")["view"].apply(list).iloc[0] == ["CC", "MLO", "CC2"]
    assert set(m.df["density"]) <= {"A", "B", "C", "D"}
    img = load_image(m.paths()[0])
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    # the CSV beside the images describes the same rows
    table = pd.read_csv(tmp_path / "labels.csv")
    assert table["image"].tolist() == m.df["image"].tolist()
    assert all(m.df["image"].str.startswith(tuple(f"{c}/" for c in SYNTHETIC_CLASSES)))


def test_masks_mark_the_lesion(tmp_path):
    m = make_synthetic(tmp_path, n_patients=4, images_per_patient=1, size=64, seed=2, masks=True)
    for _, row in m.df.iterrows():
        mask = np.asarray(Image.open(tmp_path / row["image"].replace(".png", "_mask.png")))
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
        ys, xs = np.nonzero(mask)
        assert abs(xs.mean() - row["lesion_x"]) < row["lesion_radius"]
        assert abs(ys.mean() - row["lesion_y"]) < row["lesion_radius"]
        img = np.asarray(Image.open(tmp_path / row["image"])).astype(float)
        assert img[mask > 0].mean() > img[mask == 0].mean() + 20  # the mass is brighter than its surroundings


def test_never_overwrites_a_different_file_and_resumes(tmp_path):
    m = make_synthetic(tmp_path, n_patients=4, size=32, seed=0)
    first = m.paths()[0]
    original = first.read_bytes()
    first.write_bytes(b"user's own file")
    with pytest.raises(FileExistsError, match="exists with different content"):
        make_synthetic(tmp_path, n_patients=4, size=32, seed=0)
    assert first.read_bytes() == b"user's own file"
    make_synthetic(tmp_path, n_patients=4, size=32, seed=0, overwrite=True)
    assert first.read_bytes() == original
    m.paths()[1].unlink()  # an interrupted run: the rerun completes it with identical bytes
    before = _files(tmp_path)
    make_synthetic(tmp_path, n_patients=4, size=32, seed=0)
    assert len(_files(tmp_path)) == len(before) + 1


def test_three_classes_with_normal(tmp_path):
    m = make_synthetic(tmp_path, n_patients=7, images_per_patient=1, size=32, seed=0, masks=True,
                       classes=("normal", "benign", "malignant"))
    m.validate()
    assert m.classes == ["normal", "benign", "malignant"]
    assert m.df["label"].value_counts().to_dict() == {"normal": 3, "benign": 2, "malignant": 2}
    normal = m.df[m.df["label"] == "normal"]
    assert normal["lesion_radius"].isna().all() and m.df.loc[m.df["label"] != "normal", "lesion_radius"].notna().all()
    for image in normal["image"]:
        assert not np.asarray(Image.open(tmp_path / image.replace(".png", "_mask.png"))).any()


@pytest.mark.parametrize("kwargs", [{"n_patients": 0}, {"images_per_patient": 0}, {"size": 8},
                                    {"classes": ("benign",)}, {"classes": ("benign", "cyst")},
                                    {"classes": ("benign", "benign")}, {"difficulty": 1.5}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_synthetic(tmp_path, **kwargs)


def test_classes_separable_by_shape_not_by_brightness(tmp_path):
    """A patient-grouped CV on margin (gradient) statistics separates the classes; brightness alone does not."""
    m = make_synthetic(tmp_path, n_patients=40, images_per_patient=2, size=64, seed=0)
    arrays, failures = load_images(m.paths())
    assert not failures
    X = np.stack([a[..., 0] for a in arrays]).astype(float) / 255
    y, groups = m.y().to_numpy(), m.df["patient_id"].to_numpy()
    for stat in (X.mean((1, 2)), X.max((1, 2))):
        auc = roc_auc_score(y, stat)
        assert 0.25 < auc < 0.75, auc
    grad = np.stack([np.hypot(ndimage.sobel(x, 0), ndimage.sobel(x, 1)) for x in X])
    hist = np.stack([np.histogram(g, bins=16, range=(0, 4))[0] for g in grad])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    acc = cross_val_score(clf, hist, y, cv=GroupKFold(4), groups=groups).mean()
    assert acc > 0.85, acc
    raw = cross_val_score(clf, X.reshape(len(X), -1), y, cv=GroupKFold(4), groups=groups).mean()
    assert raw < acc - 0.15  # position varies: a linear model on raw pixels cannot read the margin


def test_difficulty_fades_the_malignant_cues(tmp_path):
    """Same seed: difficulty 0 and 1 draw the same patients; at 1 the malignant lesions lose their spicules."""
    def margin_energy(m):
        arrays, _ = load_images(m.paths())
        X = np.stack([a[..., 0] for a in arrays]).astype(float) / 255
        grad = np.stack([np.hypot(ndimage.sobel(x, 0), ndimage.sobel(x, 1)) for x in X])
        strongest = np.percentile(grad.reshape(len(grad), -1), 98, axis=1)  # the spicule / sharp-margin edges
        return roc_auc_score(m.y().to_numpy(), strongest)

    easy = make_synthetic(tmp_path / "easy", n_patients=30, images_per_patient=1, size=64, seed=0)
    hard = make_synthetic(tmp_path / "hard", n_patients=30, images_per_patient=1, size=64, seed=0, difficulty=1.0)
    assert easy.df["label"].tolist() == hard.df["label"].tolist()
    assert margin_energy(easy) > 0.9
    assert abs(margin_energy(hard) - 0.5) < 0.25
