"""Path repair for CBIS-DDSM: map the case-description CSV paths onto the files actually on disk.

The CSVs name ``<case>/<study uid>/<series uid>/00000N.dcm`` with stray whitespace and newlines. On disk:

- **TCIA DICOM tree** (NBIA download): ``[CBIS-DDSM/]<case>/<study>/<series>/<file>.dcm`` where the study/series folder
  names are the UIDs ("classic" names) or descriptive (``07-20-2016-DDSM-74994/1.000000-full mammogram images-24515``)
  and file names vary (``000000.dcm`` or ``1-1.dcm``). Repaired through the NBIA ``metadata.csv`` (series UID ->
  ``File Location``) when present, else by the case folder (patient/side/view prefix), then the series UID, then the
  series description, then (crop vs mask in one series) the image size: the ROI mask has the full mammogram's size,
  the crop is smaller. The files decide over the folder names: real downloads hold "ROI mask images" folders whose
  file is a cropped image (its SeriesDescription says so), so a file's kind is its SeriesDescription, else its
  content (an ROI mask is binary, a crop grey), and only then its folder's name.
- **Kaggle JPEG copy** (``csv/dicom_info.csv`` + ``jpeg/<series uid>/1-N.jpg``): ``dicom_info.csv`` maps a series UID and
  its SeriesDescription (full mammogram images / cropped images / ROI mask images) to ``image_path``; between the
  crop and the mask of one series the JPEGs themselves decide (binary = mask), as those labels are swapped too.

Rows that cannot be repaired are reported, never guessed.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd

CASE_RE = re.compile(r"^(Mass|Calc)-(Training|Test)_P_\d+_(LEFT|RIGHT)_(CC|MLO)(_\d+)?$", re.IGNORECASE)
KINDS = {"full": "full mammogram images", "crop": "cropped images", "mask": "roi mask images"}


def clean_csv_path(value: object) -> str:
    """Strip the whitespace, newlines and quotes the official CSVs carry; forward slashes."""
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return text.strip().strip('"').strip().replace("\\", "/")


def kind_of_description(text: str) -> str | None:
    t = text.lower()
    if "full mammogram" in t:
        return "full"
    if "crop" in t:
        return "crop"
    if "mask" in t:
        return "mask"
    return None


def _image_area(path: Path) -> int | None:
    try:
        if path.suffix.lower() == ".dcm":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            return int(ds.Rows) * int(ds.Columns)
        from PIL import Image

        with Image.open(path) as im:
            return im.size[0] * im.size[1]
    except Exception:
        return None


def looks_binary(path: Path) -> bool | None:
    """True when the image holds two levels only (an ROI mask, JPEG ringing tolerated), False for a grey image
    (crop or mammogram), None when it cannot be read or is constant."""
    import numpy as np

    try:
        if path.suffix.lower() == ".dcm":
            import pydicom

            arr = np.asarray(pydicom.dcmread(path, force=True).pixel_array)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.draft("L", (256, 256))
                arr = np.asarray(im.convert("L"))
    except Exception:
        return None
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return None  # a constant image says nothing
    tol = 0.08 * (hi - lo)
    extreme = (arr <= lo + tol) | (arr >= hi - tol)
    return bool(extreme.mean() > 0.98)


def pick_by_content(paths: list[Path], kind: str) -> Path | None:
    """Among files of one abnormality, the ROI mask is the binary one and the crop the grey one."""
    if kind not in ("crop", "mask") or len(paths) < 2:
        return None
    binary = [looks_binary(p) for p in paths]
    want = [p for p, b in zip(paths, binary, strict=True) if b is (kind == "mask")]
    return want[0] if len(want) == 1 else None


def pick_crop_or_mask(paths: list[Path], kind: str) -> Path | None:
    """Between a crop and a mask of one abnormality, the mask is the larger image (full mammogram size)."""
    if len(paths) != 2 or kind not in ("crop", "mask"):
        return None
    a0, a1 = (_image_area(p) for p in paths)
    if a0 is None or a1 is None or a0 == a1:
        return None
    small, large = (paths[0], paths[1]) if a0 < a1 else (paths[1], paths[0])
    return small if kind == "crop" else large


class DicomTree:
    """Index of the ``.dcm`` files under a TCIA CBIS-DDSM download, keyed by case folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_case: dict[str, list[Path]] = defaultdict(list)
        self.n_files = 0
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in filenames:
                if not f.lower().endswith(".dcm") or f.startswith("."):
                    continue
                p = Path(dirpath) / f
                for part in p.relative_to(root).parts[:-1]:
                    if CASE_RE.match(part.strip()):
                        self.by_case[part.strip().upper()].append(p)
                        break
                self.n_files += 1
        self._desc_cache: dict[Path, str | None] = {}
        self.series_folders = _nbia_series_folders(root)

    def _by_series(self, series_uid: str | None, kind: str) -> Path | None:
        """The file in the series folder that the NBIA download's metadata.csv names for ``series_uid``."""
        folder = self.series_folders.get(series_uid or "")
        files = sorted(folder.glob("*.dcm")) if folder is not None and folder.is_dir() else []
        if len(files) == 1:
            return files[0]
        typed = [f for f in files if self._kind_from_header(f) == kind]
        if len(typed) == 1:
            return typed[0]
        return pick_crop_or_mask(files, kind)

    def _kind_from_header(self, path: Path) -> str | None:
        if path not in self._desc_cache:
            import pydicom

            try:
                desc = str(pydicom.dcmread(path, stop_before_pixels=True, force=True).get("SeriesDescription", ""))
            except Exception:
                desc = ""
            self._desc_cache[path] = kind_of_description(desc) if desc else None
        return self._desc_cache[path]

    def _parts(self, path: Path) -> tuple[str, ...]:
        return path.relative_to(self.root).parts

    def kind_of(self, path: Path) -> tuple[str | None, str]:
        """What a file holds, decided from the file itself first: its SeriesDescription, else binary (mask) vs
        grey content when it sits among crops/masks, else the descriptive folder name. (kind, how)."""
        k = self._kind_from_header(path)
        if k:
            return k, "SeriesDescription"
        folder = next((k for k in map(kind_of_description, self._parts(path)[1:-1]) if k), None)
        if folder in ("crop", "mask"):
            binary = looks_binary(path)
            if binary is not None:
                return ("mask" if binary else "crop"), "content"
        return folder, "folder name"

    def resolve(self, csv_path: str, kind: str) -> tuple[Path | None, str]:
        """The file for one CSV path, or None and why."""
        rel = clean_csv_path(csv_path)
        for base in (self.root, self.root / "CBIS-DDSM"):
            hit = base / rel
            if hit.is_file():
                if kind in ("crop", "mask"):  # the CSVs sometimes swap 000000/000001 between crop and mask
                    siblings = sorted(hit.parent.glob("*.dcm"))
                    typed = [p for p in siblings if self._kind_from_header(p) == kind]
                    picked = typed[0] if len(typed) == 1 else (pick_by_content(siblings, kind)
                                                               or pick_crop_or_mask(siblings, kind))
                    if picked is not None:
                        return picked, "exact" if picked == hit else "repaired (crop/mask swapped in the CSV)"
                return hit, "exact"
        parts = [p.strip() for p in rel.split("/") if p.strip()]
        if not parts:
            return None, "empty path"
        series_uid = parts[2] if len(parts) > 2 else None
        from_metadata = self._by_series(series_uid, kind)
        if from_metadata is not None:
            return from_metadata, "repaired (metadata.csv)"
        candidates = self.by_case.get(parts[0].upper(), [])
        if not candidates:
            return None, f"no folder for case {parts[0]}"
        by_uid = [p for p in candidates if series_uid and series_uid in {q.strip() for q in self._parts(p)}]
        pool = by_uid or candidates
        if len(pool) == 1 and kind == "full":
            return pool[0], "repaired"
        kinds = [(p, *self.kind_of(p)) for p in pool]
        if any(k for _, k, _ in kinds):
            mislabelled = [p for p, k, _ in kinds if k != kind and kind_of_description(" ".join(self._parts(p)[1:-1]))
                           == kind]
            pool = [p for p, k, _ in kinds if k == kind]
            if not pool and mislabelled:
                return None, (f"no {KINDS[kind]} file for case {parts[0]}: the file in its '{KINDS[kind]}' folder is "
                              f"a {KINDS[self.kind_of(mislabelled[0])[0] or kind]} file by its "
                              f"{self.kind_of(mislabelled[0])[1]} (folders swapped in the download)")
        if len(pool) == 1:
            how = next(h for p, _, h in kinds if p == pool[0]) if kinds else ""
            return pool[0], f"repaired ({how})" if how else "repaired"
        if len(pool) > 1:
            picked = pick_crop_or_mask(pool, kind)
            if picked is not None:
                return picked, "repaired (size)"
            same_name = [p for p in pool if p.name == parts[-1]]
            if len(same_name) == 1 and kind == "full":
                return same_name[0], "repaired"
            return None, f"{len(pool)} candidate files for case {parts[0]}"
        return None, f"no {KINDS[kind]} file for case {parts[0]}"


