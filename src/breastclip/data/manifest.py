"""The Manifest: one validated table per data set, the contract between readers and everything downstream.

Columns (always present after :meth:`Manifest.validate`):

- ``id``          stable unique row id (string); the key of the embedding cache index and the predictions table
- ``image``       path of the image file, relative to ``root`` (or absolute)
- ``label``       class name (string), one of ``classes``
- ``patient_id``  grouping key for leak-safe splits; when a source has none every image is its own group and
                  ``patient_ids_from_source`` is False
- ``split``       ``train`` / ``val`` / ``test`` or empty (not yet split)
- ``source``      the reader that produced the row (``busi``, ``cbis_ddsm``, ...)

Optional mammography columns, validated when present (a blank cell means unknown):

- ``view``        acquisition view: CC, MLO, ML, LM, LMO, XCCL, XCCM, FB, SIO, AT, CV (ACR codes); a trailing number
                  marks a repeated view (``CC2``). Lower case is upper-cased on construction.
- ``laterality``  ``L`` or ``R`` (``LEFT`` / ``RIGHT`` / ``l`` / ``r`` are normalised on construction)
- ``exam_id``     one screening exam (study); breast- and exam-level evaluation group images by
                  ``patient_id + laterality`` and by ``exam_id`` (see :mod:`breastclip.evaluation.levels`)

Any other column is metadata (density, magnification, ...), kept as-is for subgroup analysis.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from breastclip.atomic import atomic_write_text

REQUIRED_COLUMNS = ("id", "image", "label", "patient_id", "split", "source")
SPLITS = ("train", "val", "test")
#: ACR mammography view codes accepted in the optional ``view`` column (a trailing digit marks a repeat: CC2).
VIEWS = ("CC", "MLO", "ML", "LM", "LMO", "XCCL", "XCCM", "FB", "SIO", "AT", "CV")
LATERALITIES = ("L", "R")
_VIEW_RE = re.compile(r"^(" + "|".join(VIEWS) + r")\d*$")
_LATERALITY_ALIASES = {"L": "L", "R": "R", "LEFT": "L", "RIGHT": "R"}


class ManifestError(ValueError):
    """A manifest that cannot be used, with every problem found listed.

    ``problems`` holds one line per problem; ``missing_files`` every image path that is not on disk.
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None,
                 missing_files: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]
        self.missing_files = list(missing_files or [])


