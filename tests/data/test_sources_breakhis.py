"""BreakHis reader: real file names, the official tree layout, labels, magnification filter, bad names."""

from __future__ import annotations

import shutil

import pytest

from breastclip.data.sources import SourceError, detect_format, read_source
from breastclip.data.sources.breakhis import parse_name, read_breakhis


def test_parse_name():
    info = parse_name("SOB_M_DC-14-2523-40-010.png")
    assert info == {"class": "malignant", "class_letter": "M", "subtype": "ductal_carcinoma", "subtype_code": "DC",
                    "patient_id": "DC-14-2523", "magnification": 40, "seq": 10, "procedure": "SOB"}
    assert parse_name("SOB_B_XX-14-2523-40-010.png") is None
    assert parse_name("benign (1).png") is None


@pytest.mark.realdata
def test_real_breakhis_samples(shared_data):
    src = shared_data / "breakhis_samples"
    assert detect_format(src) == "breakhis"
    m = read_source(src).validate()
    assert m.class_counts() == {"benign": 8, "malignant": 4}
    assert m.patient_ids_from_source
    pid = m.df.set_index("image")["patient_id"]
    assert pid["images/SOB_B_F-14-25197-400-033.png"] == "F-14-25197"
    assert (m.df["patient_id"] == "F-14-25197").sum() == 4  # one patient, four magnifications
    sub = read_source(src, labels="subtype").validate()
    assert len(sub.classes) == 8 and all(n >= 1 for n in sub.class_counts().values())
    x40 = read_breakhis(src, magnification="40X")
    assert len(x40) == 9 and set(x40.df["magnification"]) == {"40X"}
    two = read_breakhis(src, magnification=[100, 400])
    assert sorted(two.df["magnification"]) == ["100X", "400X"]


@pytest.mark.realdata
def test_official_tree_layout(shared_data, tmp_path):
    base = tmp_path / "BreaKHis_v1" / "histology_slides" / "breast"
    for f in sorted((shared_data / "breakhis_samples" / "images").glob("*.png")):
        info = parse_name(f.name)
        d = (base / info["class"] / "SOB" / info["subtype"] / f"SOB_{info['class_letter']}_{info['patient_id']}"
             / f"{info['magnification']}X")
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / f.name)
    m = read_source(tmp_path / "BreaKHis_v1").validate()
    assert m.class_counts() == {"benign": 8, "malignant": 4}
    assert m.df["image"].str.startswith("histology_slides/breast/").all()
    # a file in the wrong class folder is caught
    wrong = base / "benign" / "SOB" / "x"
    wrong.mkdir(parents=True)
    shutil.copy(shared_data / "breakhis_samples" / "images" / "SOB_M_DC-14-2523-40-010.png", wrong / "SOB_M_DC-14-2523-40-011.png")
    with pytest.raises(SourceError, match="in folder \\['benign'\\] but named malignant"):
        read_source(tmp_path / "BreaKHis_v1", format="breakhis")


def test_bad_inputs(tmp_path):
    (tmp_path / "SOB_B_DC-14-2523-40-001.png").write_bytes(b"x")  # benign letter, malignant subtype
    with pytest.raises(SourceError, match="letter B but subtype ductal_carcinoma is malignant"):
        read_breakhis(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "slide.png").write_bytes(b"x")
    with pytest.raises(SourceError, match="no BreakHis image files.*1 other files"):
        read_breakhis(other)
    with pytest.raises(ValueError, match="magnification '50X'"):
        read_breakhis(other, magnification="50X")
    with pytest.raises(ValueError, match="labels must be"):
        read_breakhis(other, labels="eight")
