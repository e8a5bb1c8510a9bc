"""Reduced-resolution decoding (issue 14): area averaging of 16-bit values and JPEG 2000 resolution levels give the
model almost exactly the pixels of a full decode + resize, at a fraction of the cost."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image, features
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from breastclip.backbones import create_backbone, get_entry
from breastclip.backbones.preprocess import load_for_model, prepare_image
from breastclip.data import _dicom
from breastclip.data.images import area_reduce, load_image, load_image_resized

ENTRY = get_entry("clip-vit-b32")  # 224 px, shortest side + centre crop, bicubic


def mammogram(h: int = 1400, w: int = 1100, seed: int = 0) -> np.ndarray:
    """12-bit-like full-field stand-in: dark background, a textured breast with a smooth falloff, a bright label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = ((yy - h / 2) / (0.45 * h)) ** 2 + (xx / (0.8 * w)) ** 2
    tissue = np.clip(1 - r, 0, 1) ** 0.5 * 3000
    texture = np.asarray(Image.fromarray(rng.normal(0, 1, (h // 8, w // 8)).astype(np.float32)).resize((w, h)))
    img = np.where(r <= 1, tissue + 400 + 300 * texture, 30 + rng.normal(0, 5, (h, w)))
    img[40:90, w - 220:w - 60] = 4095
    return np.clip(img, 0, 4095).astype(np.uint16)


def dicom(path, arr: np.ndarray, codec: str = "raw", window: bool = True, photometric: str = "MONOCHROME2"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEG2000Lossless if codec == "j2k" else ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = "1900", "3600"
    if codec == "j2k":
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG2000", irreversible=False, num_resolutions=5)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = arr.astype("<u2").tobytes()
        if codec == "rle":
            ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.save_as(path, enforce_file_format=True)
    return path


def reference(path) -> np.ndarray:
    """The exact path: full-resolution decode, then the entry's resize + centre crop."""
    return prepare_image(load_image(path), ENTRY)


def close(a: np.ndarray, b: np.ndarray, mean: float, p99: float) -> None:
    assert a.shape == b.shape
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert d.mean() <= mean and np.percentile(d, 99) <= p99, (d.mean(), np.percentile(d, 99), d.max())


def test_area_reduce_keeps_dtype_mean_and_full_geometry():
    a = mammogram(900, 700)
    small = area_reduce(a, 200)
    assert small.dtype == np.uint16 and small.shape == (257, 200)
    assert abs(float(small.mean()) - float(a.mean())) < 0.01 * float(a.mean())  # area averaging keeps the mean
    assert area_reduce(a, 700) is a and area_reduce(a, 5000) is a  # never enlarges
    assert area_reduce(a.astype(np.int32), 200).shape == a.shape  # dtypes OpenCV cannot average: unchanged
    # a reduced decode (e.g. a JPEG 2000 level: ceil of halves) lands on the size the full image would give
    assert area_reduce(a[::2, ::2], 200, full_shape=a.shape).shape == (257, 200)


def test_16bit_png_reduced_equals_full_decode_within_a_grey_level(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(mammogram()).save(path)
    assert Image.open(path).mode == "I;16"
    fast = load_for_model(path, ENTRY)
    close(fast, reference(path), mean=0.5, p99=3)
    assert load_image_resized(path, 224).shape == (285, 224, 3)


@pytest.mark.parametrize("codec", ["raw", "rle"])
def test_dicom_reduced_equals_full_decode_within_a_grey_level(tmp_path, codec):
    path = dicom(tmp_path / f"m_{codec}.dcm", mammogram(), codec)
    close(load_for_model(path, ENTRY), reference(path), mean=0.5, p99=3)


def test_dicom_reduced_keeps_monochrome1_and_percentile_window(tmp_path):
    path = dicom(tmp_path / "m1.dcm", mammogram(), window=False, photometric="MONOCHROME1")
    fast, ref = load_for_model(path, ENTRY), reference(path)
    close(fast, ref, mean=0.75, p99=4)
    assert fast[0, 150, 220] > 200  # MONOCHROME1 inverted: the low stored background comes out bright
    assert ref[0, 150, 220] > 200


def test_jpeg2000_dicom_decodes_a_reduced_level_close_to_full(tmp_path):
    assert features.check("jpg_2000"), "Pillow without OpenJPEG: JPEG 2000 DICOMs cannot be decoded at all"
    arr = mammogram()
    path = dicom(tmp_path / "m.dcm", arr, "j2k")
    ds = _dicom.read_header(path)
    level1 = _dicom._j2k_reduced(path, ds, ds.file_meta.TransferSyntaxUID, 0, 1, 448)
    assert level1 is not None and level1.shape == (700, 550)  # one wavelet level down: 1/4 of the pixels
    np.testing.assert_allclose(level1.mean(), arr.mean(), rtol=0.01)
    assert _dicom._j2k_reduced(path, ds, ds.file_meta.TransferSyntaxUID, 0, 1, 1000) is None  # no level fits
    close(load_for_model(path, ENTRY), reference(path), mean=1.5, p99=8)


@pytest.mark.parametrize("h, w", [(300, 256), (306, 256), (256, 306), (333, 250), (400, 447)])
def test_small_images_decode_exactly_as_before(tmp_path, h, w):
    """Below twice the input size nothing is reduced early and the long side is rounded as torchvision does:
    BUSI-sized inputs (8-bit and 16-bit) give exactly the reference pixels."""
    for i, arr in enumerate((mammogram(h, w), (mammogram(h, w) // 16).astype(np.uint8))):
        path = tmp_path / f"s{i}.png"
        Image.fromarray(arr).save(path)
        np.testing.assert_array_equal(load_for_model(path, ENTRY), reference(path))


def test_embedding_of_reduced_decode_matches_full_decode(tmp_path):
    """What matters downstream: the embedding barely moves (tiny-test tower at 32 px on a 16-bit PNG)."""
    import torch

    path = tmp_path / "m.png"
    Image.fromarray(mammogram()).save(path)
    b = create_backbone("tiny-test", device="cpu")
    fast = b.encode_images(torch.from_numpy(load_for_model(path, b.entry))[None])[0]
    full = b.encode_images(torch.from_numpy(prepare_image(load_image(path), b.entry))[None])[0]
    assert float(np.dot(fast, full)) > 0.999


def test_breast_crop_entries_decode_at_full_resolution(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(mammogram()).save(path)
    entry = get_entry("clip-vit-b32", breast_crop=True)
    assert entry.decode_mode == "full"
    np.testing.assert_array_equal(load_for_model(path, entry), prepare_image(load_image(path), entry))


@pytest.mark.realdata
def test_real_16bit_mammogram_reduced_close_to_full(shared_data):
    path = shared_data / "mammography_samples" / "nyu_ffdm" / "breast_cancer_classifier" / "1_L_CC.png"
    assert pydicom is not None and Image.open(path).mode == "I;16"
    close(load_for_model(path, ENTRY), reference(path), mean=0.5, p99=3)


def test_embed_manifest_takes_the_reduced_path(tmp_path, monkeypatch):
    """embed_manifest decodes plain entries through load_image_resized, never the full-resolution load_image."""
    import breastclip.backbones.preprocess as preprocess
    from breastclip.backbones import embed_manifest
    from breastclip.data.manifest import Manifest

    Image.fromarray(mammogram()).save(tmp_path / "m.png")
    dicom(tmp_path / "m.dcm", mammogram(seed=1))
    m = Manifest.from_records([{"image": "m.png", "label": "a"}, {"image": "m.dcm", "label": "b"}], tmp_path,
                              name="big", source="t")

    def refuse(*a, **k):
        raise AssertionError("full-resolution decode on the embedding path")

    monkeypatch.setattr(preprocess, "load_image", refuse)
    res = embed_manifest(m, "tiny-test", cache_dir=tmp_path / "c", num_workers=0, progress=False)
    assert res.n_computed == 2 and not res.failures