def _nbia_series_folders(root: Path) -> dict[str, Path]:
    """Series UID -> folder from the ``metadata.csv`` the NBIA Data Retriever writes beside ``CBIS-DDSM/``."""
    out: dict[str, Path] = {}
    for meta in (root / "metadata.csv", *sorted(root.glob("*/metadata.csv"))):
        if not meta.is_file():
            continue
        try:
            table = pd.read_csv(meta, dtype=str, keep_default_na=False)
        except Exception:
            continue
        if not {"Series UID", "File Location"} <= set(table.columns):
            continue
        for uid, loc in zip(table["Series UID"], table["File Location"], strict=True):
            rel = loc.strip().replace("\\", "/").removeprefix("./")
            out[uid.strip()] = meta.parent / rel
    return out


class KaggleIndex:
    """The Kaggle copy's ``dicom_info.csv``: series UID (+ description) -> JPEG path."""

    def __init__(self, dicom_info: Path, root: Path) -> None:
        self.root = root
        info = pd.read_csv(dicom_info, dtype=str, keep_default_na=False)
        needed = {"image_path", "SeriesInstanceUID"}
        if not needed <= set(info.columns):
            from breastclip.data.sources import SourceError

            raise SourceError(f"{dicom_info} lacks columns {sorted(needed - set(info.columns))}; "
                              f"columns are {list(info.columns)[:20]}")
        desc = info["SeriesDescription"] if "SeriesDescription" in info.columns else pd.Series("", index=info.index)
        self.by_key: dict[tuple[str, str | None], list[str]] = defaultdict(list)
        self.by_uid: dict[str, list[str]] = defaultdict(list)
        for uid, d, img in zip(info["SeriesInstanceUID"], desc, info["image_path"], strict=True):
            uid = uid.strip()
            self.by_key[(uid, kind_of_description(d))].append(img.strip())
            self.by_uid[uid].append(img.strip())

    def _local(self, image_path: str) -> Path | None:
        parts = Path(clean_csv_path(image_path)).parts
        tails = [Path(*parts[i:]) for i in range(len(parts)) if parts[i] == "jpeg"] + [Path(*parts), Path(*parts[1:])]
        for tail in tails:
            if str(tail) not in ("", ".") and (self.root / tail).is_file():
                return self.root / tail
        return None

    def resolve(self, csv_path: str, kind: str) -> tuple[Path | None, str]:
        parts = [p.strip() for p in clean_csv_path(csv_path).split("/") if p.strip()]
        if len(parts) < 3:
            return None, "CSV path has no series UID"
        uid = parts[2]
        if kind in ("crop", "mask"):  # crop and mask share a series: the files decide, not dicom_info's labels
            everything = [p for p in (self._local(x) for x in self.by_uid.get(uid, [])) if p is not None]
            picked = pick_by_content(everything, kind)
            if picked is not None:
                return picked, "repaired (content)"
        listed = self.by_key.get((uid, kind)) or []
        if not listed and not any(k[0] == uid and k[1] for k in self.by_key):
            listed = self.by_uid.get(uid, [])  # no descriptions for this series: any of its files
        local = [p for p in (self._local(x) for x in listed) if p is not None]
        if not listed:
            folder = self.root / "jpeg" / uid
            files = sorted(folder.glob("*.jp*g")) if folder.is_dir() else []
            if len(files) == 1:
                return files[0], "repaired (folder)"
            picked = pick_crop_or_mask(files, kind)
            if picked is not None:
                return picked, "repaired (size)"
            return None, f"series {uid} not in dicom_info.csv"
        if len(local) == 1:
            return local[0], "repaired"
        if len(local) > 1:
            picked = pick_crop_or_mask(local, kind)
            if picked is not None:
                return picked, "repaired (size)"
            return None, f"{len(local)} candidate files for series {uid}"
        return None, f"series {uid} listed in dicom_info.csv but {listed[0]} is not on disk"
