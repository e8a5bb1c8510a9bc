"""Manifest construction, validation (one specific error per bad input) and round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from breastclip.data.manifest import Manifest, ManifestError


def _files(root: Path, names: list[str]) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"x")


def _manifest(root: Path, rows: list[dict], **kw) -> Manifest:
    return Manifest.from_records(rows, root, name="t", source="test", **kw)


def test_without_patient_ids_every_image_is_its_own_group(tmp_path):
    _files(tmp_path, ["a/1.png", "a/2.png", "b/3.png"])
    m = _manifest(tmp_path, [{"image": "a/1.png", "label": "a"}, {"image": "a/2.png", "label": "a"},
                             {"image": "b/3.png", "label": "b"}])
    m.validate()
    assert not m.patient_ids_from_source
    assert m.df["patient_id"].nunique() == 3
    assert any("every image is its own group" in n for n in m.notes)
    assert m.classes == ["a", "b"] and m.y().tolist() == [0, 0, 1]


def test_partial_patient_ids_are_kept_and_the_rest_grouped_per_image(tmp_path):
    _files(tmp_path, ["1.png", "2.png"])
    m = _manifest(tmp_path, [{"image": "1.png", "label": "a", "patient_id": "P1"},
                             {"image": "2.png", "label": "a", "patient_id": None}])
    assert m.patient_ids_from_source
    assert m.df["patient_id"].tolist() == ["P1", "img:2.png"]
    assert any("1 of 2 rows have no patient id" in n for n in m.notes)


def test_misspelled_column_gets_a_did_you_mean(tmp_path):
    with pytest.raises(ManifestError, match="no 'label' column \\(did you mean 'lable'\\?\\)"):
        _manifest(tmp_path, [{"image": "1.png", "lable": "a"}])
    m = _manifest(tmp_path, [{"image": "1.png", "label": "a"}])
    m.df = m.df.rename(columns={"patient_id": "patientid"})
    with pytest.raises(ManifestError, match="no 'patient_id' column \\(did you mean 'patientid'\\?\\)"):
        m.validate(check_files=False)


def test_unknown_labels_are_named_with_counts(tmp_path):
    m = _manifest(tmp_path, [{"image": "1.png", "label": "benign"}, {"image": "2.png", "label": "bengin"},
                             {"image": "3.png", "label": "bengin"}], classes=["benign", "malignant"])
    with pytest.raises(ManifestError, match=r"unknown labels \{'bengin': 2\}") as e:
        m.validate(check_files=False)
    assert len(e.value.problems) == 1


def test_duplicate_rows_and_conflicting_labels(tmp_path):
    rows = [{"image": "1.png", "label": "a", "id": "x1"}, {"image": "1.png", "label": "a", "id": "x2"},
            {"image": "2.png", "label": "a", "id": "x3"}, {"image": "2.png", "label": "b", "id": "x4"}]
    with pytest.raises(ManifestError) as e:
        _manifest(tmp_path, rows).validate(check_files=False)
    text = str(e.value)
    assert "2 duplicate rows (same image and label)" in text
    assert "give one image two different labels" in text and "2.png" in text


def test_duplicate_ids(tmp_path):
    rows = [{"image": "1.png", "label": "a", "id": "same"}, {"image": "2.png", "label": "a", "id": "same"}]
    with pytest.raises(ManifestError, match="1 duplicate ids"):
        _manifest(tmp_path, rows).validate(check_files=False)


def test_missing_files_listed_all_in_one_error_with_a_count(tmp_path):
    _files(tmp_path, ["ok1.png", "ok2.png"])
    rows = [{"image": "ok1.png", "label": "a"}, {"image": "ok2.png", "label": "a"}]
    rows += [{"image": f"gone/{i:03d}.png", "label": "a"} for i in range(30)]
    with pytest.raises(ManifestError) as e:
        _manifest(tmp_path, rows).validate()
    assert "30 of 32 image files missing" in str(e.value)
    assert len(e.value.missing_files) == 30
    assert all(f"gone/{i:03d}.png" in str(e.value) for i in range(30))  # every one listed
    assert len(e.value.problems) == 1


def test_paths_escaping_the_root_are_refused(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    _files(tmp_path, ["outside.png"])
    m = _manifest(root, [{"image": "../outside.png", "label": "a"}])
    with pytest.raises(ManifestError, match="1 paths escape the data root"):
        m.validate()


def test_unknown_split_empty_label_and_empty_manifest(tmp_path):
    m = _manifest(tmp_path, [{"image": "1.png", "label": "a", "split": "training"},
                             {"image": "2.png", "label": "", "split": "train"}], classes=["a"])
    with pytest.raises(ManifestError) as e:
        m.validate(check_files=False)
    text = str(e.value)
    assert "unknown split values ['training']" in text and "1 rows have an empty 'label'" in text
    empty = Manifest.from_records([{"image": "1.png", "label": "a"}], tmp_path, name="e", source="t").subset([False])
    with pytest.raises(ManifestError, match="no rows"):
        empty.validate(check_files=False)


def test_csv_round_trip_keeps_root_classes_notes_and_metadata(tmp_path):
    _files(tmp_path, ["img/1.png", "img/2.png"])
    m = _manifest(tmp_path, [{"image": "img/1.png", "label": "b", "view": "CC", "split": "train"},
                             {"image": "img/2.png", "label": "a", "view": "MLO", "split": "test"}],
                  classes=["b", "a"])
    path = m.to_csv(tmp_path / "out" / "manifest.csv")
    back = Manifest.from_csv(path).validate()
    assert back.classes == ["b", "a"] and back.root == tmp_path and back.notes == m.notes
    assert back.df.to_dict("records") == m.df.astype(str).to_dict("records")


def test_summary_counts_classes_splits_and_metadata(tmp_path):
    rows = [{"image": f"{i}.png", "label": "a" if i < 3 else "b", "split": "train" if i % 2 else "test",
             "density": str(i % 2 + 1), "age": str(40 + i)} for i in range(14)]
    s = _manifest(tmp_path, rows).summary()
    assert s["classes"] == {"a": 3, "b": 11}
    assert s["splits"] == {"test": 7, "train": 7}
    assert s["classes_per_split"]["train"] == {"a": 1, "b": 6}
    assert s["metadata"]["density"]["top"] == {"1": 7, "2": 7}
    assert s["metadata"]["age"]["min"] == 40 and s["metadata"]["age"]["max"] == 53
    assert s["patients"] == 14 and s["patient_ids_from_source"] is False


def test_mammography_columns_are_normalised_and_validated(tmp_path):
    rows = [{"image": "1.png", "label": "a", "patient_id": "P1", "view": "cc", "laterality": "LEFT", "exam_id": "E1"},
            {"image": "2.png", "label": "a", "patient_id": "P1", "view": "MLO", "laterality": "r", "exam_id": "E1"},
            {"image": "3.png", "label": "a", "patient_id": "P2", "view": "CC2", "laterality": None, "exam_id": ""}]
    m = _manifest(tmp_path, rows).validate(check_files=False)
    assert m.df["view"].tolist() == ["CC", "MLO", "CC2"]
    assert m.df["laterality"].tolist() == ["L", "R", ""] and m.df["exam_id"].tolist() == ["E1", "E1", ""]
    bad = _manifest(tmp_path, [{**rows[0], "view": "AP", "laterality": "both"},
                               {**rows[1], "patient_id": "P9"}])
    with pytest.raises(ManifestError) as e:
        bad.validate(check_files=False)
    text = str(e.value)
    assert "1 rows have an unknown view ['AP']" in text and "unknown laterality ['BOTH']" in text
    assert "1 exam_id(s) hold images of more than one patient, e.g. ['E1']" in text
