"""CBIS-DDSM reader on the real case-description CSVs, with image files written here in the TCIA DICOM layouts
(classic UID folders, descriptive NBIA folders) and the Kaggle JPEG layout; metadata normalisation; bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from breastclip.data.sources import SourceError, detect_format, read_source
from breastclip.data.sources._cbis_paths import clean_csv_path
from breastclip.data.sources.cbis_ddsm import read_cbis_ddsm

pytestmark = pytest.mark.realdata
CSVS = ("mass_case_description_train_set.csv", "mass_case_description_test_set.csv",
        "calc_case_description_train_set.csv", "calc_case_description_test_set.csv")
FULL, CROP = (64, 48), (16, 16)  # mask = full size, as in CBIS-DDSM


def _write_dcm(path: Path, shape: tuple[int, int], desc: str = "", series_uid: str | None = None) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesDescription = "MG", desc
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.zeros(shape, np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def csv_dir(shared_data, tmp_path) -> Path:
    d = tmp_path / "csvs"
    d.mkdir()
    for name in CSVS:
        shutil.copy(shared_data / "cbis_ddsm_metadata" / name, d / name)
    return d


def _chosen(csv_dir: Path) -> pd.DataFrame:
    """A handful of real rows: two patients' mass images, one mammogram with a malignant and a benign abnormality,
    two calc rows."""
    mass = pd.read_csv(csv_dir / CSVS[0], dtype=str)
    mixed = mass.groupby("image file path")["pathology"].agg(lambda p: {"MALIGNANT", "BENIGN"} <= set(p))
    dup_path = mixed[mixed].index[0]
    calc = pd.read_csv(csv_dir / CSVS[3], dtype=str)
    return pd.concat([mass.head(4), mass[mass["image file path"] == dup_path], calc.head(2)], ignore_index=True)


def _parts(p: str) -> list[str]:
    return clean_csv_path(p).split("/")


def _classic_tree(root: Path, rows: pd.DataFrame, swap_first: bool = False, move_study: bool = False) -> None:
    """TCIA 'classic' folders: CBIS-DDSM/<case>/<study uid>/<series uid>/00000N.dcm, as the CSVs name them."""
    for i, r in rows.iterrows():
        paths = {k: _parts(r[c]) for k, c in (("full", "image file path"), ("crop", "cropped image file path"),
                                               ("mask", "ROI mask file path"))}
        if move_study:  # the study folder on disk differs from the CSV's
            paths = {k: [p[0], "1.2.3.999" + str(i), *p[2:]] for k, p in paths.items()}
        shapes = {"full": FULL, "crop": CROP, "mask": FULL}
        if swap_first and i == 0:
            shapes["crop"], shapes["mask"] = FULL, CROP
        for k, p in paths.items():
            _write_dcm(root / "CBIS-DDSM" / Path(*p), shapes[k])


def _header(path: Path):
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True)


def test_detects_the_metadata_folder_and_normalises_metadata(shared_data):
    src = shared_data / "cbis_ddsm_metadata"
    assert detect_format(src) == "cbis_ddsm"
    m = read_source(src, image_type="crop", labels="three_class").validate(check_files=False)
    assert len(m) == 3568  # one row per abnormality
    assert m.class_counts() == {"benign_without_callback": 682, "benign": 1429, "malignant": 1457}
    df = m.df
    # 'breast_density' (mass files) and 'breast density' (calc files) end in one column, nothing missing
    assert df["breast_density"].ne("").all() and set(df["breast_density"]) == {"1", "2", "3", "4"}
    assert set(df["side"]) == {"LEFT", "RIGHT"} and set(df["view"]) == {"CC", "MLO"}
    mass, calc = df[df["lesion_type"] == "mass"], df[df["lesion_type"] == "calc"]
    assert mass["mass_shape"].ne("").all() and mass["mass_margins"].ne("").all()  # filled with the mode
    assert calc["calc_distribution"].ne("").all() and (calc["mass_shape"] == "").all()  # not applicable stays empty
    assert any("calc.calc_distribution 439" in n for n in m.notes)
    assert any("31 patients appear in both the official train and test sets" in n for n in m.notes)
    assert set(df["split"]) == {"train", "test"} and df["patient_id"].str.match(r"^P_\d{5}$").all()
    assert df.groupby("patient_id").size().max() > 1  # one patient, several images
    assert set(df["birads"]) <= {"0", "1", "2", "3", "4", "5"} and set(df["subtlety"]) <= set("012345")


def test_full_mammograms_one_row_per_image_and_one_hot(shared_data):
    m = read_source(shared_data / "cbis_ddsm_metadata", one_hot=True, abnormality="mass",
                    subsets="train").validate(check_files=False)
    assert len(m) == 1318 - 87  # duplicated full-image paths merged
    assert m.classes == ["benign", "malignant"]
    assert m.df["n_abnormalities"].astype(int).max() > 1
    assert {"view_cc", "view_mlo", "side_left", "mass_margins_spiculated"} <= set(m.df.columns)
    assert (m.df["view_cc"].astype(int) + m.df["view_mlo"].astype(int) == 1).all()


def test_tcia_classic_dicom_tree(csv_dir, tmp_path):
    rows = _chosen(csv_dir)
    root = tmp_path / "tcia"
    shutil.copytree(csv_dir, root)
    _classic_tree(root, rows, swap_first=True)
    full = read_cbis_ddsm(root).validate()
    n_full = rows["image file path"].map(clean_csv_path).nunique()
    assert len(full) == n_full
    assert any(f"of {3568} rows skipped" in n for n in full.notes)  # every other row reported, not a crash
    assert all(_header(p).Rows == FULL[0] for p in full.paths())
    merged = full.df[full.df["n_abnormalities"].astype(int) > 1]
    assert len(merged) == 1 and merged["label"].iloc[0] == "malignant"  # the most severe pathology wins
    assert int(merged["n_abnormalities"].iloc[0]) == len(rows) - 6
    crop = read_cbis_ddsm(root, image_type="crop").validate()
    mask = read_cbis_ddsm(root, image_type="mask").validate()
    assert len(crop) == len(mask) == len(rows)
    assert all(_header(p).Rows == CROP[0] for p in crop.paths())  # including the row whose CSV swaps crop/mask
    assert all(_header(p).Rows == FULL[0] for p in mask.paths())
    first = rows.iloc[0]
    assert crop.df.set_index("patient_id").loc[first["patient_id"], "label"].iloc[0] == "malignant"


def test_tcia_tree_with_other_study_folders_and_newlines(csv_dir, tmp_path):
    rows = _chosen(csv_dir)
    _classic_tree(csv_dir, rows, move_study=True)
    m = read_cbis_ddsm(csv_dir, image_type="crop").validate()
    assert len(m) == len(rows)
    assert all(_header(p).Rows == CROP[0] for p in m.paths())


def test_tcia_descriptive_folder_names(csv_dir):
    rows = _chosen(csv_dir)
    for i, r in rows.iterrows():
        case_full, case_roi = _parts(r["image file path"])[0], _parts(r["cropped image file path"])[0]
        base = csv_dir / "CBIS-DDSM"
        _write_dcm(base / case_full / "07-20-2016-DDSM-74994" / "1.000000-full mammogram images-24515" / "1-1.dcm", FULL)
        _write_dcm(base / case_roi / "08-07-2016-DDSM-1" / f"1.000000-cropped images-{i}" / "1-1.dcm", CROP)
        _write_dcm(base / case_roi / "08-07-2016-DDSM-1" / f"1.000000-ROI mask images-{i}" / "1-1.dcm", FULL)
    full = read_cbis_ddsm(csv_dir).validate()
    crop = read_cbis_ddsm(csv_dir, image_type="crop").validate()
    mask = read_cbis_ddsm(csv_dir, image_type="mask").validate()
    assert len(full) == rows["image file path"].map(clean_csv_path).nunique()
    assert all("cropped images" in p for p in crop.df["image"])
    assert all("ROI mask images" in p for p in mask.df["image"])


def test_nbia_metadata_csv_maps_series_to_folders(csv_dir):
    """Folders named unlike the cases (as some NBIA exports are) are found through the retriever's metadata.csv."""
    rows = _chosen(csv_dir)
    folders: dict[str, Path] = {}  # one folder per series; crop and mask often share one series, as on TCIA
    for i, r in rows.iterrows():
        for col, desc, shape in (("image file path", "full mammogram images", FULL),
                                 ("cropped image file path", "cropped images", CROP),
                                 ("ROI mask file path", "ROI mask images", FULL)):
            uid = _parts(r[col])[2]
            if uid in folders and col == "image file path":
                continue  # a full mammogram shared by several abnormality rows
            folder = folders.setdefault(uid, Path("CBIS-DDSM") / f"subject_{i:03d}" / f"1.000000-{desc}-{uid[-5:]}")
            _write_dcm(csv_dir / folder / f"1-{len(list((csv_dir / folder).glob('*.dcm'))) + 1}.dcm", shape)
    meta = [{"Series UID": uid, "File Location": ".\\" + str(folder).replace("/", "\\")}
            for uid, folder in folders.items()]
    pd.DataFrame(meta).to_csv(csv_dir / "metadata.csv", index=False)
    full = read_cbis_ddsm(csv_dir).validate()
    crop = read_cbis_ddsm(csv_dir, image_type="crop").validate()
    mask = read_cbis_ddsm(csv_dir, image_type="mask").validate()
    assert len(full) == rows["image file path"].map(clean_csv_path).nunique()
    assert all(_header(p).Rows == CROP[0] for p in crop.paths())
    assert all(_header(p).Rows == FULL[0] for p in mask.paths()) and len(mask) == len(rows)


