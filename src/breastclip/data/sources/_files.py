"""Small shared helpers for the readers: which files are images, walking a tree, DICOM header fields."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", ".pnm", ".webp",
                              ".gif", ".dcm", ".dicom"})
IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})

# DICOM header fields worth keeping as metadata (keyword -> manifest column).
DICOM_FIELDS = {
    "Modality": "modality",
    "Manufacturer": "manufacturer",
    "ViewPosition": "view",
    "ImageLaterality": "side",
    "BodyPartExamined": "body_part",
    "PhotometricInterpretation": "photometric",
    "NumberOfFrames": "frames",
    "Rows": "rows",
    "Columns": "columns",
}


def is_image_file(path: Path, extensions: frozenset[str] = IMAGE_EXTENSIONS) -> bool:
    name = path.name
    return (not name.startswith(".") and name.lower() not in IGNORED_NAMES
            and path.suffix.lower() in extensions)


def walk_files(root: Path, max_depth: int | None = None) -> Iterator[Path]:
    """Every file under ``root`` (sorted, hidden entries skipped, symlinks followed), optionally depth-limited."""
    root = Path(root)
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        depth = len(Path(dirpath).parts) - base_depth
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if max_depth is not None and depth >= max_depth:
            dirnames[:] = []
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def dicom_header(path: Path) -> dict[str, str]:
    """Selected header fields of a DICOM file (no pixel data read); empty dict when it cannot be parsed."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # a broken header is reported by the decoder later, not here
        return {}
    out: dict[str, str] = {}
    for keyword, column in DICOM_FIELDS.items():
        value = ds.get(keyword)
        if value is not None and str(value).strip():
            out[column] = str(value).strip()
    pid = ds.get("PatientID")
    if pid is not None and str(pid).strip():
        out["dicom_patient_id"] = str(pid).strip()
    desc = ds.get("SeriesDescription")
    if desc is not None:
        out["series_description"] = str(desc).strip()
    return out


def relative_to_root(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (absolute when it lies outside)."""
    try:
        return Path(os.path.relpath(path, root)).as_posix() if _under(path, root) else str(path)
    except ValueError:
        return str(path)


def _under(path: Path, root: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
        return True
    except ValueError:
        return False