@dataclass
class Manifest:
    df: pd.DataFrame
    root: Path
    classes: list[str]
    name: str = "dataset"
    patient_ids_from_source: bool = True
    notes: list[str] = field(default_factory=list)

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_records(
        cls,
        records: pd.DataFrame | Iterable[dict],
        root: str | Path,
        *,
        name: str,
        source: str,
        classes: Sequence[str] | None = None,
    ) -> Manifest:
        """Build a manifest from rows holding at least ``image`` and ``label``; fills the other columns."""
        df = pd.DataFrame(records).copy() if not isinstance(records, pd.DataFrame) else records.copy()
        for col in ("image", "label"):
            if col not in df.columns:
                raise ManifestError(_missing_column_message(col, df.columns, name))
        df["image"] = df["image"].astype(str)
        df["label"] = df["label"].astype(str)
        notes: list[str] = []
        if "patient_id" in df.columns:
            pid = df["patient_id"]
            absent = pid.isna() | (pid.astype(str).str.strip() == "")
        else:
            absent = pd.Series(True, index=df.index)
        has_pids = not bool(absent.all())
        if not has_pids:
            df["patient_id"] = "img:" + df["image"]
            notes.append("no patient ids in the source: every image is its own group")
        elif absent.any():
            df.loc[absent, "patient_id"] = "img:" + df.loc[absent, "image"]
            notes.append(f"{int(absent.sum())} of {len(df)} rows have no patient id: each of those images is its own group")
        df["patient_id"] = df["patient_id"].astype(str)
        if "split" not in df.columns:
            df["split"] = ""
        df["split"] = df["split"].fillna("").astype(str)
        if "source" not in df.columns:
            df["source"] = source
        if "id" not in df.columns:
            df["id"] = [f"{source}:{p}" for p in df["image"]]
        df["id"] = df["id"].astype(str)
        _normalise_mammo_columns(df)
        ordered = list(REQUIRED_COLUMNS) + [c for c in df.columns if c not in REQUIRED_COLUMNS]
        df = df[ordered].reset_index(drop=True)
        if classes is None:
            classes = sorted(df["label"].unique())
        return cls(df=df, root=Path(root), classes=list(classes), name=name,
                   patient_ids_from_source=bool(has_pids), notes=notes)

    # ---- views --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.df)

    @property
    def metadata_columns(self) -> list[str]:
        return [c for c in self.df.columns if c not in REQUIRED_COLUMNS]

    def paths(self) -> list[Path]:
        """Absolute image paths, in row order."""
        return [self.resolve(p) for p in self.df["image"]]

    def resolve(self, image: str) -> Path:
        p = Path(image)
        return p if p.is_absolute() else self.root / p

    def image_lookup(self) -> Callable[[str], Path | None]:
        """``id -> absolute image path`` (None for an id not in the manifest): thumbnails in reports."""
        paths = dict(zip(self.df["id"].astype(str), self.df["image"].astype(str), strict=True))
        return lambda image_id: self.resolve(paths[image_id]) if image_id in paths else None

    def y(self) -> pd.Series:
        """Integer labels (index into ``classes``)."""
        return self.df["label"].map({c: i for i, c in enumerate(self.classes)}).astype(int)

    def subset(self, mask) -> Manifest:
        return Manifest(self.df[mask].reset_index(drop=True), self.root, list(self.classes), self.name,
                        self.patient_ids_from_source, list(self.notes))

    def split_part(self, part: str) -> Manifest:
        return self.subset(self.df["split"] == part)

    # ---- validation ---------------------------------------------------------------------------------------
    def validate(self, *, check_files: bool = True, allow_outside_root: bool = False) -> Manifest:
        """Raise :class:`ManifestError` listing every problem found; return self when clean.

        Checks: required columns (with a did-you-mean hint for misspellings), empty manifest, empty image paths or
        labels, labels outside ``classes``, duplicate ids, duplicate rows, unknown split values, paths escaping
        ``root`` and (``check_files``) image files missing on disk, all listed in one error with a count.

        Every command validates through here (``run``, ``inspect``, ``split``, ``embed``, ...). A path that leaves
        the data root (``../outside/x.png``, ``/etc/passwd``) is refused; with ``allow_outside_root`` it is allowed
        and reported in ``notes``.
        """
        problems: list[str] = []
        for col in REQUIRED_COLUMNS:
            if col not in self.df.columns:
                problems.append(_missing_column_message(col, self.df.columns, self.name))
        if problems:
            raise ManifestError(f"manifest '{self.name}' is invalid:\n- " + "\n- ".join(problems), problems)
        df = self.df
        if len(df) == 0:
            problems.append("the manifest has no rows")
        if len(set(self.classes)) != len(self.classes):
            problems.append(f"classes repeat a name: {self.classes}")
        for col in ("image", "label", "id"):
            blank = df[col].isna() | (df[col].astype(str).str.strip().isin(["", "nan", "None"]))
            if blank.any():
                problems.append(f"{int(blank.sum())} rows have an empty '{col}' (rows {blank[blank].index[:10].tolist()})")
        unknown = sorted(set(df["label"].astype(str)) - set(self.classes))
        if unknown:
            counts = df["label"][df["label"].isin(unknown)].value_counts().to_dict()
            problems.append(f"unknown labels {counts} (known classes: {self.classes})")
        dup_ids = df["id"][df["id"].duplicated()].unique().tolist()
        if dup_ids:
            problems.append(f"{len(dup_ids)} duplicate ids, e.g. {dup_ids[:5]}")
        dup_rows = df.duplicated(subset=["image", "label"], keep=False)
        if dup_rows.any():
            problems.append(f"{int(dup_rows.sum())} duplicate rows (same image and label), e.g. "
                            f"{df.loc[dup_rows, 'image'].head(3).tolist()}")
        conflict = df.drop_duplicates(subset=["image", "label"]).duplicated(subset=["image"], keep=False)
        if conflict.any():
            shown = df.drop_duplicates(subset=["image", "label"]).loc[conflict, "image"].unique()[:3].tolist()
            problems.append(f"{int(conflict.sum())} rows give one image two different labels, e.g. {shown}")
        bad_split = sorted(set(df["split"].astype(str)) - set(SPLITS) - {""})
        if bad_split:
            problems.append(f"unknown split values {bad_split} (allowed: {list(SPLITS)} or empty)")
        problems.extend(_mammo_column_problems(df))
        root = Path(os.path.abspath(self.root))
        escaping = [p for p in df["image"].astype(str) if not _inside(root, root / p)]
        if escaping and allow_outside_root:
            note = (f"{len(escaping)} image paths lie outside the data root (allowed by allow_outside_root): "
                    f"{escaping[:5]}")
            if note not in self.notes:
                self.notes.append(note)
        elif escaping:
            problems.append(f"{len(escaping)} paths escape the data root {root}: {escaping[:5]}; move the images "
                            f"under it, or allow it explicitly (data.allow_outside_root = true, "
                            f"--allow-outside-root)")
        missing: list[str] = []
        if check_files:
            missing = [p for p in df["image"].astype(str) if not self.resolve(p).is_file()]
            if missing:
                shown = "\n  ".join(missing)
                problems.append(f"{len(missing)} of {len(df)} image files missing under {self.root}:\n  {shown}")
        if problems:
            raise ManifestError(f"manifest '{self.name}' is invalid:\n- " + "\n- ".join(problems), problems, missing)
        return self

    def class_counts(self) -> dict[str, int]:
        """Images per class, in ``classes`` order (zero for a class without images)."""
        counts = self.df["label"].value_counts()
        return {c: int(counts.get(c, 0)) for c in self.classes}

    def summary(self) -> dict:
        """Plain-data overview for ``data inspect`` and reports: counts per class, split, patients, metadata."""
        df = self.df
        split_counts = {s or "(none)": int(n) for s, n in df["split"].value_counts().items()}
        per_split = {
            (s or "(none)"): {c: int(n) for c, n in part["label"].value_counts().items()}
            for s, part in df.groupby("split", sort=True)
        }
        meta: dict[str, dict] = {}
        for col in self.metadata_columns:
            values = df[col]
            blank = values.isna() | (values.astype(str).str.strip() == "")
            present = values[~blank]
            numeric = pd.to_numeric(present, errors="coerce")
            info: dict = {"missing": int(blank.sum()), "unique": int(present.astype(str).nunique())}
            if len(present) and numeric.notna().all() and info["unique"] > 10:
                info.update(min=float(numeric.min()), max=float(numeric.max()), mean=float(numeric.mean()))
            else:
                info["top"] = {str(k): int(v) for k, v in present.astype(str).value_counts().head(8).items()}
            meta[col] = info
        return {
            "name": self.name,
            "root": str(self.root),
            "images": len(df),
            "classes": self.class_counts(),
            "splits": split_counts,
            "classes_per_split": per_split,
            "patients": int(df["patient_id"].nunique()),
            "patient_ids_from_source": self.patient_ids_from_source,
            "sources": sorted(df["source"].astype(str).unique().tolist()),
            "metadata": meta,
            "notes": list(self.notes),
        }

    # ---- persistence --------------------------------------------------------------------------------------
    def to_csv(self, path: str | Path) -> Path:
        """Write the table and a JSON sidecar (root, classes, notes) so :meth:`from_csv` restores it exactly."""
        path = Path(path)
        meta = {"root": str(self.root), "classes": self.classes, "name": self.name,
                "patient_ids_from_source": self.patient_ids_from_source, "notes": self.notes}
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
        atomic_write_text(path, self.df.to_csv(index=False))  # last: a complete table means a complete pair
        return path

    @classmethod
    def from_csv(cls, path: str | Path) -> Manifest:
        path = Path(path)
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            meta = json.loads(sidecar.read_text())
            return cls(df=df, root=Path(meta["root"]), classes=list(meta["classes"]), name=meta.get("name", path.stem),
                       patient_ids_from_source=meta.get("patient_ids_from_source", True), notes=meta.get("notes", []))
        return cls.from_records(df, path.parent, name=path.stem, source="csv")


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().isin(["", "nan", "None"])