def test_kaggle_jpeg_layout(csv_dir, tmp_path):
    rows = _chosen(csv_dir)
    root = tmp_path / "kaggle"
    shutil.copytree(csv_dir, root / "csv")
    info = []
    for _, r in rows.iterrows():
        for col, desc, name, size in (("image file path", "full mammogram images", "1-1.jpg", (48, 64)),
                                      ("cropped image file path", "cropped images", "2-1.jpg", (16, 16)),
                                      ("ROI mask file path", "ROI mask images", "1-1.jpg", (48, 64))):
            uid = _parts(r[col])[2]
            jpg = root / "jpeg" / uid / name
            jpg.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", size).save(jpg)
            info.append({"file_path": f"CBIS-DDSM/dicom/{uid}/{name[:-4]}.dcm", "image_path": f"CBIS-DDSM/jpeg/{uid}/{name}",
                         "PatientID": _parts(r[col])[0], "SeriesDescription": desc, "SeriesInstanceUID": uid})
    info.append({"file_path": "x", "image_path": "CBIS-DDSM/jpeg/1.2.3/1-1.jpg", "PatientID": "Mass-Training_P_99999_LEFT_CC",
                 "SeriesDescription": "full mammogram images", "SeriesInstanceUID": "1.2.3"})
    pd.DataFrame(info).drop_duplicates("image_path").to_csv(root / "csv" / "dicom_info.csv", index=False)
    for src in (root, root / "csv"):
        assert detect_format(src) == "cbis_ddsm"
        full = read_source(src).validate()
        assert full.root == root and len(full) == rows["image file path"].map(clean_csv_path).nunique()
        assert full.df["image"].str.match(r"^jpeg/[0-9.]+/1-1\.jpg$").all()
    crop = read_cbis_ddsm(root, image_type="crop").validate()
    mask = read_cbis_ddsm(root, image_type="mask").validate()
    assert all(Image.open(p).size == (16, 16) for p in crop.paths())
    assert all(Image.open(p).size == (48, 64) for p in mask.paths())
    assert any("Kaggle JPEG layout" in n for n in crop.notes)


