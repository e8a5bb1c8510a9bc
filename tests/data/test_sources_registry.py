"""The reader registry: auto-detection on every real layout, clear errors when nothing fits."""

from __future__ import annotations

import pytest

from breastclip.data.sources import FORMATS, SourceError, detect_format, list_formats, read_source


@pytest.mark.realdata
@pytest.mark.parametrize(("rel", "expected"), [
    ("busi/Dataset_BUSI_with_GT", "folders"),
    ("busi", "csv"),
    ("medical_vs_nonmedical", "csv"),
    ("breastmnist", "medmnist"),
    ("breastmnist/original/breastmnist.npz", "medmnist"),
    ("breakhis_samples", "breakhis"),
    ("breakhis_samples/images/SOB_M_DC-14-2523-40-010.png", "breakhis"),
    ("cbis_ddsm_metadata", "cbis_ddsm"),
    ("cbis_ddsm_metadata/mass_case_description_test_set.csv", "cbis_ddsm"),
])
def test_detects_every_real_layout(shared_data, rel, expected):
    assert detect_format(shared_data / rel) == expected


def test_registry_lists_one_reader_per_layout():
    assert list_formats() == ["cbis_ddsm", "medmnist", "breakhis", "csv", "folders"]
    for fmt in FORMATS.values():
        assert callable(fmt.read) and fmt.read.__doc__


def test_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        detect_format(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="cannot tell the layout.*known formats: cbis_ddsm: .*folders: "):
        read_source(tmp_path)
    with pytest.raises(SourceError, match="unknown format 'dicomdir'; known formats: cbis_ddsm"):
        read_source(tmp_path, format="dicomdir")
    with pytest.raises(SourceError, match="does not exist"):
        read_source(tmp_path / "missing", format="folders")


@pytest.mark.realdata
def test_format_names_are_case_and_dash_tolerant(shared_data):
    m = read_source(shared_data / "cbis_ddsm_metadata", format="CBIS-DDSM", abnormality="calc", subsets="test")
    assert set(m.df["lesion_type"]) == {"calc"} and set(m.df["split"]) == {"test"}


@pytest.mark.realdata
def test_flat_dicom_folder_gets_a_hint(shared_data):
    with pytest.raises(SourceError, match="holds 6 image files but no class folders.*label_from=dicom:Modality"):
        detect_format(shared_data / "medical_vs_nonmedical" / "original_dicom")