def _normalise_mammo_columns(df: pd.DataFrame) -> None:
    """Upper-case ``view``; map ``laterality`` LEFT/RIGHT/l/r to L/R; blanks become "" (unknown). In place."""
    if "view" in df.columns:
        blank = _blank(df["view"])
        df["view"] = df["view"].astype(str).str.strip().str.upper().where(~blank, "")
    if "laterality" in df.columns:
        blank = _blank(df["laterality"])
        lat = df["laterality"].astype(str).str.strip().str.upper()
        df["laterality"] = lat.map(lambda v: _LATERALITY_ALIASES.get(v, v)).where(~blank, "")
    if "exam_id" in df.columns:
        blank = _blank(df["exam_id"])
        df["exam_id"] = df["exam_id"].astype(str).str.strip().where(~blank, "")


def _mammo_column_problems(df: pd.DataFrame) -> list[str]:
    problems: list[str] = []
    if "view" in df.columns:
        v = df["view"].astype(str).str.strip()
        bad = ~_blank(df["view"]) & ~v.str.upper().str.match(_VIEW_RE)
        if bad.any():
            problems.append(f"{int(bad.sum())} rows have an unknown view {sorted(v[bad].unique())[:5]} (rows "
                            f"{bad[bad].index[:10].tolist()}; known: {list(VIEWS)}, optionally with a repeat number)")
    if "laterality" in df.columns:
        lat = df["laterality"].astype(str).str.strip().str.upper().map(lambda x: _LATERALITY_ALIASES.get(x, x))
        bad = ~_blank(df["laterality"]) & ~lat.isin(LATERALITIES)
        if bad.any():
            problems.append(f"{int(bad.sum())} rows have an unknown laterality "
                            f"{sorted(df.loc[bad, 'laterality'].astype(str).unique())[:5]} (rows "
                            f"{bad[bad].index[:10].tolist()}; allowed: L or R, or blank when unknown)")
    if "exam_id" in df.columns:
        ex = df.loc[~_blank(df["exam_id"]), ["exam_id", "patient_id"]].astype(str)
        shared = ex.groupby("exam_id")["patient_id"].nunique()
        shared = shared[shared > 1]
        if len(shared):
            problems.append(f"{len(shared)} exam_id(s) hold images of more than one patient, e.g. "
                            f"{shared.index[:5].tolist()} (an exam belongs to one patient)")
    return problems


def _inside(root: Path, p: Path) -> bool:
    """Whether ``p`` stays under ``root`` by its text (``..`` counted; symlinked data folders are allowed)."""
    root_n = os.path.normpath(os.path.abspath(root))
    p_n = os.path.normpath(os.path.abspath(p))
    return p_n == root_n or p_n.startswith(root_n.rstrip(os.sep) + os.sep)


def _missing_column_message(col: str, columns: Iterable[str], name: str) -> str:
    close = difflib.get_close_matches(col, [str(c) for c in columns], n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"manifest '{name}' has no '{col}' column{hint}; columns are {list(columns)}"