def test_bad_inputs(csv_dir, tmp_path):
    with pytest.raises(SourceError, match="none of the CBIS-DDSM full images could be found"):
        read_cbis_ddsm(csv_dir, layout="dicom", image_root=_empty_tree(tmp_path))
    with pytest.raises(SourceError, match="needs the Kaggle copy's csv/dicom_info.csv"):
        read_cbis_ddsm(csv_dir, layout="jpeg")
    with pytest.raises(ValueError, match="image_type must be"):
        read_cbis_ddsm(csv_dir, image_type="roi")
    with pytest.raises(ValueError, match="abnormality must be among"):
        read_cbis_ddsm(csv_dir, abnormality="architectural_distortion")
    with pytest.raises(ValueError, match="subsets among"):
        read_cbis_ddsm(csv_dir, subsets="val")
    bad = tmp_path / "bad"
    bad.mkdir()
    df = pd.read_csv(csv_dir / CSVS[1], dtype=str)
    df.rename(columns={"pathology": "pathalogy"}).to_csv(bad / CSVS[1], index=False)
    with pytest.raises(SourceError, match=r"missing columns 'pathology' \(did you mean 'pathalogy'\?\)"):
        read_cbis_ddsm(bad)
    df.loc[3, "pathology"] = "MALIGANT"
    df.to_csv(bad / CSVS[1], index=False)
    with pytest.raises(SourceError, match=r"1 rows have an unknown pathology \['MALIGANT'\] \(rows \[5\]"):
        read_cbis_ddsm(bad)
    with pytest.raises(SourceError, match="no CBIS-DDSM case-description CSVs"):
        read_cbis_ddsm(tmp_path / "nothing_here")


