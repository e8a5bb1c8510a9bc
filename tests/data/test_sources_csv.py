"""Generic CSV reader: real labels.csv files, column mapping, and bad tables."""

from __future__ import annotations

import pytest

from breastclip.data.sources import SourceError, read_source
from breastclip.data.sources.csv_table import read_csv_table


@pytest.mark.realdata
def test_busi_labels_csv_real(shared_data):
    m = read_source(shared_data / "busi").validate()
    assert m.class_counts() == {"benign": 437, "malignant": 210, "normal": 133}
    assert {"label_binary", "source_caption"} <= set(m.metadata_columns)
    assert m.df["image"].str.startswith("Dataset_BUSI_with_GT/").all()


@pytest.mark.realdata
def test_medical_vs_nonmedical_csv_keeps_its_source_column_as_metadata(shared_data):
    m = read_source(shared_data / "medical_vs_nonmedical" / "labels.csv").validate()
    assert m.class_counts() == {"medical": 24, "non_medical": 37}
    assert m.df["source"].eq("csv").all() and "meta_source" in m.df.columns
    assert set(m.df["modality"]) >= {"chest_xray", "ultrasound"}


@pytest.mark.realdata
def test_breastmnist_png_export_csv_with_split_and_label_map(shared_data):
    m = read_csv_table(shared_data / "breastmnist" / "labels.csv",
                       label_map={"normal_or_benign": "benign"}).validate()
    assert m.class_counts() == {"benign": 570, "malignant": 210}
    assert m.df["split"].value_counts().to_dict() == {"train": 546, "test": 156, "val": 78}


def _table(tmp_path, text: str, files=("a.png", "b.png", "c.png")):
    for f in files:
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "img" / f).write_bytes(b"x")
    path = tmp_path / "meta" / "table.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_column_mapping_root_and_metadata_selection(tmp_path):
    path = _table(tmp_path, "file,dx,subject,fold,age,site\n"
                            "a.png,cancer,S1,Train,50,x\nb.png,healthy,S1,test,60,y\nc.png,healthy,S2,VALID,70,x\n")
    m = read_csv_table(path, image_col="file", label_col="dx", patient_col="subject", split_col="fold",
                       metadata_cols=["age"], root=tmp_path / "img", classes=["healthy", "cancer"]).validate()
    assert m.classes == ["healthy", "cancer"] and m.patient_ids_from_source
    assert m.df["split"].tolist() == ["train", "test", "val"]
    assert m.metadata_columns == ["age"] and m.df["patient_id"].tolist() == ["S1", "S1", "S2"]


def test_paths_are_relative_to_the_csv(tmp_path):
    path = _table(tmp_path, "image,label\n../img/a.png,x\n../img/b.png,y\n")
    m = read_csv_table(path)
    assert m.root == path.parent
    with pytest.raises(Exception, match="escape the data root"):
        m.validate()  # ../ leaves the CSV folder: pass root= to allow it
    ok = read_csv_table(path.parent.parent / "meta" / "table.csv", root=tmp_path)
    ok.df["image"] = ok.df["image"].str.replace("../", "", regex=False)
    ok.validate()


def test_misspelled_or_missing_columns_and_bad_values(tmp_path):
    path = _table(tmp_path, "path,label,split\na.png,x,train\nb.png,,test\n")
    with pytest.raises(SourceError, match=r"no label column 'labels' \(did you mean 'label'\?\)"):
        read_csv_table(path, label_col="labels")
    with pytest.raises(SourceError, match="1 rows have an empty label"):
        read_csv_table(path)
    bad_split = _table(tmp_path, "path,label,split\na.png,x,holdout\n")
    with pytest.raises(SourceError, match=r"values \['holdout'\]"):
        read_csv_table(bad_split)
    no_image = _table(tmp_path, "name,label\na.png,x\n")
    with pytest.raises(SourceError, match="cannot find the image column"):
        read_csv_table(no_image)
    with pytest.raises(SourceError, match="no CSV file found"):
        read_csv_table(tmp_path / "img")


# ---- encodings and delimiters (Excel's "CSV UTF-8" has a byte-order mark; European Excel writes ';') ----------
@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
@pytest.mark.parametrize("bom", [True, False])
def test_bom_and_common_delimiters_are_read(tmp_path, sep, bom):
    import numpy as np
    from PIL import Image

    from breastclip.data.sources import detect_format

    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    rows = [["image", "label", "patient_id"], ["a.png", "benign", "p1"], ["b.png", "malignant", "p2"]]
    text = "".join(sep.join(r) + "\r\n" for r in rows)
    (tmp_path / "labels.csv").write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    assert detect_format(tmp_path) == "csv"
    m = read_source(tmp_path / "labels.csv")
    assert list(m.df["image"]) == ["a.png", "b.png"] and list(m.df["label"]) == ["benign", "malignant"]
    assert list(m.df["patient_id"]) == ["p1", "p2"]
    m.validate(check_files=True)


def test_a_non_utf8_csv_is_a_clear_error(tmp_path):
    (tmp_path / "labels.csv").write_bytes("image,label\nl\xe9sion.png,benign\n".encode("cp1252"))
    with pytest.raises(SourceError, match=r"labels\.csv: not UTF-8.*CSV UTF-8"):
        read_source(tmp_path / "labels.csv", format="csv")


def test_mammography_columns_mapped_and_filled_from_dicom(tmp_path):
    """view / laterality / exam_id from CBIS-style spellings (or named), and from DICOM headers where blank."""
    import numpy as np
    from PIL import Image
    from test_dicom import write_dicom

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    write_dicom(tmp_path / "b.dcm", np.zeros((8, 8), np.uint16), ImageLaterality="R", ViewPosition="MLO",
                StudyInstanceUID="1.2.3", PatientID="P2")
    (tmp_path / "labels.csv").write_text("image,label,patient_id,image view,left or right breast,study\n"
                                         "a.png,benign,P1,CC,LEFT,e1\nb.dcm,malignant,P2,,,\n")
    m = read_csv_table(tmp_path).validate()
    df = m.df.set_index("image")
    assert df.loc["a.png", ["view", "laterality", "exam_id"]].tolist() == ["CC", "L", "e1"]
    assert df.loc["b.dcm", ["view", "laterality", "exam_id"]].tolist() == ["MLO", "R", "1.2.3"]
    assert any("read from DICOM headers" in n for n in m.notes)
    (tmp_path / "other.csv").write_text("file,class,pos,breast\na.png,benign,CC,RIGHT\n")
    named = read_csv_table(tmp_path / "other.csv", view_col="pos", laterality_col="breast").validate()
    assert named.df[["view", "laterality"]].iloc[0].tolist() == ["CC", "R"]
    with pytest.raises(SourceError, match="no view column 'views'"):
        read_csv_table(tmp_path / "other.csv", view_col="views")
