"""Class folders: ``root/<class>/**/*.png|jpg|dcm|...`` (BUSI, the Kaggle DBT set, any ImageFolder tree).

Also ``root/<split>/<class>/...`` (Kaggle-style train/val/test folders become the official split). BUSI-style
segmentation masks (``benign (1)_mask.png``, ``..._mask_1.png``) are recognised: excluded from the images and kept as
the ``mask`` metadata column of the image they belong to. DICOM files contribute header metadata (modality, view,
side, ...) and, where the header has one, the patient id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from breastclip.data.images import DICOM_SUFFIXES, IMAGE_SUFFIXES
from breastclip.data.manifest import Manifest
from breastclip.data.sources._files import (
    dicom_header,
    is_image_file,
    loops_note,
    relative_to_root,
    view_from_name,
    walk_files,
)

MASK_RE = re.compile(r"^(?P<stem>.+?)_mask(?:_\d+)?$", re.IGNORECASE)
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


def _source_error(msg: str) -> Exception:
    from breastclip.data.sources import SourceError

    return SourceError(msg)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _has_images(d: Path) -> bool:
    return any(is_image_file(f) for f in walk_files(d, max_depth=3))


def detect(path: Path) -> bool:
    """A directory with at least one subfolder holding image files."""
    if not path.is_dir():
        return False
    return any(_has_images(d) for d in _class_dirs(path))


def read_folders(
    path: str | Path,
    *,
    extensions: Iterable[str] | None = None,
    exclude_masks: bool = True,
    class_map: Mapping[str, str] | None = None,
    classes: Iterable[str] | None = None,
    dicom_metadata: bool = True,
    label_from: str = "folder",
    patient_from: str | None = None,
    views_from_names: bool = True,
    name: str | None = None,
    source: str = "folders",
) -> Manifest:
    """Read a class-folder tree; ``class_map`` renames (or merges) folders, ``classes`` keeps only those classes.

    ``extensions`` limits the image types (default: PNG, JPEG, TIFF, BMP, PGM/PPM, WebP, GIF, DICOM).
    ``label_from="dicom:<Keyword>"`` (e.g. ``dicom:Modality``) labels DICOM files by a header field instead of their
    folder, so a flat folder of DICOM files can be read too.
    ``patient_from="subfolder"`` takes the patient id from the first folder below the class folder
    (``root/<class>/<patient>/<image>``); any other string is a regular expression searched in the path below the
    class folder whose first group is the patient id (e.g. ``"^(P[0-9]+)_"``). Files it does not match are an error.
    ``views_from_names``: mammograms named by side and view (``1_L_CC.png``, ``R-MLO.png``, ``..._LEFT_CC.png``) get
    ``laterality`` and ``view`` columns from the name where no DICOM header gives them (breast-level evaluation
    needs them); files whose names hold no such token are left blank.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise _source_error(f"class-folder source {root} is not a directory")
    exts = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions) if extensions else IMAGE_SUFFIXES
    class_map = dict(class_map or {})

    if label_from != "folder":
        if not label_from.startswith("dicom:") or not label_from[6:]:
            raise ValueError(f"label_from must be 'folder' or 'dicom:<Keyword>', got {label_from!r}")
        return _read_dicom_labelled(root, label_from[6:], class_map, name, source)
    top = _class_dirs(root)
    split_dirs = [d for d in top if d.name.lower() in SPLIT_FOLDERS]
    groups: list[tuple[str, Path]] = []  # (split, class dir)
    if split_dirs and len(split_dirs) == len([d for d in top if _has_images(d)]):
        for sd in split_dirs:
            groups += [(SPLIT_FOLDERS[sd.name.lower()], d) for d in _class_dirs(sd)]
    else:
        groups = [("", d) for d in top]
    if not groups:
        raise _source_error(f"{root} has no class subfolders (expected root/<class>/<images>)")

    patient_re = None
    if patient_from not in (None, "subfolder"):
        try:
            patient_re = re.compile(patient_from)
        except re.error as e:
            raise ValueError(f"patient_from {patient_from!r} is not a regular expression: {e}") from e
    rows: list[dict] = []
    unmatched: list[str] = []
    n_masks = n_other = 0
    loops: set[Path] = set()
    for split, cdir in groups:
        label = class_map.get(cdir.name, cdir.name)
        files = list(walk_files(cdir, loops=loops))
        images: dict[str, dict] = {}
        masks: list[Path] = []
        for f in files:
            if not is_image_file(f, exts):
                n_other += 1
                continue
            if exclude_masks and MASK_RE.match(f.stem):
                masks.append(f)
                continue
            row = {"image": relative_to_root(f, root), "label": label, "split": split}
            below = f.relative_to(cdir).as_posix()
            if patient_from == "subfolder":
                if "/" in below:
                    row["patient_id"] = below.split("/", 1)[0]
                else:
                    unmatched.append(row["image"])
            elif patient_re is not None:
                hit = patient_re.search(below)
                if hit and hit.groups() and hit.group(1):
                    row["patient_id"] = hit.group(1)
                else:
                    unmatched.append(row["image"])
            if f.suffix.lower() in DICOM_SUFFIXES and dicom_metadata:
                header = dicom_header(f)
                pid = header.pop("dicom_patient_id", None)
                if pid is not None and patient_from is None:
                    row["patient_id"] = pid
                row.update(header)
            if views_from_names and not (row.get("laterality") and row.get("view")):
                for column, value in view_from_name(f).items():
                    row.setdefault(column, value)
            images[str(f.with_suffix(""))] = row
            rows.append(row)
        for m in masks:
            n_masks += 1
            hit = MASK_RE.match(m.stem)
            assert hit is not None  # masks were collected by this very pattern
            stem = hit.group("stem")
            owner = images.get(str(m.parent / stem))
            if owner is not None:
                rel = relative_to_root(m, root)
                owner["mask"] = f"{owner['mask']};{rel}" if owner.get("mask") else rel
    if not rows:
        raise _source_error(f"no image files ({', '.join(sorted(exts))}) found under the class folders of {root}")
    if unmatched:
        raise _source_error(f"{len(unmatched)} images under {root} give no patient id with patient_from="
                            f"{patient_from!r}: {unmatched[:10]}")

    wanted = list(classes) if classes is not None else None
    if wanted is not None:
        unknown = sorted(set(wanted) - {r["label"] for r in rows})
        if unknown:
            raise _source_error(f"classes {unknown} not found under {root}; folders give "
                                f"{sorted({r['label'] for r in rows})}")
        rows = [r for r in rows if r["label"] in wanted]
    if n_masks:
        for r in rows:
            r.setdefault("mask", "")
    if any("patient_id" in r for r in rows):
        for r in rows:
            r.setdefault("patient_id", None)
    named_views = sum(1 for r in rows if r.get("view"))
    if named_views:
        for r in rows:
            r.setdefault("laterality", "")
            r.setdefault("view", "")
    manifest = Manifest.from_records(rows, root, name=name or root.name, source=source, classes=wanted)
    if n_masks:
        manifest.notes.append(f"{n_masks} segmentation mask files recognised and excluded (kept in the 'mask' column)")
    if n_other:
        manifest.notes.append(f"{n_other} non-image files ignored")
    if loops:
        manifest.notes.append(loops_note(loops, root))
    if named_views:
        manifest.notes.append(f"laterality and view of {named_views} of {len(rows)} images taken from the DICOM header "
                              "or the file name (e.g. 1_L_CC.png)")
    if any(g[0] for g in groups):
        manifest.notes.append("split taken from the train/val/test folders")
    return manifest