def _empty_tree(tmp_path: Path) -> Path:
    d = tmp_path / "tree"
    _write_dcm(d / "unrelated" / "x.dcm", CROP)
    return d


# ---- swapped crop / mask series, decided from the files ---------------------------------------------------------------
def test_real_tcia_tree_with_swapped_folders_reads_every_crop_with_its_label(shared_data):
    """The three real DICOMs: two sit in 'ROI mask images' folders but are cropped images (SeriesDescription); all
    three are found as crops with their CSV labels, none is taken for a mask; view / laterality / exam filled."""
    root = shared_data / "mammography_samples" / "cbis_ddsm_tcia"
    crop = read_cbis_ddsm(root, image_type="crop").validate()
    assert sorted(crop.df["id"]) == ["cbis_ddsm:Mass-Test_P_00016_LEFT_CC_1:crop",
                                     "cbis_ddsm:Mass-Test_P_00116_RIGHT_MLO_1:crop",
                                     "cbis_ddsm:Mass-Test_P_00116_RIGHT_MLO_2:crop"]
    assert set(crop.df["label"]) == {"malignant"}
    assert sum("ROI mask images" in p for p in crop.df["image"]) == 2
    assert all(str(_header(p).SeriesDescription) == "cropped images" for p in crop.paths())
    by_id = crop.df.set_index("id")
    assert by_id.loc["cbis_ddsm:Mass-Test_P_00016_LEFT_CC_1:crop", ["laterality", "view", "exam_id"]].tolist() == \
        ["L", "CC", "P_00016"]
    assert by_id.loc["cbis_ddsm:Mass-Test_P_00116_RIGHT_MLO_2:crop", ["laterality", "view"]].tolist() == ["R", "MLO"]
    with pytest.raises(SourceError, match="none of the CBIS-DDSM mask images could be found"):
        read_cbis_ddsm(root, image_type="mask")  # no mask file was downloaded: none is invented from a crop
    from breastclip.data.sources._cbis_paths import DicomTree

    row = pd.read_csv(root / "mass_case_description_test_set.csv", dtype=str)
    mlo = row[row["cropped image file path"].str.contains("P_00116_RIGHT_MLO_1")].iloc[0]
    found, why = DicomTree(root).resolve(mlo["ROI mask file path"], "mask")
    assert found is None and "is a cropped images file by its SeriesDescription" in why


