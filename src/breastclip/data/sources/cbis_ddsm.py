"""CBIS-DDSM (Lee et al. 2017): the four official case-description CSVs (mass/calc x train/test) to a manifest.

- Label from ``pathology``: binary (MALIGNANT vs BENIGN + BENIGN_WITHOUT_CALLBACK) or ``labels="three_class"``.
- ``image_type``: ``full`` mammogram (one row per image; an image with several abnormalities takes the most severe
  pathology and counts them in ``n_abnormalities``), ``crop`` (cropped ROI) or ``mask`` (ROI mask), one row per
  abnormality.
- Paths repaired for the TCIA DICOM tree and the Kaggle JPEG copy (see ``_cbis_paths``); rows that cannot be repaired
  are skipped and counted in the notes.
- Metadata normalised across the files (``breast_density`` vs ``breast density`` ...): ``lesion_type``,
  ``breast_density``, ``side``, ``view``, ``abnormality_id``, ``abnormality_type``, ``mass_shape``, ``mass_margins``,
  ``calc_type``, ``calc_distribution``, ``birads``, ``subtlety``, ``pathology``. Missing categorical values are
  filled with the mode of their own lesion type (as the ResNet18 notebook does); ``one_hot=True`` adds indicator
  columns. ``split`` is the official train/test split; ``patient_id`` is ``P_00001``.
- Views, breasts, exams: ``view`` (CC / MLO), ``laterality`` (L / R from ``left or right breast``) and ``exam_id``
  (the patient: DDSM holds one screening exam per case) for breast- and exam-level evaluation.
- Crop vs mask: decided from the files (SeriesDescription, else binary vs grey content, else size), never from the
  folder names alone, which real downloads swap (see ``_cbis_paths``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from breastclip.data.manifest import Manifest
from breastclip.data.sources._cbis_paths import DicomTree, KaggleIndex, clean_csv_path
from breastclip.data.sources._files import relative_to_root, walk_files

FILE_RE = re.compile(r"^(?P<lesion>mass|calc)_case_description_(?P<split>train|test)_set\.csv$", re.IGNORECASE)
COLUMN_ALIASES = {
    "patient_id": "patient_id", "breast_density": "breast_density", "breast density": "breast_density",
    "left or right breast": "side", "image view": "view", "abnormality id": "abnormality_id",
    "abnormality type": "abnormality_type", "mass shape": "mass_shape", "mass margins": "mass_margins",
    "calc type": "calc_type", "calc distribution": "calc_distribution", "assessment": "birads",
    "pathology": "pathology", "subtlety": "subtlety", "image file path": "full_path",
    "cropped image file path": "crop_path", "roi mask file path": "mask_path",
}
REQUIRED = ("patient_id", "pathology", "full_path", "crop_path", "mask_path")
CATEGORICAL = {"mass": ("mass_shape", "mass_margins"), "calc": ("calc_type", "calc_distribution"),
               "all": ("breast_density", "side", "view", "abnormality_type", "birads", "subtlety")}
ONE_HOT = ("side", "view", "abnormality_type", "mass_shape", "mass_margins", "calc_type", "calc_distribution")
SEVERITY = {"MALIGNANT": 2, "BENIGN": 1, "BENIGN_WITHOUT_CALLBACK": 0}
BINARY = {"MALIGNANT": "malignant", "BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign"}
THREE = {"MALIGNANT": "malignant", "BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign_without_callback"}


def _source_error(msg: str) -> Exception:
    from breastclip.data.sources import SourceError

    return SourceError(msg)


def find_csvs(path: Path) -> list[Path]:
    """The case-description CSVs at ``path`` (a file, or a folder searched two levels deep)."""
    if path.is_file():
        return [path]
    return [f for f in walk_files(path, max_depth=2) if FILE_RE.match(f.name)]


def detect(path: Path) -> bool:
    if path.is_file():
        return bool(FILE_RE.match(path.name))
    return path.is_dir() and bool(find_csvs(path))


def _load_csv(csv: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(csv, dtype=str)
    except Exception as e:
        raise _source_error(f"{csv}: cannot be read as CSV ({e})") from e
    renamed = {c: COLUMN_ALIASES.get(" ".join(str(c).strip().lower().split()), None) for c in raw.columns}
    df = raw.rename(columns={c: n for c, n in renamed.items() if n})
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        wanted = {v: k for k, v in COLUMN_ALIASES.items()}
        hints = []
        for c in missing:
            close = difflib.get_close_matches(wanted[c], [str(x).lower() for x in raw.columns], n=1, cutoff=0.6)
            hints.append(f"'{wanted[c]}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise _source_error(f"{csv} is not a CBIS-DDSM case-description file: missing columns {', '.join(hints)}")
    m = FILE_RE.match(csv.name)
    lesion = m["lesion"].lower() if m else ("mass" if "mass_shape" in df.columns else "calc")
    df["lesion_type"] = lesion
    df["split"] = m["split"].lower() if m else ""
    df["source_csv"] = csv.name
    df["pathology"] = df["pathology"].fillna("").str.strip().str.upper()
    bad = df.index[~df["pathology"].isin(SEVERITY)]
    if len(bad):
        raise _source_error(f"{csv}: {len(bad)} rows have an unknown pathology "
                            f"{sorted(df.loc[bad, 'pathology'].unique())[:5]} (rows {[int(i) + 2 for i in bad[:10]]}; "
                            f"expected {list(SEVERITY)})")
    return df


def _fill_and_encode(df: pd.DataFrame, fill_missing: bool, one_hot: bool, notes: list[str]) -> pd.DataFrame:
    filled: dict[str, int] = {}
    if "breast_density" in df.columns:  # ACR density is 1-4; a few calc rows say 0, i.e. unknown
        zero = df["breast_density"].astype(str).str.strip() == "0"
        if zero.any():
            df.loc[zero, "breast_density"] = pd.NA
            notes.append(f"{int(zero.sum())} rows with breast_density 0 (not an ACR category) treated as missing")
    for lesion in ("mass", "calc"):
        rows = df["lesion_type"] == lesion
        for col in CATEGORICAL[lesion] + CATEGORICAL["all"]:
            if col not in df.columns or not rows.any():
                continue
            values = df.loc[rows, col]
            blank = values.isna() | (values.astype(str).str.strip().isin(["", "NA", "N/A", "nan"]))
            if fill_missing and blank.any() and (~blank).any():
                df.loc[rows & blank.reindex(df.index, fill_value=False), col] = values[~blank].mode().iloc[0]
                filled[f"{lesion}.{col}"] = int(blank.sum())
    for lesion, other in (("mass", "calc"), ("calc", "mass")):
        for col in CATEGORICAL[other]:
            if col in df.columns:
                df.loc[df["lesion_type"] == lesion, col] = df.loc[df["lesion_type"] == lesion, col].fillna("")
    if filled:
        notes.append("missing categorical values filled with the mode of their lesion type: "
                     + ", ".join(f"{k} {v}" for k, v in filled.items()))
    if one_hot:
        cols = [c for c in ONE_HOT if c in df.columns]
        dummies = pd.get_dummies(df[cols].replace("", pd.NA), prefix=cols, dtype=int)
        dummies.columns = [re.sub(r"[^0-9A-Za-z_]+", "_", c).strip("_").lower() for c in dummies.columns]
        df = pd.concat([df, dummies], axis=1)
    return df


def _resolver(base: Path, image_root: Path | None, layout: str, notes: list[str]):
    root = image_root or base
    info = [p for p in (base / "dicom_info.csv", base / "csv" / "dicom_info.csv", root / "csv" / "dicom_info.csv")
            if p.is_file()]
    if layout == "auto":
        layout = "jpeg" if info else "dicom"
    if layout == "jpeg":
        if not info:
            raise _source_error(f"layout 'jpeg' needs the Kaggle copy's csv/dicom_info.csv under {base} or {root}")
        kaggle_root = image_root or info[0].parent.parent
        notes.append(f"Kaggle JPEG layout: {info[0]}")
        return kaggle_root, KaggleIndex(info[0], kaggle_root)
    if layout == "dicom":
        tree = DicomTree(root)
        if tree.n_files == 0:
            notes.append(f"no .dcm files under {root}: image paths kept as written in the CSVs")
            return root, None
        notes.append(f"TCIA DICOM layout: {tree.n_files} .dcm files under {root}")
        return root, tree
    if layout == "none":
        return root, None
    raise ValueError(f"layout must be 'auto', 'dicom', 'jpeg' or 'none', got {layout!r}")


def read_cbis_ddsm(
    path: str | Path,
    *,
    image_type: str = "full",
    labels: str = "binary",
    abnormality: str | Iterable[str] = ("mass", "calc"),
    subsets: str | Iterable[str] = ("train", "test"),
    image_root: str | Path | None = None,
    layout: str = "auto",
    fill_missing: bool = True,
    one_hot: bool = False,
    name: str | None = None,
    source: str = "cbis_ddsm",
) -> Manifest:
    """Read CBIS-DDSM case-description CSVs (a folder or one file) and repair their image paths."""
    path = Path(path).expanduser()
    if image_type not in ("full", "crop", "mask"):
        raise ValueError(f"image_type must be 'full', 'crop' or 'mask', got {image_type!r}")
    if labels not in ("binary", "three_class"):
        raise ValueError(f"labels must be 'binary' or 'three_class', got {labels!r}")
    lesions = {abnormality} if isinstance(abnormality, str) else set(abnormality)
    lesions = {"calc" if a.lower().startswith("calc") else "mass" if a.lower().startswith("mass") else a for a in lesions}
    parts = {subsets} if isinstance(subsets, str) else set(subsets)
    if not lesions or not lesions <= {"mass", "calc"} or not parts or not parts <= {"train", "test"}:
        raise ValueError(f"abnormality must be among ['mass', 'calc'] and subsets among ['train', 'test']; got "
                         f"{sorted(map(str, lesions))} and {sorted(map(str, parts))}")
    csvs = find_csvs(path)
    if not csvs:
        raise _source_error(f"no CBIS-DDSM case-description CSVs ({{mass,calc}}_case_description_{{train,test}}_set.csv) "
                            f"under {path}")
    frames = [_load_csv(c) for c in csvs]
    df = pd.concat(frames, ignore_index=True)
    df = df[df["lesion_type"].isin(lesions) & (df["split"].isin(parts) | (df["split"] == ""))].reset_index(drop=True)
    if df.empty:
        raise _source_error(f"no rows for abnormality {sorted(lesions)} and subsets {sorted(parts)} in {path}")
    notes: list[str] = [f"read {len(csvs)} case-description CSVs: {sorted(c.name for c in csvs)}"]
    base = path.parent if path.is_file() else path
    if base.name.lower() == "csv" and (base.parent / "jpeg").is_dir():
        base = base.parent
    root, resolver = _resolver(base, Path(image_root).expanduser() if image_root else None, layout, notes)

    col = f"{image_type}_path"
    images: list[str | None] = []
    failures: list[str] = []
    for raw in df[col]:
        if resolver is None:
            images.append(clean_csv_path(raw) or None)
            continue
        found, why = resolver.resolve(raw, image_type)
        images.append(relative_to_root(found, root) if found is not None else None)
        if found is None:
            failures.append(f"{clean_csv_path(raw)}: {why}")
    df["image"] = images
    df["case"] = df[col].map(lambda v: (clean_csv_path(v).split("/") or [""])[0].strip())
    if failures:
        notes.append(f"{len(failures)} of {len(df)} rows skipped: their {image_type} image could not be found, e.g. "
                     + "; ".join(failures[:5]))
    df = df[df["image"].notna()].reset_index(drop=True)
    if df.empty:
        raise _source_error(f"none of the CBIS-DDSM {image_type} images could be found under {root} "
                            f"({len(failures)} rows), e.g. {failures[:3]}")

    df = _fill_and_encode(df, fill_missing, one_hot, notes)
    mapping = BINARY if labels == "binary" else THREE
    df["label"] = df["pathology"].map(mapping)
    if image_type == "full":
        df["_sev"] = df["pathology"].map(SEVERITY)
        df["n_abnormalities"] = df.groupby("image")["image"].transform("size")
        merged = int((df["n_abnormalities"] > 1).sum())
        df = df.sort_values(["image", "_sev"], ascending=[True, False]).drop_duplicates("image").drop(columns="_sev")
        if merged:
            notes.append(f"{merged} abnormality rows share a full mammogram: one row per image, labelled with its most "
                         "severe pathology (n_abnormalities counts them)")
        df["id"] = source + ":" + df["case"] + ":full"
    else:
        df["id"] = source + ":" + df["case"] + ":" + image_type
    both = set(df.loc[df["split"] == "train", "patient_id"]) & set(df.loc[df["split"] == "test", "patient_id"])
    if both:
        notes.append(f"{len(both)} patients appear in both the official train and test sets (e.g. {sorted(both)[:3]}): "
                     "a patient-level leak in the official split")
    # views, breasts, exams: DDSM digitised one screening exam (CC + MLO of both breasts) per case, so a patient's
    # images form one exam; the breast is patient + laterality
    df["laterality"] = df["side"].astype(str).str.strip().str.upper().map({"LEFT": "L", "RIGHT": "R"}).fillna("")
    df["exam_id"] = df["patient_id"].astype(str)
    keep = ["id", "image", "label", "patient_id", "split", "laterality", "view", "exam_id", "lesion_type",
            "breast_density", "side",
            "abnormality_id", "abnormality_type", "mass_shape", "mass_margins", "calc_type", "calc_distribution",
            "birads", "subtlety", "pathology"]
    extra = ["n_abnormalities"] if image_type == "full" else []
    dummies = [c for c in df.columns if one_hot and any(c.startswith(f"{o}_") for o in ONE_HOT) and c not in keep]
    out = df[[c for c in keep if c in df.columns] + extra + dummies].copy()
    out["image_type"] = image_type
    classes = ["benign", "malignant"] if labels == "binary" else ["benign_without_callback", "benign", "malignant"]
    manifest = Manifest.from_records(out.sort_values("id").reset_index(drop=True), root, name=name or "cbis_ddsm",
                                     source=source, classes=classes)
    manifest.notes[:0] = notes
    return manifest