def _read_dicom_labelled(root: Path, keyword: str, class_map: dict, name: str | None, source: str) -> Manifest:
    """Every DICOM file under ``root``, labelled by the header field ``keyword``."""
    import pydicom

    rows, unlabelled, unreadable = [], [], []
    for f in walk_files(root):
        if f.suffix.lower() not in DICOM_SUFFIXES:
            continue
        try:
            value = pydicom.dcmread(f, stop_before_pixels=True).get(keyword)
        except Exception as e:  # not DICOM after all: name it
            unreadable.append(f"{f.name} ({type(e).__name__})")
            continue
        if value is None or not str(value).strip():
            unlabelled.append(f.name)
            continue
        header = dicom_header(f)
        row = {"image": relative_to_root(f, root), "label": class_map.get(str(value).strip(), str(value).strip()),
               "patient_id": header.pop("dicom_patient_id", None)}
        row.update(header)
        rows.append(row)
    if unreadable or unlabelled:
        raise _source_error(f"{len(unreadable) + len(unlabelled)} DICOM files under {root} cannot be labelled by "
                            f"{keyword}: unreadable {unreadable[:10]}, without {keyword} {unlabelled[:10]}")
    if not rows:
        raise _source_error(f"no DICOM files (.dcm) under {root} to label by {keyword}")
    manifest = Manifest.from_records(rows, root, name=name or root.name, source=source)
    manifest.notes.append(f"labels from the DICOM header field {keyword}")
    return manifest