def _write_pixels_dcm(path: Path, arr: np.ndarray) -> None:
    _write_dcm(path, arr.shape)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PixelData = arr.astype(np.uint16).tobytes()
    ds.save_as(path)


def test_tcia_swapped_folders_without_descriptions_decided_by_content(csv_dir):
    """Descriptive folders swapped and no SeriesDescription: the binary image is the mask, the grey one the crop,
    even though the mask here is the *smaller* image (size alone would pick wrongly)."""
    rows = _chosen(csv_dir).head(3)
    rng = np.random.default_rng(0)
    for i, r in rows.iterrows():
        case_roi = _parts(r["cropped image file path"])[0]
        base = csv_dir / "CBIS-DDSM" / case_roi / "08-07-2016-DDSM-1"
        grey = rng.integers(100, 4000, (24, 24))
        mask = np.zeros((16, 16), np.uint16)
        mask[4:10, 5:12] = 255
        _write_pixels_dcm(base / f"1.000000-ROI mask images-{i}" / "1-1.dcm", grey)  # swapped
        _write_pixels_dcm(base / f"1.000000-cropped images-{i}" / "1-1.dcm", mask)
    crop = read_cbis_ddsm(csv_dir, image_type="crop").validate()
    mask_m = read_cbis_ddsm(csv_dir, image_type="mask").validate()
    assert len(crop) == len(mask_m) == len(rows)
    assert all("ROI mask images" in p for p in crop.df["image"])
    assert all("cropped images" in p for p in mask_m.df["image"])


def test_kaggle_swapped_descriptions_decided_by_content(csv_dir, tmp_path):
    """dicom_info.csv labels the crop as the mask and back: the JPEGs themselves decide."""
    rows = _chosen(csv_dir).head(3)
    root = tmp_path / "kaggle"
    shutil.copytree(csv_dir, root / "csv")
    info = []
    rng = np.random.default_rng(1)
    for _, r in rows.iterrows():
        full_uid, roi_uid = _parts(r["image file path"])[2], _parts(r["cropped image file path"])[2]
        (root / "jpeg" / full_uid).mkdir(parents=True, exist_ok=True)
        Image.new("L", (48, 64), 90).save(root / "jpeg" / full_uid / "1-1.jpg")
        info.append({"image_path": f"CBIS-DDSM/jpeg/{full_uid}/1-1.jpg", "SeriesDescription": "full mammogram images",
                     "SeriesInstanceUID": full_uid})
        (root / "jpeg" / roi_uid).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(60, 200, (20, 20)).astype(np.uint8)).save(root / "jpeg" / roi_uid / "1-1.jpg")
        m = np.zeros((48, 64), np.uint8)
        m[10:20, 10:30] = 255
        Image.fromarray(m).save(root / "jpeg" / roi_uid / "2-1.jpg")
        info += [{"image_path": f"CBIS-DDSM/jpeg/{roi_uid}/1-1.jpg", "SeriesDescription": "ROI mask images",
                  "SeriesInstanceUID": roi_uid},
                 {"image_path": f"CBIS-DDSM/jpeg/{roi_uid}/2-1.jpg", "SeriesDescription": "cropped images",
                  "SeriesInstanceUID": roi_uid}]
    pd.DataFrame(info).drop_duplicates("image_path").to_csv(root / "csv" / "dicom_info.csv", index=False)
    crop = read_cbis_ddsm(root, image_type="crop").validate()
    mask = read_cbis_ddsm(root, image_type="mask").validate()
    assert all(Image.open(p).size == (20, 20) for p in crop.paths())
    assert all(Image.open(p).size == (64, 48) for p in mask.paths())
    assert set(crop.df["laterality"]) <= {"L", "R"} and crop.df["exam_id"].eq(crop.df["patient_id"]).all()
