"""Small shared helpers for the readers: which files are images, walking a tree, DICOM header fields."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from breastclip.data._dicom import metadata_from_header
from breastclip.data.images import IMAGE_SUFFIXES
from breastclip.data.manifest import VIEWS

IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})

# DICOM header fields worth keeping as metadata (keyword -> manifest column); the mammography columns
# (laterality, view, exam_id) come from breastclip.data._dicom.metadata_from_header.
DICOM_FIELDS = {
    "Modality": "modality",
    "Manufacturer": "manufacturer",
    "BodyPartExamined": "body_part",
    "PhotometricInterpretation": "photometric",
    "NumberOfFrames": "frames",
    "Rows": "rows",
    "Columns": "columns",
}


_SIDE = r"(?P<side>L|R|LEFT|RIGHT)"
_VIEW = "(?P<view>" + "|".join(sorted(VIEWS, key=len, reverse=True)) + ")"
_EDGE_L, _EDGE_R = r"(?:^|(?<=[^A-Z0-9]))", r"(?=$|[^A-Z0-9])"
#: side then view (``1_L_CC``, ``L-MLO``, ``P_00038_LEFT_CC``, ``RMLO``, ``..._MG_R_CC_ANON``) or view then side
#: (``CC_L``); the tokens must stand alone (``CALC`` or ``LCCX`` match nothing).
_VIEW_NAME_RES = (re.compile(_EDGE_L + _SIDE + r"[-_ .]?" + _VIEW + _EDGE_R),
                  re.compile(_EDGE_L + _VIEW + r"[-_ .]" + _SIDE + _EDGE_R))


def view_from_name(path: str | os.PathLike[str]) -> dict[str, str]:
    """``laterality`` (L/R) and ``view`` (CC, MLO, ...) read from a mammogram's file name, the way NYU, CBIS-DDSM,
    INbreast and most Kaggle sets name them; empty when the name holds no single, unambiguous side+view token."""
    stem = Path(path).stem.upper()
    found = {(m.group("side")[0], m.group("view")) for rx in _VIEW_NAME_RES for m in rx.finditer(stem)}
    if len(found) != 1:
        return {}
    side, view = found.pop()
    return {"laterality": side, "view": view}


def is_image_file(path: Path, extensions: frozenset[str] = IMAGE_SUFFIXES) -> bool:
    name = path.name
    return (not name.startswith(".") and name.lower() not in IGNORED_NAMES
            and path.suffix.lower() in extensions)


def _dir_key(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: the folder a link leads to
    except OSError:
        return None
    return st.st_dev, st.st_ino


def walk_files(root: Path, max_depth: int | None = None, loops: set[Path] | None = None) -> Iterator[Path]:
    """Every file under ``root`` (sorted, hidden entries skipped, symlinks followed), optionally depth-limited.

    Each folder is entered once, tracked by (device, inode): a directory symlink that leads back to a folder already
    on the way (``benign/loop -> ..``) or already walked is skipped, and its path added to ``loops`` when given.
    """
    root = Path(root)
    base_depth = len(root.parts)
    seen = {k for k in (_dir_key(p) for p in (root, *Path(os.path.abspath(root)).parents)) if k is not None}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        depth = len(Path(dirpath).parts) - base_depth
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            key = _dir_key(os.path.join(dirpath, d))
            if key is None:
                continue
            if key in seen:
                if loops is not None:
                    loops.add(Path(dirpath) / d)
                continue
            seen.add(key)
            keep.append(d)
        dirnames[:] = [] if max_depth is not None and depth >= max_depth else keep
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def image_files(root: Path, loops: set[Path] | None = None) -> list[Path]:
    """Every image file under ``root`` (sorted; see :func:`walk_files` for hidden files and symlink loops)."""
    return [f for f in walk_files(root, loops=loops) if is_image_file(f)]


def loops_note(loops: set[Path], root: Path) -> str:
    """One line naming each skipped directory symlink loop, relative to the data root."""
    shown = []
    for p in sorted(loops):
        try:
            target = os.readlink(p)
        except OSError:
            target = "a folder already read"
        shown.append(f"{relative_to_root(p, root)} -> {target}")
    return (f"{len(loops)} directory symlink loop(s) skipped (each folder is read once): " + "; ".join(shown[:10])
            + (f"; ... and {len(shown) - 10} more" if len(shown) > 10 else ""))


def dicom_header(path: Path) -> dict[str, str]:
    """Selected header fields of a DICOM file (no pixel data read); empty dict when it cannot be parsed."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # a broken header is reported by the decoder later, not here
        return {}
    out: dict[str, str] = {}
    meta = metadata_from_header(ds)
    for column in ("laterality", "view", "exam_id"):
        if meta[column]:
            out[column] = meta[column]
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
