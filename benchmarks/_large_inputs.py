"""Full-field-size mammography inputs for the benchmarks, made from the real NYU 16-bit PNGs in
../shared/data/mammography_samples (never committed; written to a temporary folder).

Each source (2560x3328 uint16) is upscaled with bilinear interpolation to 3072x3994, the size of a full-field digital
mammogram (3000x4000 at 12-16 bits), then written as: a 16-bit greyscale PNG, an uncompressed DICOM (Explicit VR
Little Endian), an RLE Lossless DICOM (pydicom's own encoder), and a JPEG 2000 lossless DICOM (Pillow's OpenJPEG
encoder, encapsulated by pydicom) when Pillow has OpenJPEG. DICOMs carry MONOCHROME2, 16 bits stored and a window
centre/width (as most mammograms do). A distinct value in one corner pixel per copy keeps content hashes distinct.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

FULL_FIELD = (3994, 3072)  # rows, columns


def nyu_sources(data: Path) -> list[Path]:
    folder = data / "mammography_samples" / "nyu_ffdm" / "breast_cancer_classifier"
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise SystemExit(f"no NYU 16-bit PNGs under {folder} (set --data or BREASTCLIP_SHARED_DATA)")
    return paths


def full_field(src: Path, copy: int) -> np.ndarray:
    import cv2
    from PIL import Image

    a = np.asarray(Image.open(src))
    if a.dtype != np.uint16:
        raise SystemExit(f"{src.name}: expected a 16-bit greyscale PNG, got {a.dtype}")
    big = cv2.resize(a, (FULL_FIELD[1], FULL_FIELD[0]), interpolation=cv2.INTER_LINEAR)
    big[0, 0] = copy  # distinct bytes per copy, invisible after any resize
    return big


def _dataset(arr: np.ndarray, tsyntax, pixel_data: bytes, encapsulated: bool):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = tsyntax
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    lo, hi = np.percentile(arr[arr > 0] if (arr > 0).any() else arr, [1, 99.5])
    ds.WindowCenter = f"{(lo + hi) / 2:.1f}"
    ds.WindowWidth = f"{max(hi - lo, 1):.1f}"
    ds.PixelData = pixel_data
    if encapsulated:
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    return ds


def write_dicom(arr: np.ndarray, path: Path, codec: str) -> None:
    """codec: 'raw' (Explicit VR Little Endian), 'rle' (RLE Lossless) or 'j2k' (JPEG 2000 lossless)."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

    if codec == "raw":
        ds = _dataset(arr, ExplicitVRLittleEndian, arr.astype("<u2").tobytes(), False)
    elif codec == "rle":
        ds = _dataset(arr, ExplicitVRLittleEndian, arr.astype("<u2").tobytes(), False)
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif codec == "j2k":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG2000", irreversible=False, num_resolutions=6)
        ds = _dataset(arr, JPEG2000Lossless, encapsulate([buf.getvalue()]), True)
    else:
        raise ValueError(codec)
    ds.save_as(path, enforce_file_format=True)


def j2k_available() -> bool:
    from PIL import features

    return bool(features.check("jpg_2000"))


def make_inputs(data: Path, folder: Path, n_per_kind: int, kinds: list[str]) -> dict[str, list[Path]]:
    """n_per_kind files of each kind ('png16', 'dcm-raw', 'dcm-rle', 'dcm-j2k') under ``folder`` (reused if there)."""
    import cv2

    srcs = nyu_sources(data)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {k: [] for k in kinds}
    for i in range(n_per_kind):
        arr = None
        for kind in kinds:
            path = folder / f"{kind}_{i:03d}.{'png' if kind == 'png16' else 'dcm'}"
            if not path.is_file():
                arr = full_field(srcs[i % len(srcs)], i) if arr is None else arr
                tmp = path.with_name(f".{path.name}.tmp")
                if kind == "png16":
                    ok, enc = cv2.imencode(".png", arr)
                    assert ok
                    tmp.write_bytes(enc.tobytes())
                else:
                    write_dicom(arr, tmp, kind.split("-", 1)[1])
                tmp.rename(path)
            out[kind].append(path)
    return out
