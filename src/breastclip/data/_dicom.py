"""DICOM decoding for :mod:`breastclip.data.images` (kept apart so pydicom is imported only when needed).

Order of operations for greyscale (DICOM PS3.3 C.11): stored values -> Modality LUT (rescale slope/intercept or
LUT) -> VOI LUT or the *first* window centre/width -> 8 bit over the VOI output range -> MONOCHROME1 / Presentation
LUT Shape INVERSE inverted (one inversion: bright is dense in the result). Files without a VOI get a percentile
window (0.5..99.5 %); PresentationIntentType FOR PROCESSING data (raw, linear in exposure) without a VOI is
log-compressed before that window, FOR PRESENTATION data is windowed as stored. :func:`dicom_metadata` reads
ImageLaterality / ViewPosition / PatientID / StudyInstanceUID for the Manifest's metadata columns. Colour data (RGB, YBR converted by pydicom, PALETTE COLOR through its LUT) is returned as RGB.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .images import ImageDecodeError, area_reduce
from .intensity import (
    PERCENTILE_WINDOW,
    Intensity,
    _gray_to_rgb,
    _window_to_uint8,
    compact_values,
    to_uint8,
    window_bounds,
)

_UNCOMPRESSED = {
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
}


def read_header(path: Path, *, pixels: bool = False):
    """The dataset (without pixel data unless ``pixels``); a clear error for non-DICOM or corrupt files."""
    import pydicom
    from pydicom.datadict import dictionary_has_tag
    from pydicom.errors import InvalidDicomError

    forced = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
            except InvalidDicomError:
                # files written without the 128-byte preamble and 'DICM' prefix are still common
                forced = True
                ds = pydicom.dcmread(path, stop_before_pixels=not pixels, force=True)
    except InvalidDicomError as e:
        raise ImageDecodeError(path, f"not a DICOM file ({e})") from e
    except Exception as e:  # pydicom raises many types for damaged headers
        raise ImageDecodeError(path, f"corrupt or truncated DICOM header ({type(e).__name__}: {e})") from e
    if forced and not any(dictionary_has_tag(tag) for tag in ds.keys()):
        raise ImageDecodeError(path, "not a DICOM file (no DICOM preamble and no standard data elements)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except Exception as e:
        sop = ds.get("SOPClassUID")
        name = getattr(sop, "name", sop) if sop is not None else "unknown SOP class"
        raise ImageDecodeError(path, f"DICOM file has no image (no Rows/Columns; SOP class: {name}), "
                                     "e.g. a structured report or presentation state") from e
    if rows <= 0 or cols <= 0:
        raise ImageDecodeError(path, f"DICOM image has invalid size {rows}x{cols}")
    return ds


def load_dicom(path: Path, *, frame: int | None, max_pixels: int, intensity: Intensity,
               rgb: bool = True, min_side: int | None = None) -> np.ndarray:
    """Decode one frame of a DICOM file to (H, W, 3) uint8 RGB (``rgb=False``: greyscale stays (H, W)).

    ``min_side``: the caller only needs this many pixels on the shorter side, so greyscale may be decoded at a
    reduced JPEG 2000 resolution level and its stored values area-averaged down to ``min_side`` before the Modality
    LUT and VOI run (the result is then smaller than the file's Rows x Columns)."""
    import pydicom.pixels as pxl

    ds = read_header(path)
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows * cols > max_pixels:
        raise ImageDecodeError(path, f"decompression bomb guard: {cols}x{rows} = {rows * cols:,} pixels exceeds "
                                     f"max_pixels={max_pixels:,} (raise max_pixels if the image is genuine)")
    n_frames = _n_frames(ds)
    if frame is None:
        frame = n_frames // 2
    if not 0 <= frame < n_frames:
        raise ImageDecodeError(path, f"frame {frame} out of range: the file has {n_frames} frame(s) (0..{n_frames - 1})")
    tsyntax = _transfer_syntax(ds)
    _check_decoder(path, tsyntax)
    arr = _j2k_reduced(path, ds, tsyntax, frame, n_frames, min_side) if min_side else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if arr is not None:  # already decoded at a reduced resolution level
                pass
            elif _has_file_meta(ds):  # decode straight from the file: only the chosen frame is read
                arr = pxl.pixel_array(path, index=frame if n_frames > 1 else None)
            else:  # no file meta: read it all, with the transfer syntax pydicom inferred while parsing
                full = read_header(path, pixels=True)
                full.file_meta = _meta_for(full, tsyntax)
                arr = pxl.pixel_array(full, index=frame if n_frames > 1 else None)
    except AttributeError as e:
        if "no pixel data" in str(e).lower() or "Pixel Data" in str(e):
            raise ImageDecodeError(path, "DICOM file has no pixel data") from e
        raise ImageDecodeError(path, f"cannot decode pixel data ({e})") from e
    except Exception as e:
        what = ("pixel data shorter than the header promises: the file is truncated or corrupt"
                if str(tsyntax) in _UNCOMPRESSED else
                f"corrupt compressed pixel data ({getattr(tsyntax, 'name', tsyntax)})")
        raise ImageDecodeError(path, f"{what} ({type(e).__name__}: {e})") from e

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        try:
            arr = pxl.apply_color_lut(arr, ds)
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        except Exception as e:
            raise ImageDecodeError(path, f"cannot apply the PALETTE COLOR lookup table ({e})") from e
        # the table's entries span 0..2**bits-1 whatever colours this image uses: scale by that, not by min-max
        return np.rint(arr[..., :3].astype(np.float64) * (255.0 / (2**bits - 1))).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        colour = arr[..., :3]  # (the parameter rgb says what the caller wants back, not this)
        return colour if colour.dtype == np.uint8 else to_uint8(colour, "minmax")
    if arr.ndim != 2:
        raise ImageDecodeError(path, f"unexpected decoded pixel array shape {arr.shape} ({photometric})")
    small = area_reduce(arr, min_side, full_shape=(rows, cols)) if min_side else arr
    if small is not arr:
        out = _grey_to_uint8_reduced(arr, small, _frame_view(ds, frame), intensity)
    else:
        out = _grey_to_uint8(arr, _frame_view(ds, frame), intensity)
    invert = photometric == "MONOCHROME1" or str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE"
    if invert:
        out = 255 - out
    return _gray_to_rgb(out) if rgb else out


_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}  # JPEG 2000 (lossless only), JPEG 2000


