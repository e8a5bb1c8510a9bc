"""Leak audit of a split manifest: patients, identical and near-duplicate images across parts, missing classes.

Fingerprints: SHA-256 of the file bytes (byte-identical copies) and a perceptual hash (``imagehash.phash``, DCT of
a 32x32 greyscale thumbnail for ``hash_size=8``) of the *decoded* image, so a PNG and a JPEG re-encode of the same
scan, or a resized copy, still match. Decoding uses :func:`breastclip.data.images.load_image_resized` (JPEG DCT
scaling) at a small size, so thousands of images hash in seconds. Fingerprints can be cached in a JSON file keyed
by path, size and modification time (``cache=``), so a second audit reads no pixels.

Byte-identical candidates are found by file size first: only files whose size collides are read and hashed when
``near_duplicates=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from breastclip.atomic import atomic_write_text

from .images import ImageDecodeError, ImageFailure, load_image_resized
from .manifest import SPLITS, Manifest

__all__ = ["DEFAULT_MAX_DISTANCE", "TRANSFORMS", "Fingerprint", "LeakAudit", "LeakError", "audit_leaks", "duplicate_groups",
           "fingerprint_files"]

#: Hamming distance (of 64 bits for hash_size=8) at or below which two images count as near-duplicates.
#: Calibrated on BUSI (780 real ultrasound images, one modality, so harder than photos): pairs at 0-6 bits are
#: the same scan re-saved or slightly shifted, 8-10 consecutive frames of one scan session, and the first pairs
#: of unrelated images (different classes) appear at 12. Scaled with hash_size**2 for other hash sizes.
DEFAULT_MAX_DISTANCE = 8
_THUMB = 64  # decode size (short side) for perceptual hashing
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


class LeakError(ValueError):
    """A split that leaks information between its parts; the message lists every problem."""


@dataclass
class LeakAudit:
    """Result of :func:`audit_leaks`. ``ok`` is False when any problem was found."""

    ok: bool
    problems: list[str]
    patients_in_several_parts: dict[str, list[str]] = field(default_factory=dict)
    identical_images: list[dict] = field(default_factory=list)  # {"a", "b", "parts", "sha256"}
    near_duplicates: list[dict] = field(default_factory=list)  # {"a", "b", "parts", "distance"}
    missing_classes: dict[str, list[str]] = field(default_factory=dict)  # part -> classes it lacks
    unsplit_rows: int = 0
    warnings: list[str] = field(default_factory=list)  # not leaks, but worth knowing (duplicates within a part)
    unreadable: list[ImageFailure] = field(default_factory=list)
    checked: dict = field(default_factory=dict)  # what ran: n_images, near_duplicates, hash_size, max_distance

    def raise_if_failed(self) -> None:
        """Raise :class:`LeakError` naming every problem when the audit failed."""
        if not self.ok:
            raise LeakError("leak audit failed:\n- " + "\n- ".join(self.problems))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unreadable"] = [f.to_dict() for f in self.unreadable]
        return d

    def summary(self) -> str:
        if self.ok:
            extra = f" ({len(self.warnings)} warning(s))" if self.warnings else ""
            return f"leak audit passed on {self.checked.get('n_images', '?')} images{extra}"
        return "leak audit FAILED:\n- " + "\n- ".join(self.problems)


@dataclass(frozen=True)
class Fingerprint:
    sha256: str | None
    phash: str | None  # hex, as imagehash prints it
    variants: tuple[str, ...] = ()  # phash of the 7 flipped / rotated versions (see TRANSFORMS)


#: The dihedral transforms hashed besides the image itself: mirrored and rotated copies (augmentation output
#: shipped inside data sets) are found too. On BUSI they add no pair at the default distance.
TRANSFORMS = ("flip_left_right", "flip_top_bottom", "rotate_90", "rotate_180", "rotate_270", "transpose",
              "transverse")


def audit_leaks(
    manifest: Manifest,
    *,
    near_duplicates: bool = True,
    hash_size: int = 8,
    max_distance: int | None = None,
    flips: bool = True,
    cache: str | os.PathLike | None = None,
    workers: int = 0,
    max_listed: int = 20,
) -> LeakAudit:
    """Check a split manifest and say which patients, image pairs and classes make it unsafe.

    Problems (the audit fails): rows without a split, a patient in two parts (only meaningful when
    ``manifest.patient_ids_from_source``; otherwise the same image path in two parts), byte-identical images in two
    parts, near-duplicate images (perceptual-hash distance <= ``max_distance``; with ``flips`` also mirrored or
    rotated copies) in two parts, a part that lacks a class present elsewhere. Warnings: duplicates within one
    part, identical or near-identical images with different labels, images that could not be read for hashing.
    """
    df = manifest.df.reset_index(drop=True)
    if max_distance is None:
        max_distance = round(DEFAULT_MAX_DISTANCE * hash_size**2 / 64)
    problems: list[str] = []
    warns: list[str] = []
    split = df["split"].fillna("").astype(str)
    unsplit = int((split == "").sum())
    if unsplit:
        problems.append(f"{unsplit} row(s) have no split")
    ids = df["id"].astype(str).to_numpy()
    labels = df["label"].astype(str).to_numpy()
    part = split.to_numpy()

    # patients across parts
    pats: dict[str, list[str]] = {}
    by_patient = df.assign(_part=part)[part != ""].groupby("patient_id")["_part"].unique()
    for pid, parts_of in by_patient.items():
        if len(parts_of) > 1:
            pats[str(pid)] = sorted(parts_of, key=_part_order)
    if pats:
        what = "patient(s)" if manifest.patient_ids_from_source else "group(s) (no patient ids from the source)"
        problems.append(f"{len(pats)} {what} in more than one part: {_listing(pats, max_listed)}")

    # missing classes per part
    missing: dict[str, list[str]] = {}
    present = [p for p in SPLITS if (part == p).any()]
    all_classes = [c for c in manifest.classes if (labels == c).any()]
    for p in present:
        lack = [c for c in all_classes if not ((part == p) & (labels == c)).any()]
        if lack:
            missing[p] = lack
    if missing:
        problems.append("part(s) lacking a class: " + "; ".join(f"{p} has no {', '.join(c)}" for p, c in missing.items()))

    # fingerprints
    paths = manifest.paths()
    fps, failures = fingerprint_files(paths, hash_size=hash_size if near_duplicates else None,
                                      cache=cache, workers=workers, sha_all=False)
    if failures:
        warns.append(f"{len(failures)} image(s) could not be read for hashing and were not checked for duplicates")

    identical, same_part_dups, label_conflicts, identical_keys = _identical_pairs(fps, ids, part, labels)
    if identical:
        problems.append(f"{len(identical)} byte-identical image pair(s) across parts: "
                        + _pairs_listing(identical, max_listed))
    if same_part_dups:
        warns.append(f"{same_part_dups} byte-identical image pair(s) within one part (not a leak; inflates counts)")
    if label_conflicts:
        warns.append(f"{len(label_conflicts)} byte-identical pair(s) carry different labels: "
                     + _pairs_listing(label_conflicts, max_listed))

    near: list[dict] = []
    if near_duplicates:
        all_near = [p for p in _near_pairs(fps, ids, part, max_distance, hash_size, dihedral=flips)
                    if (p["a"], p["b"]) not in identical_keys]
        near = [p for p in all_near if p["parts"][0] != p["parts"][1] and all(p["parts"])]
        if near:
            problems.append(f"{len(near)} near-duplicate image pair(s) across parts (perceptual hash distance <= "
                            f"{max_distance}): " + _pairs_listing(near, max_listed, show_distance=True))
        label_of = dict(zip(ids, labels, strict=True))
        near_conflicts = [p for p in all_near if label_of[p["a"]] != label_of[p["b"]]]
        if near_conflicts:
            warns.append(f"{len(near_conflicts)} near-duplicate pair(s) carry different labels: "
                         + _pairs_listing(near_conflicts, max_listed, show_distance=True))
        within = len(all_near) - len(near)
        if within:
            warns.append(f"{within} near-duplicate image pair(s) within one part (not a leak; inflates counts)")

    checked = {"n_images": len(df), "near_duplicates": near_duplicates, "hash_size": hash_size,
               "max_distance": max_distance if near_duplicates else None, "flips": bool(near_duplicates and flips),
               "patient_ids_from_source": manifest.patient_ids_from_source}
    return LeakAudit(ok=not problems, problems=problems, patients_in_several_parts=pats, identical_images=identical,
                     near_duplicates=near, missing_classes=missing, unsplit_rows=unsplit, warnings=warns,
                     unreadable=failures, checked=checked)


def duplicate_groups(
    manifest: Manifest,
    *,
    near_duplicates: bool = True,
    hash_size: int = 8,
    max_distance: int | None = None,
    flips: bool = True,
    cache: str | os.PathLike | None = None,
    workers: int = 0,
) -> np.ndarray:
    """A group key per row: patients merged with every image they share (byte-identical or near-duplicate).

    Connected components (union-find) over "same patient" and "duplicate image" links, so splitting on these
    groups keeps all copies of one scan, and everything linked to them, in one part. Unreadable images stay alone.
    """
    df = manifest.df.reset_index(drop=True)
    if max_distance is None:
        max_distance = round(DEFAULT_MAX_DISTANCE * hash_size**2 / 64)
    n = len(df)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    first: dict[str, int] = {}
    for i, pid in enumerate(df["patient_id"].astype(str)):
        union(i, first.setdefault(pid, i))
    fps, _ = fingerprint_files(manifest.paths(), hash_size=hash_size if near_duplicates else None, cache=cache,
                               workers=workers, sha_all=False)
    by_sha: dict[str, int] = {}
    for i, fp in enumerate(fps):
        if fp.sha256:
            union(i, by_sha.setdefault(fp.sha256, i))
    if near_duplicates:
        ids = np.arange(n).astype(str)
        for p in _near_pairs(fps, ids, np.full(n, ""), max_distance, hash_size, dihedral=flips):
            union(int(p["a"]), int(p["b"]))
    roots = np.array([find(i) for i in range(n)])
    return np.array([f"dup:{df['patient_id'].iloc[r]}" for r in roots], dtype=object)


def fingerprint_files(
    paths: Sequence[str | os.PathLike],
    *,
    hash_size: int | None = 8,
    cache: str | os.PathLike | None = None,
    workers: int = 0,
    sha_all: bool = True,
) -> tuple[list[Fingerprint], list[ImageFailure]]:
    """SHA-256 and perceptual hash per file (``hash_size=None``: no perceptual hash).

    With ``sha_all=False`` only files whose byte size collides with another file's get a SHA-256 (a unique size
    cannot be byte-identical to anything). ``cache`` is a JSON file reused across calls.
    """
    paths = [Path(p) for p in paths]
    store = _load_cache(cache)
    sizes: list[int | None] = []
    for p in paths:
        try:
            sizes.append(p.stat().st_size)
        except OSError:
            sizes.append(None)
    size_count: dict[int, int] = defaultdict(int)
    for s in sizes:
        if s is not None:
            size_count[s] += 1

    def one(i: int) -> tuple[Fingerprint, ImageFailure | None]:
        p = paths[i]
        if sizes[i] is None:
            return Fingerprint(None, None), ImageFailure(str(p), "file not found")
        key = _cache_key(p)
        entry = dict(store.get(key, {}))
        need_sha = sha_all or size_count[sizes[i]] > 1
        failure = None
        if need_sha and "sha256" not in entry:
            try:
                entry["sha256"] = _sha256(p)
            except OSError as e:
                return Fingerprint(None, None), ImageFailure(str(p), f"cannot read file ({e})")
        hkey = f"phash{hash_size}x8"
        if hash_size is not None and hkey not in entry:
            try:
                entry[hkey] = _phash(p, hash_size)
            except ImageDecodeError as e:
                failure = ImageFailure(e.path, e.problem)
        store[key] = entry
        hashes = entry.get(hkey) if hash_size is not None else None
        return Fingerprint(entry.get("sha256") if need_sha else None, hashes[0] if hashes else None,
                           tuple(hashes[1:]) if hashes else ()), failure

    if workers > 0 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, range(len(paths))))
    else:
        results = [one(i) for i in range(len(paths))]
    _save_cache(cache, store)
    return [r[0] for r in results], [r[1] for r in results if r[1] is not None]


# ---- hashing ----------------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _phash(path: Path, hash_size: int) -> list[str]:
    """Perceptual hashes of the decoded image and of its 7 flips/rotations (identity first)."""
    import imagehash
    from PIL import Image

    im = Image.fromarray(load_image_resized(path, max(_THUMB, hash_size * 4))).convert("L")
    ops = [getattr(Image.Transpose, t.upper()) for t in TRANSFORMS]
    return [str(imagehash.phash(x, hash_size=hash_size)) for x in [im, *(im.transpose(op) for op in ops)]]


def _cache_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _load_cache(cache: str | os.PathLike | None) -> dict:
    if cache is None:
        return {}
    p = Path(cache)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged cache is rebuilt, never trusted
    return data if isinstance(data, dict) else {}


def _save_cache(cache: str | os.PathLike | None, store: dict) -> None:
    if cache is None:
        return
    p = Path(cache)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(store))  # unique temp file: parallel runs sharing a cache never collide


# ---- pair finding -----------------------------------------------------------------------------------------------
def _identical_pairs(fps, ids, part, labels) -> tuple[list[dict], int, list[dict], set[tuple[str, str]]]:
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, fp in enumerate(fps):
        if fp.sha256:
            by_sha[fp.sha256].append(i)
    across: list[dict] = []
    conflicts: list[dict] = []
    keys: set[tuple[str, str]] = set()
    within = 0
    for sha, idx in by_sha.items():
        for x in range(len(idx)):
            for y in range(x + 1, len(idx)):
                i, j = idx[x], idx[y]
                pair = _pair(ids, part, i, j)
                pair["sha256"] = sha
                keys.add((pair["a"], pair["b"]))
                if labels[i] != labels[j]:
                    conflicts.append(pair)
                if part[i] != part[j] and part[i] and part[j]:
                    across.append(pair)
                else:
                    within += 1
    return across, within, conflicts, keys


def _near_pairs(fps, ids, part, max_distance: int, hash_size: int, dihedral: bool = True) -> list[dict]:
    """All pairs (i < j) of hashed images within ``max_distance`` bits, blockwise (memory ~ 256 x N x 8).

    With ``dihedral`` the distance is the minimum over the 8 flips/rotations of the second image, and the pair
    says which transform matched (``"identity"`` for a plain copy).
    """
    idx = np.array([i for i, fp in enumerate(fps) if fp.phash])
    if len(idx) < 2:
        return []
    use_variants = dihedral and all(len(fps[i].variants) == len(TRANSFORMS) for i in idx)
    names = ("identity", *TRANSFORMS) if use_variants else ("identity",)
    bits = np.stack([np.stack([_hex_to_bytes(h, hash_size)
                               for h in ((fps[i].phash, *fps[i].variants) if use_variants else (fps[i].phash,))])
                     for i in idx])  # (n, variants, bytes)
    if bits.shape[2] % 8 == 0 and hasattr(np, "bitwise_count"):  # numpy >= 2: popcount on 64-bit words
        words = np.ascontiguousarray(bits).view(np.uint64)

        def dist_to(rows: np.ndarray, cols: np.ndarray, v: int) -> np.ndarray:
            return np.bitwise_count(words[rows, 0][:, None, :] ^ words[cols, v][None, :, :]).sum(-1, dtype=np.int64)
    else:
        def dist_to(rows: np.ndarray, cols: np.ndarray, v: int) -> np.ndarray:
            return _POPCOUNT[bits[rows, 0][:, None, :] ^ bits[cols, v][None, :, :]].sum(-1, dtype=np.int64)

    out: list[dict] = []
    n = len(idx)
    for start in range(0, n - 1, 256):
        rows = np.arange(start, min(start + 256, n))
        cols = np.arange(start + 1, n)
        dist = dist_to(rows, cols, 0)
        which = np.zeros(dist.shape, dtype=np.int64)
        for v in range(1, len(names)):
            d = dist_to(rows, cols, v)
            better = d < dist
            dist = np.where(better, d, dist)
            which = np.where(better, v, which)
        r, c = np.nonzero((dist <= max_distance) & (cols[None, :] > rows[:, None]))
        for x, y in zip(r, c, strict=True):
            pair = _pair(ids, part, int(idx[rows[x]]), int(idx[cols[y]]))
            pair["distance"] = int(dist[x, y])
            pair["transform"] = names[int(which[x, y])]
            out.append(pair)
    out.sort(key=lambda d: (d["distance"], d["a"], d["b"]))
    return out


def _hex_to_bytes(h: str, hash_size: int) -> np.ndarray:
    n = (hash_size * hash_size + 7) // 8
    raw = bytes.fromhex(h.rjust(2 * n, "0"))
    return np.frombuffer(raw[-n:], dtype=np.uint8)


def _pair(ids, part, i: int, j: int) -> dict:
    a, b = (i, j) if ids[i] <= ids[j] else (j, i)
    return {"a": str(ids[a]), "b": str(ids[b]), "parts": [str(part[a]), str(part[b])]}


def _part_order(p: str) -> int:
    return SPLITS.index(p) if p in SPLITS else len(SPLITS)


def _listing(d: dict[str, list[str]], limit: int) -> str:
    items = [f"{k} ({'/'.join(v)})" for k, v in list(d.items())[:limit]]
    more = f", ... and {len(d) - limit} more" if len(d) > limit else ""
    return ", ".join(items) + more


def _pairs_listing(pairs: list[dict], limit: int, show_distance: bool = False) -> str:
    def fmt(p: dict) -> str:
        dist = f", distance {p['distance']}" if show_distance else ""
        if p.get("transform", "identity") != "identity":
            dist += f", {p['transform'].replace('_', ' ')} copy"
        return f"{p['a']} ({p['parts'][0]}) ~ {p['b']} ({p['parts'][1]}{dist})"

    items = [fmt(p) for p in pairs[:limit]]
    more = f", ... and {len(pairs) - limit} more" if len(pairs) > limit else ""
    return "; ".join(items) + more
