"""BreakHis histology (Spanhol et al. 2016): the ``BreaKHis_v1/histology_slides/breast/...`` tree or any folder of
its files. Everything comes from the file name ``SOB_<B|M>_<type>-<year>-<slide>-<mag>-<seq>.png``:

class (benign/malignant), subtype (8), patient id (``<type>-<year>-<slide>``, e.g. ``F-14-25197``), magnification
(40/100/200/400 X) and sequence number. Labels are binary or the 8 subtypes; a magnification filter keeps some.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from breastclip.data.manifest import Manifest
from breastclip.data.sources._files import is_image_file, relative_to_root, walk_files

FILE_RE = re.compile(
    r"^(?P<procedure>[A-Z]+)_(?P<cls>[BM])_(?P<subtype>[A-Z]+)-(?P<year>\d+)-(?P<slide>[0-9A-Za-z]+)"
    r"-(?P<mag>\d+)-(?P<seq>\d+)$"
)
SUBTYPES = {  # code -> (name, class)
    "A": ("adenosis", "benign"),
    "F": ("fibroadenoma", "benign"),
    "PT": ("phyllodes_tumor", "benign"),
    "TA": ("tubular_adenoma", "benign"),
    "DC": ("ductal_carcinoma", "malignant"),
    "LC": ("lobular_carcinoma", "malignant"),
    "MC": ("mucinous_carcinoma", "malignant"),
    "PC": ("papillary_carcinoma", "malignant"),
}
BINARY_CLASSES = ["benign", "malignant"]
SUBTYPE_CLASSES = [v[0] for v in SUBTYPES.values()]
MAGNIFICATIONS = (40, 100, 200, 400)


def _source_error(msg: str) -> Exception:
    from breastclip.data.sources import SourceError

    return SourceError(msg)


def parse_name(name: str) -> dict | None:
    """Fields of one BreakHis file name (without directory); None when it does not follow the pattern."""
    m = FILE_RE.match(Path(name).stem)
    if m is None or m["subtype"] not in SUBTYPES:
        return None
    subtype, cls = SUBTYPES[m["subtype"]]
    return {
        "class": cls,
        "class_letter": m["cls"],
        "subtype": subtype,
        "subtype_code": m["subtype"],
        "patient_id": f"{m['subtype']}-{m['year']}-{m['slide']}",
        "magnification": int(m["mag"]),
        "seq": int(m["seq"]),
        "procedure": m["procedure"],
    }


def detect(path: Path) -> bool:
    """A BreakHis file, or a folder whose first image files (a few levels down) follow the BreakHis naming."""
    if path.is_file():
        return parse_name(path.name) is not None
    if not path.is_dir():
        return False
    seen = 0
    for f in walk_files(path, max_depth=8):
        if is_image_file(f):
            if parse_name(f.name) is not None:
                return True
            seen += 1
            if seen >= 20:
                return False
    return False


def read_breakhis(
    path: str | Path,
    *,
    labels: str = "binary",
    magnification: int | str | Iterable[int | str] | None = None,
    name: str | None = None,
    source: str = "breakhis",
) -> Manifest:
    """Read BreakHis files; ``labels`` is ``"binary"`` (benign/malignant) or ``"subtype"`` (8 classes).

    ``magnification`` keeps only those magnifications (``40``, ``"100X"``, or a list). Files not named like BreakHis
    are skipped and counted; a file whose B/M letter contradicts its subtype, or whose ``benign``/``malignant``
    folder contradicts its name, is an error.
    """
    root = Path(path).expanduser()
    if labels not in ("binary", "subtype"):
        raise ValueError(f"labels must be 'binary' or 'subtype', got {labels!r}")
    files = [root] if root.is_file() else [f for f in walk_files(root) if is_image_file(f)]
    base = root.parent if root.is_file() else root
    mags = _magnifications(magnification)

    rows: list[dict] = []
    skipped: list[str] = []
    contradictions: list[str] = []
    for f in files:
        info = parse_name(f.name)
        if info is None:
            skipped.append(f.name)
            continue
        expected_letter = "B" if info["class"] == "benign" else "M"
        if info["class_letter"] != expected_letter:
            contradictions.append(f"{f.name}: letter {info['class_letter']} but subtype {info['subtype']} is {info['class']}")
        folder_classes = {p.lower() for p in f.parent.relative_to(base).parts} & {"benign", "malignant"}
        if folder_classes and folder_classes != {info["class"]}:
            contradictions.append(f"{f.name}: in folder {sorted(folder_classes)} but named {info['class']}")
        if mags is not None and info["magnification"] not in mags:
            continue
        rows.append({
            "image": relative_to_root(f, base),
            "label": info["class"] if labels == "binary" else info["subtype"],
            "patient_id": info["patient_id"],
            "class": info["class"],
            "subtype": info["subtype"],
            "magnification": f"{info['magnification']}X",
            "seq": info["seq"],
        })
    if contradictions:
        raise _source_error(f"{len(contradictions)} BreakHis files under {root} contradict themselves:\n  "
                            + "\n  ".join(contradictions[:20]))
    if not rows:
        what = f" at magnification {sorted(mags)}" if mags else ""
        raise _source_error(f"no BreakHis image files{what} under {root} (expected names like "
                            f"SOB_B_F-14-25197-40-001.png; {len(skipped)} other files seen)")
    classes = BINARY_CLASSES if labels == "binary" else SUBTYPE_CLASSES
    present = {r["label"] for r in rows}
    manifest = Manifest.from_records(rows, base, name=name or base.name, source=source, classes=classes)
    if skipped:
        manifest.notes.append(f"{len(skipped)} files not named like BreakHis were skipped, e.g. {skipped[:3]}")
    if mags is not None:
        manifest.notes.append(f"magnification filter {sorted(mags)}")
    absent = [c for c in classes if c not in present]
    if absent:
        manifest.notes.append(f"classes without images here: {absent}")
    return manifest


def _magnifications(value) -> set[int] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (int, str)) else list(value)
    out: set[int] = set()
    for v in items:
        for part in str(v).split(","):
            token = part.strip().upper().removesuffix("X")
            if not token.isdigit() or int(token) not in MAGNIFICATIONS:
                raise ValueError(f"magnification {v!r} is not one of {[f'{m}X' for m in MAGNIFICATIONS]}")
            out.add(int(token))
    return out