def _j2k_reduced(path: Path, ds, tsyntax, frame: int, n_frames: int, min_side: int) -> np.ndarray | None:
    """Stored values of one unsigned greyscale JPEG 2000 frame at the coarsest wavelet resolution level whose
    shorter side is still >= ``min_side`` (Pillow's OpenJPEG ``reduce``: decoding 1/4 of the pixels costs about
    1/10 of the time); None whenever that does not apply or fails, and the caller decodes in full."""
    if str(tsyntax) not in _J2K or int(ds.get("SamplesPerPixel", 1) or 1) != 1 \
            or int(ds.get("PixelRepresentation", 0) or 0) != 0 or int(ds.get("BitsAllocated", 16) or 16) > 16:
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    level = 0
    while min(rows, cols) >> (level + 1) >= min_side:
        level += 1
    if level == 0:
        return None
    try:
        import io

        from PIL import Image
        from pydicom.encaps import get_frame

        full = read_header(path, pixels=True)
        data = get_frame(full.PixelData, frame, number_of_frames=n_frames)
        with Image.open(io.BytesIO(data)) as im:
            im.reduce = level  # Jpeg2KImageFile: decode only the resolution levels needed
            im.load()
            arr = np.asarray(im)
    except Exception:  # a codestream with fewer levels, Pillow without OpenJPEG...: decode in full instead
        return None
    expect = (-(-rows // 2**level), -(-cols // 2**level))
    return arr if arr.ndim == 2 and arr.shape == expect and arr.dtype.kind == "u" else None


_FRAME_MACROS = {  # functional-group macro -> attributes it carries that the pixel maths needs
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}


def _frame_view(ds, frame: int):
    """For enhanced multi-frame files (DBT, enhanced CT/MR): a copy with the frame's rescale and window on top.

    Their Pixel Value Transformation and Frame VOI LUT live in the Shared and Per-Frame Functional Groups, where
    pydicom's ``apply_modality_lut`` / ``apply_voi_lut`` do not look. Per-frame values override shared ones.
    """
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not shared and not per_frame:
        return ds
    found: dict[str, object] = {}
    groups = [shared[0] if shared else None, per_frame[frame] if per_frame and frame < len(per_frame) else None]
    for group in groups:
        if group is None:
            continue
        for macro, keywords in _FRAME_MACROS.items():
            items = group.get(macro)
            if not items:
                continue
            for kw in keywords:
                if kw in items[0]:
                    found[kw] = items[0][kw].value
    if not found:
        return ds
    view = ds.copy()
    for kw, value in found.items():
        setattr(view, kw, value)
    return view


def _n_frames(ds) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _has_file_meta(ds) -> bool:
    meta = getattr(ds, "file_meta", None)
    return meta is not None and meta.get("TransferSyntaxUID") is not None


def _transfer_syntax(ds):
    """The file's transfer syntax, or the uncompressed one pydicom inferred when the file meta is missing."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if _has_file_meta(ds):
        return ds.file_meta.TransferSyntaxUID
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian


def _meta_for(ds, tsyntax):
    from pydicom.dataset import FileMetaDataset

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = tsyntax
    return meta


def _check_decoder(path: Path, tsyntax) -> None:
    """Fail early and clearly when no installed pixel-data plugin handles the transfer syntax."""
    import pydicom.pixels as pxl

    name = getattr(tsyntax, "name", str(tsyntax))
    try:
        decoder = pxl.get_decoder(tsyntax)
    except NotImplementedError as e:
        raise ImageDecodeError(path, f"transfer syntax '{name}' ({tsyntax}) is not supported by pydicom") from e
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a pydicom pixel-data plugin"
        raise ImageDecodeError(path, f"compressed transfer syntax '{name}' ({tsyntax}) cannot be decoded: no "
                                     f"installed pixel-data plugin handles it; install one of: {missing}")


def _grey_to_uint8(arr: np.ndarray, ds, intensity: Intensity) -> np.ndarray:
    """Modality LUT -> VOI -> 8 bit, run once per distinct stored value (a lookup table) for integer data."""
    compact = compact_values(arr)
    if compact is None:
        return _map_grey(arr, None, ds, intensity)
    values, idx, counts = compact
    return _map_grey(values, counts, ds, intensity)[idx]


def _grey_to_uint8_reduced(full: np.ndarray, small: np.ndarray, ds, intensity: Intensity) -> np.ndarray:
    """The full image's 8-bit mapping (its histogram sets any percentile window) applied to ``small``, an
    area-averaged copy: what a full decode would give, on a fraction of the pixels."""
    compact = compact_values(full, index=False)
    if compact is None:
        return _grey_to_uint8(small, ds, intensity)
    values, _, counts = compact
    lut = _map_grey(values, counts, ds, intensity)
    return lut[np.clip(small.astype(np.int64) - int(values[0]), 0, len(lut) - 1)]


def _map_grey(stored: np.ndarray, counts: np.ndarray | None, ds, intensity: Intensity) -> np.ndarray:
    import pydicom.pixels as pxl

    try:
        values = pxl.apply_modality_lut(stored, ds)
    except Exception:  # a malformed modality LUT: fall back to stored values rather than losing the image
        values = stored
    values = np.asarray(values, dtype=np.float64)
    if intensity in ("minmax", "percentile"):
        return _window_to_uint8(values, *window_bounds(values, counts, intensity, PERCENTILE_WINDOW))
    has_lut = bool(ds.get("VOILUTSequence"))
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if has_lut or has_window:
        try:
            return _apply_voi(values, ds, has_lut)
        except Exception:  # invalid window (width < 1, unknown function): percentile window instead
            pass
    if for_processing(ds):
        # raw detector data (linear in exposure) without a display window: log-compress, then a percentile window,
        # the usual first step of mammography presentation processing; polarity follows PhotometricInterpretation
        values = np.log1p(values - float(values.min()))
    return _window_to_uint8(values, *window_bounds(values, counts, "percentile", PERCENTILE_WINDOW))


def for_processing(ds) -> bool:
    """PresentationIntentType FOR PROCESSING (raw detector data, not meant for display as stored)."""
    return str(ds.get("PresentationIntentType", "")).strip().upper() == "FOR PROCESSING"


#: DICOM attributes read into the Manifest's metadata columns (first one present wins).
METADATA_TAGS = {
    "laterality": ("ImageLaterality", "Laterality"),
    "view": ("ViewPosition",),
    "patient_id": ("PatientID",),
    "exam_id": ("StudyInstanceUID", "AccessionNumber"),
}


def dicom_metadata(path: Path) -> dict[str, str]:
    """``laterality`` (L/R), ``view`` (CC, MLO, ...), ``patient_id``, ``exam_id`` (StudyInstanceUID) and
    ``presentation_intent`` from a DICOM header (pixels are not read); empty strings where a tag is missing."""
    return metadata_from_header(read_header(Path(path)))


def metadata_from_header(ds) -> dict[str, str]:
    """:func:`dicom_metadata` from an already read dataset."""
    out: dict[str, str] = {}
    for column, keywords in METADATA_TAGS.items():
        value = ""
        for kw in keywords:
            v = ds.get(kw)
            if v is not None and str(v).strip():
                value = str(v).strip()
                break
        if column == "laterality" and not value:  # enhanced (multi-frame) objects: Frame Anatomy macro
            value = _frame_laterality(ds)
        out[column] = value
    if out["laterality"].upper() not in ("L", "R"):
        out["laterality"] = ""  # B (both) / U (unpaired) are not a breast side
    out["view"] = out["view"].upper().replace("-", "").replace(" ", "")
    out["presentation_intent"] = str(ds.get("PresentationIntentType", "")).strip().upper()
    return out


def _frame_laterality(ds) -> str:
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(seq)
        if groups:
            anatomy = groups[0].get("FrameAnatomySequence")
            if anatomy and str(anatomy[0].get("FrameLaterality", "")).strip():
                return str(anatomy[0].FrameLaterality).strip()
    return ""


def _apply_voi(values: np.ndarray, ds, has_lut: bool) -> np.ndarray:
    import pydicom.pixels as pxl

    if has_lut:
        item = ds.VOILUTSequence[0]
        out = np.asarray(pxl.apply_voi_lut(values.astype(np.int64), ds, index=0, prefer_lut=True), np.float64)
        bits = int(item.LUTDescriptor[2])
        lo, hi = 0.0, float(2**bits - 1)
        if out.max() > hi:  # descriptor lies about the depth: use the table's own range
            lo, hi = float(np.min(item.LUTData)), float(np.max(item.LUTData))
        return _window_to_uint8(out, lo, hi)
    with np.errstate(over="ignore"):  # SIGMOID at the probe extremes overflows exp() harmlessly (-> y_min / y_max)
        out = np.asarray(pxl.apply_voi_lut(values, ds, index=0, prefer_lut=False), np.float64)
        bounds = np.asarray(pxl.apply_voi_lut(np.array([-1e15, 1e15]), ds, index=0, prefer_lut=False), np.float64)
    return _window_to_uint8(out, float(bounds.min()), float(bounds.max()))
