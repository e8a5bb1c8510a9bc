"""Class-folder reader on the real BUSI tree, the real DICOM files, and on bad or unusual trees."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from breastclip.data.sources import SourceError, read_source
from breastclip.data.sources.folders import read_folders


def _png(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


@pytest.mark.realdata
def test_busi_class_folders_real(shared_data):
    m = read_source(shared_data / "busi" / "Dataset_BUSI_with_GT").validate()
    assert m.class_counts() == {"benign": 437, "malignant": 210, "normal": 133}
    assert m.df["source"].eq("folders").all() and not m.patient_ids_from_source
    assert m.df["image"].str.startswith(("benign/", "malignant/", "normal/")).all()
    assert "all_captions.csv" not in " ".join(m.df["image"])


def test_busi_masks_are_excluded_and_attached_to_their_image(tmp_path):
    for name in ("benign (1).png", "benign (1)_mask.png", "benign (1)_mask_1.png", "benign (2).png"):
        _png(tmp_path / "benign" / name)
    _png(tmp_path / "malignant" / "malignant (1).png")
    _png(tmp_path / "malignant" / "malignant (1)_mask.png")
    (tmp_path / "malignant" / "notes.txt").write_text("not an image")
    (tmp_path / "malignant" / ".DS_Store").write_bytes(b"")
    m = read_folders(tmp_path).validate()
    assert m.class_counts() == {"benign": 2, "malignant": 1}
    masks = dict(zip(m.df["image"], m.df["mask"], strict=True))
    assert masks["benign/benign (1).png"] == "benign/benign (1)_mask.png;benign/benign (1)_mask_1.png"
    assert masks["benign/benign (2).png"] == ""
    assert masks["malignant/malignant (1).png"] == "malignant/malignant (1)_mask.png"
    assert any("3 segmentation mask files" in n for n in m.notes)
    assert any("1 non-image files ignored" in n for n in m.notes)
    kept = read_folders(tmp_path, exclude_masks=False)
    assert len(kept) == 6


def test_split_folders_become_the_official_split_and_class_map_merges(tmp_path):
    for split in ("train", "valid", "test"):
        for cls in ("benign", "malignant", "normal"):
            _png(tmp_path / split / cls / "a.jpg")
    m = read_folders(tmp_path, class_map={"normal": "benign"}).validate()
    assert sorted(m.df["split"].unique()) == ["test", "train", "val"]
    assert m.class_counts() == {"benign": 6, "malignant": 3}
    only = read_folders(tmp_path, classes=["malignant", "benign"])
    assert only.classes == ["malignant", "benign"] and len(only) == 6
    with pytest.raises(SourceError, match=r"classes \['cancer'\] not found"):
        read_folders(tmp_path, classes=["cancer"])


def test_empty_or_flat_trees_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="no class subfolders"):
        read_folders(tmp_path)
    (tmp_path / "benign").mkdir()
    (tmp_path / "benign" / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match="no image files"):
        read_folders(tmp_path)
    with pytest.raises(SourceError, match="is not a directory"):
        read_folders(tmp_path / "nope")


@pytest.mark.realdata
def test_real_dicom_files_labelled_by_modality(shared_data):
    src = shared_data / "medical_vs_nonmedical" / "original_dicom"
    m = read_source(src, format="folders", label_from="dicom:Modality").validate()
    assert m.class_counts() == {"CT": 2, "MR": 3, "US": 1}
    row = m.df.set_index("image").loc["MR_Explicit_Little_MultiFrame.dcm"]
    assert row["frames"] == "16" and row["photometric"] == "MONOCHROME2"
    assert m.df.set_index("image").loc["US_Explicit_Big_RGB.dcm", "photometric"] == "RGB"
    # patient ids come from the header where it has one (CT_small: 1CT1), per image otherwise
    assert m.df.set_index("image").loc["CT_small.dcm", "patient_id"] == "1CT1"
    assert any("4 of 6 rows have no patient id" in n for n in m.notes)


@pytest.mark.realdata
def test_real_dicom_files_in_class_folders(shared_data, tmp_path):
    src = shared_data / "medical_vs_nonmedical" / "original_dicom"
    for f in sorted(src.glob("*.dcm")):
        cls = "radiology" if f.name.startswith(("CT", "MR")) else "ultrasound"
        (tmp_path / cls).mkdir(exist_ok=True)
        os.symlink(f, tmp_path / cls / f.name)
    m = read_source(tmp_path).validate()
    assert m.class_counts() == {"radiology": 5, "ultrasound": 1}
    assert set(m.df["modality"]) == {"CT", "MR", "US"}


def test_label_from_dicom_rejects_files_without_the_field(tmp_path):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    with pytest.raises(SourceError, match=r"without Modality \['x.dcm'\]"):
        read_folders(tmp_path, label_from="dicom:Modality")
    with pytest.raises(ValueError, match="label_from must be"):
        read_folders(tmp_path, label_from="header")


def test_patient_ids_from_subfolders_or_a_pattern(tmp_path):
    for cls, pid, n in (("benign", "P01", 2), ("malignant", "P02", 2), ("malignant", "P03", 1)):
        for i in range(n):
            _png(tmp_path / "tree" / cls / pid / f"{pid}_slice{i}.png")
    m = read_folders(tmp_path / "tree", patient_from="subfolder").validate()
    assert m.patient_ids_from_source and sorted(m.df["patient_id"].unique()) == ["P01", "P02", "P03"]
    by_name = read_folders(tmp_path / "tree", patient_from=r"(P\d+)_slice")
    assert by_name.df["patient_id"].tolist() == m.df["patient_id"].tolist()
    _png(tmp_path / "tree" / "benign" / "loose.png")
    with pytest.raises(SourceError, match=r"1 images .* give no patient id .*benign/loose.png"):
        read_folders(tmp_path / "tree", patient_from="subfolder")
    with pytest.raises(ValueError, match="not a regular expression"):
        read_folders(tmp_path / "tree", patient_from="(P")


def test_dicom_files_fill_view_laterality_and_exam(tmp_path):
    import numpy as np
    from test_dicom import write_dicom

    from breastclip.data.sources.folders import read_folders

    for label, lat, view in (("benign", "L", "CC"), ("malignant", "R", "MLO")):
        (tmp_path / label).mkdir()
        write_dicom(tmp_path / label / "x.dcm", np.zeros((8, 8), np.uint16), ImageLaterality=lat, ViewPosition=view,
                    StudyInstanceUID=f"1.{lat}", PatientID=f"P{lat}")
    df = read_folders(tmp_path).validate().df.set_index("label")
    assert df.loc["benign", ["laterality", "view", "exam_id", "patient_id"]].tolist() == ["L", "CC", "1.L", "PL"]
    assert df.loc["malignant", ["laterality", "view"]].tolist() == ["R", "MLO"]


@pytest.mark.parametrize("name, expected", [
    ("1_L_CC.png", ("L", "CC")), ("0_R-MLO.png", ("R", "MLO")), ("L-CC.png", ("L", "CC")),
    ("Calc-Test_P_00038_LEFT_CC.dcm", ("L", "CC")), ("22678622_61b13c5_MG_R_CC_ANON.dcm", ("R", "CC")),
    ("RMLO.png", ("R", "MLO")), ("CC_L.png", ("L", "CC")), ("0_R-MLO_benign.png", ("R", "MLO")),
    ("benign (1).png", None), ("CALC.png", None), ("LCCX.png", None), ("mass_left.png", None),
    ("L_CC_R_MLO.png", None),  # two breasts named: ambiguous, left blank
])
def test_view_from_name(name, expected):
    from breastclip.data.sources._files import view_from_name

    got = view_from_name(name)
    assert (got["laterality"], got["view"]) == expected if expected else got == {}


def test_folder_reader_takes_side_and_view_from_names(tmp_path):
    for cls, names in {"malignant": ["1_R_CC.png", "1_R_MLO.png"], "normal": ["1_L_CC.png", "scan.png"]}.items():
        (tmp_path / cls).mkdir()
        for n in names:
            Image.new("L", (8, 8)).save(tmp_path / cls / n)
    df = read_folders(tmp_path).df.set_index("image")
    assert df.loc["malignant/1_R_MLO.png", ["laterality", "view"]].tolist() == ["R", "MLO"]
    assert df.loc["normal/1_L_CC.png", ["laterality", "view"]].tolist() == ["L", "CC"]
    assert df.loc["normal/scan.png", ["laterality", "view"]].tolist() == ["", ""]  # unknown, not guessed
    assert "laterality" not in read_folders(tmp_path, views_from_names=False).df.columns


@pytest.mark.realdata
def test_nyu_names_give_side_and_view(shared_data):
    """The real NYU full-field samples (``1_L_CC.png``, ``0_R-MLO.png``, ``L-CC.png``) read with side and view, as
    breast-level evaluation needs, and agree with the samples' own labels.csv."""
    root = shared_data / "mammography_samples"
    df = read_folders(root / "nyu_ffdm").df
    truth = pd.read_csv(root / "labels.csv").set_index("path")
    for _, r in df.iterrows():
        t = truth.loc[f"nyu_ffdm/{r['image']}"] if f"nyu_ffdm/{r['image']}" in truth.index else None
        if t is not None:
            assert (r["laterality"], r["view"]) == (t["laterality"], t["view"]), r["image"]
    assert (df["view"] != "").sum() >= 12
