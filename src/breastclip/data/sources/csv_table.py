"""Generic CSV: one row per image, with column mapping (image, label, patient, split, metadata).

Paths are relative to the CSV's folder (or ``root``). Column names are guessed from common spellings when not
given (``path``/``image``/``filename``..., ``label``/``class``/``target``...); a named column that does not exist is
an error with a did-you-mean hint.

Files are read as UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8" writes one), with the delimiter
sniffed among comma, semicolon, tab and pipe unless ``sep`` names it.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from breastclip.data.images import DICOM_SUFFIXES
from breastclip.data.manifest import Manifest
from breastclip.data.sources._files import dicom_header

IMAGE_CANDIDATES = ("image", "path", "image_path", "filepath", "file_path", "filename", "file", "img", "image_file")
LABEL_CANDIDATES = ("label", "class", "target", "diagnosis", "pathology", "category", "y")
PATIENT_CANDIDATES = ("patient_id", "patient", "patientid", "subject_id", "subject", "case_id")
SPLIT_CANDIDATES = ("split", "subset", "fold_split", "partition", "set")
# mammography: the Manifest's view / laterality / exam_id columns, from common spellings (CBIS-DDSM, VinDr, EMBED)
VIEW_CANDIDATES = ("view", "image view", "image_view", "view_position", "viewposition")
LATERALITY_CANDIDATES = ("laterality", "image_laterality", "imagelaterality", "left or right breast",
                         "breast_side")  # a bare "side" column is not guessed (it may mean something else)
EXAM_CANDIDATES = ("exam_id", "exam", "study_id", "studyinstanceuid", "study_instance_uid", "study",
                   "accession_number")
TABLE_NAMES = ("labels.csv", "manifest.csv", "metadata.csv", "dataset.csv")
DELIMITERS = ",;\t|"
ENCODING = "utf-8-sig"  # UTF-8, and a leading byte-order mark is dropped instead of sticking to the first column
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test", "": ""}


def _source_error(msg: str) -> Exception:
    from breastclip.data.sources import SourceError

    return SourceError(msg)


def _table_in(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() in {".csv", ".tsv"} else None
    for n in TABLE_NAMES:
        if (path / n).is_file():
            return path / n
    return None


def sniff_delimiter(table: Path) -> str:
    """The delimiter of ``table`` among comma, semicolon, tab and pipe (comma when the sample is ambiguous)."""
    with open(table, encoding=ENCODING, newline="") as f:
        sample = f.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def read_table(table: Path, *, sep: str | None = None, nrows: int | None = None) -> pd.DataFrame:
    """A CSV as text columns, BOM-tolerant and delimiter-sniffing; an unreadable file is a SourceError naming it."""
    try:
        delimiter = sep or sniff_delimiter(table)
        return pd.read_csv(table, sep=delimiter, encoding=ENCODING, dtype=str, keep_default_na=False, nrows=nrows)
    except UnicodeDecodeError as e:
        raise _source_error(f"{table}: not UTF-8 text ({e.reason} at byte {e.start}); save it as 'CSV UTF-8' "
                            "(Excel) or convert it with iconv") from e
    except (OSError, ValueError, csv.Error) as e:
        raise _source_error(f"{table}: cannot be read as CSV ({e})") from e


def detect(path: Path) -> bool:
    """A CSV file, or a folder with a ``labels.csv``/``manifest.csv``, whose columns include an image and a label."""
    table = _table_in(path)
    if table is None:
        return False
    try:
        cols = [str(c).strip().lower() for c in read_table(table, nrows=0).columns]
    except Exception:
        return False
    return any(c in cols for c in IMAGE_CANDIDATES) and any(c in cols for c in LABEL_CANDIDATES)


def _pick(columns: list[str], given: str | None, candidates: Iterable[str], what: str, table: Path,
          required: bool) -> str | None:
    if given is not None:
        if given in columns:
            return given
        close = difflib.get_close_matches(given, columns, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise _source_error(f"{table}: no {what} column '{given}'{hint}; columns are {columns}")
    lowered = {c.strip().lower(): c for c in columns}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    if required:
        raise _source_error(f"{table}: cannot find the {what} column (tried {list(candidates)}); columns are "
                            f"{columns}; name it with the {what}_col option")
    return None


def _fill_from_dicom(out: pd.DataFrame, base: Path, notes: list[str]) -> None:
    """view / laterality / exam_id of DICOM rows from their headers, where the table leaves them blank."""
    dicom = out["image"].map(lambda p: Path(p).suffix.lower() in DICOM_SUFFIXES)
    if not dicom.any():
        return
    filled = 0
    for i in out.index[dicom]:
        p = Path(out.at[i, "image"])
        header = dicom_header(p if p.is_absolute() else base / p)
        for column in ("view", "laterality", "exam_id"):
            current = out.at[i, column] if column in out.columns else ""
            if header.get(column) and (current is None or str(current).strip() in ("", "nan")):
                if column not in out.columns:
                    out[column] = ""
                out.at[i, column] = header[column]
                filled += 1
    if filled:
        notes.append(f"{filled} view / laterality / exam_id value(s) read from DICOM headers")


def read_csv_table(
    path: str | Path,
    *,
    image_col: str | None = None,
    label_col: str | None = None,
    patient_col: str | None = None,
    split_col: str | None = None,
    view_col: str | None = None,
    laterality_col: str | None = None,
    exam_col: str | None = None,
    dicom_metadata: bool = True,
    metadata_cols: Iterable[str] | None = None,
    root: str | Path | None = None,
    label_map: Mapping[str, str] | None = None,
    classes: Iterable[str] | None = None,
    sep: str | None = None,
    name: str | None = None,
    source: str = "csv",
) -> Manifest:
    """Read a CSV of images; ``metadata_cols`` None keeps every other column as metadata.

    ``view_col`` / ``laterality_col`` / ``exam_col`` name the columns that become the Manifest's ``view``,
    ``laterality`` and ``exam_id`` (guessed from common spellings when not given: ``image view``, ``left or right
    breast``, ``study_id``...). With ``dicom_metadata``, DICOM images fill those still missing from their headers
    (ViewPosition, ImageLaterality, StudyInstanceUID).

    ``label_map`` renames (or merges) labels; ``classes`` fixes the class order and drops rows of other labels.
    """
    given = Path(path).expanduser()
    table = _table_in(given)
    if table is None:
        raise _source_error(f"{given}: no CSV file found (looked for {list(TABLE_NAMES)})")
    if _is_breastclip_manifest(table) and not any((image_col, label_col, patient_col, split_col, metadata_cols, root,
                                                   label_map, classes)):
        return Manifest.from_csv(table)  # written by Manifest.to_csv: its sidecar restores root, classes, notes
    df = read_table(table, sep=sep)
    df.columns = [str(c).strip() for c in df.columns]
    cols = list(df.columns)
    icol = _pick(cols, image_col, IMAGE_CANDIDATES, "image", table, True)
    lcol = _pick(cols, label_col, LABEL_CANDIDATES, "label", table, True)
    pcol = _pick(cols, patient_col, PATIENT_CANDIDATES, "patient", table, False)
    scol = _pick(cols, split_col, SPLIT_CANDIDATES, "split", table, False)
    mammo = {"view": _pick(cols, view_col, VIEW_CANDIDATES, "view", table, False),
             "laterality": _pick(cols, laterality_col, LATERALITY_CANDIDATES, "laterality", table, False),
             "exam_id": _pick(cols, exam_col, EXAM_CANDIDATES, "exam", table, False)}
    used = {c for c in (icol, lcol, pcol, scol, *mammo.values()) if c}
    if metadata_cols is None:
        meta = [c for c in cols if c not in used and c != "id"]
    else:
        meta = list(metadata_cols)
        for m in meta:
            _pick(cols, m, (), "metadata", table, True)
    base = Path(root).expanduser() if root is not None else table.parent

    out = pd.DataFrame({"image": df[icol].str.strip(), "label": df[lcol].str.strip()})
    if label_map:
        out["label"] = out["label"].map(lambda v: label_map.get(v, v))
    out["patient_id"] = df[pcol].str.strip() if pcol else None
    notes: list[str] = []
    if scol:
        raw = df[scol].str.strip().str.lower()
        bad = sorted(set(raw) - set(SPLIT_ALIASES))
        if bad:
            raise _source_error(f"{table}: split column '{scol}' has values {bad}; expected train/val/test (or blank)")
        out["split"] = raw.map(SPLIT_ALIASES)
        notes.append(f"split taken from column '{scol}'")
    for m in meta:
        name_m = f"meta_{m}" if m in {"image", "label", "patient_id", "split", "source", *mammo} else m
        out[name_m] = df[m]
    for column, src in mammo.items():
        if src:
            out[column] = df[src].str.strip()
    if dicom_metadata:
        _fill_from_dicom(out, base, notes)
    if "id" in cols and df["id"].is_unique:
        out["id"] = df["id"]
    blank_label = out["label"] == ""
    if blank_label.any():
        raise _source_error(f"{table}: {int(blank_label.sum())} rows have an empty label in column '{lcol}' "
                            f"(rows {out.index[blank_label][:10].tolist()})")
    order = list(classes) if classes is not None else None
    if order is not None:
        dropped = int((~out["label"].isin(order)).sum())
        out = out[out["label"].isin(order)]
        if dropped:
            notes.append(f"{dropped} rows with labels outside {order} dropped")
    manifest = Manifest.from_records(out, base, name=name or table.parent.name, source=source, classes=order)
    manifest.notes[:0] = [f"read from {table.name} (image={icol}, label={lcol}, patient={pcol or '-'})"] + notes
    return manifest



def _is_breastclip_manifest(table: Path) -> bool:
    import json

    from breastclip.data.manifest import REQUIRED_COLUMNS

    sidecar = table.with_suffix(".json")
    if not sidecar.is_file():
        return False
    try:
        meta = json.loads(sidecar.read_text())
        cols = set(read_table(table, nrows=0).columns)
    except Exception:
        return False
    return isinstance(meta, dict) and {"root", "classes"} <= set(meta) and set(REQUIRED_COLUMNS) <= cols
