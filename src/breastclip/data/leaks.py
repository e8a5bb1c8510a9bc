"""Leak audit of a split manifest: patients, identical and near-duplicate images across parts, missing classes.

Fingerprints: SHA-256 of the file bytes (byte-identical copies) and a perceptual fingerprint of the *decoded image
content*: the image is decoded at a small size (:func:`breastclip.data.images.load_image_resized`, JPEG DCT scaling),
cropped to its content with :func:`breastclip.data.breast.crop_breast` (the breast of a mammogram without its black
background and burned-in labels; an ultrasound fan without its frame; an image without background stays whole), and
then hashed (``imagehash.phash``, DCT of a 32x32 greyscale thumbnail for ``hash_size=8``, plus its 7 flips and
rotations). A PNG and a JPEG re-encode of the same scan, a resized or mirrored copy, and a film digitised into a
larger black canvas therefore hash alike, while the black background no longer makes two different women look alike.

Perceptual-hash candidates (distance <= ``max_distance``) are then *verified* on detail: a 64x64 band-pass image of
the content's interior (outline excluded), compared by normalised correlation over the 8 flips/rotations. Copies
keep their texture (>= 0.59 on real copies); two different breasts of similar outline do not (0.47 at most on the
real samples); see ``benchmarks/leak_audit_precision.py``. Pairs need both.

Policies (every message names the option that changes it): patients in two parts and byte-identical images across
parts are *problems* (the audit fails; what a failed audit does to a run is ``split.on_leak``); near-duplicate pairs
across parts are *warnings with evidence* by default (``near_duplicates="warn"``: the pairs, their distance and
similarity, and a contact sheet PNG when ``contact_sheet=`` names a file), problems with ``"refuse"``, not checked
with ``"off"``.

Fingerprints can be cached in a JSON file keyed by path, size and modification time (``cache=``), so a second
audit reads no pixels. Byte-identical candidates are found by file size first: only files whose size collides are
read and hashed when the perceptual check is off.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from breastclip.atomic import atomic_write_text

from .breast import crop_breast
from .images import ImageDecodeError, ImageFailure, load_image_resized
from .manifest import SPLITS, Manifest

__all__ = ["DEFAULT_MAX_DISTANCE", "DEFAULT_MIN_SIMILARITY", "NEAR_DUPLICATE_POLICIES", "TRANSFORMS", "Fingerprint",
           "LeakAudit", "LeakError", "audit_leaks", "duplicate_groups", "fingerprint_files"]

#: Hamming distance (of 64 bits for hash_size=8) at or below which two images count as near-duplicates.
#: Calibrated on BUSI (780 real ultrasound images, one modality, so harder than photos): pairs at 0-6 bits are
#: the same scan re-saved or slightly shifted, 8-10 consecutive frames of one scan session, and the first pairs
#: of unrelated images (different classes) appear at 12. Scaled with hash_size**2 for other hash sizes.
DEFAULT_MAX_DISTANCE = 8
#: Normalised correlation of the 64x64 interior detail at or above which a hash candidate is a near-duplicate.
#: Calibrated on real images: re-encoded / resized / padded copies of the mammography samples >= 0.67, BUSI's
#: known copies (some shifted by a few pixels) >= 0.59; two different women's mammograms of similar shape (Mayo
#: A1 / A2, hash distance 6) 0.47. See benchmarks/leak_audit_precision.py for precision and recall.
DEFAULT_MIN_SIMILARITY = 0.55
#: What near-duplicate pairs across parts do: fail the audit, warn with their evidence, or are not looked for.
NEAR_DUPLICATE_POLICIES = ("refuse", "warn", "off")
_DECODE = 384  # decode size (short side) for the content fingerprint
_MIN_CONTENT = 256  # the content crop's short side is fingerprinted at >= this many pixels (when the file has them)
_MAX_DECODE = 2048
_DETAIL = 64  # side of the detail image used to verify hash candidates
_FP_VERSION = "content-v2"  # cache entries of another fingerprint version are recomputed, never mixed
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
    near_duplicates: list[dict] = field(default_factory=list)  # {"a", "b", "parts", "distance", "similarity", ...}
    missing_classes: dict[str, list[str]] = field(default_factory=dict)  # part -> classes it lacks
    unsplit_rows: int = 0
    warnings: list[str] = field(default_factory=list)  # not leaks, but worth knowing (duplicates within a part)
    unreadable: list[ImageFailure] = field(default_factory=list)
    checked: dict = field(default_factory=dict)  # what ran: n_images, near_duplicates (policy), hash_size, ...
    contact_sheet: str | None = None  # PNG of the flagged pairs side by side (when asked for and pairs were found)

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
    phash: str | None  # hex, as imagehash prints it (of the content crop)
    variants: tuple[str, ...] = ()  # phash of the 7 flipped / rotated versions (see TRANSFORMS)
    detail: str | None = None  # base64 int8 64x64 band-pass interior, for verifying hash candidates


#: The dihedral transforms hashed besides the image itself: mirrored and rotated copies (augmentation output
#: shipped inside data sets) are found too. On BUSI they add no pair at the default distance.
TRANSFORMS = ("flip_left_right", "flip_top_bottom", "rotate_90", "rotate_180", "rotate_270", "transpose",
              "transverse")


def audit_leaks(
    manifest: Manifest,
    *,
    near_duplicates: str | bool = "warn",
    hash_size: int = 8,
    max_distance: int | None = None,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    flips: bool = True,
    cache: str | os.PathLike | None = None,
    workers: int = 0,
    max_listed: int = 20,
    contact_sheet: str | os.PathLike | None = None,
) -> LeakAudit:
    """Check a split manifest and say which patients, image pairs and classes make it unsafe.

    Problems (the audit fails): rows without a split, a patient in two parts (only meaningful when
    ``manifest.patient_ids_from_source``; otherwise the same image path in two parts), byte-identical images in two
    parts, a part that lacks a class present elsewhere, and, with ``near_duplicates="refuse"``, near-duplicate
    images in two parts. Near duplicates: content-crop perceptual-hash distance <= ``max_distance`` (with ``flips``
    also mirrored or rotated copies) and detail similarity >= ``min_similarity``; with ``"warn"`` (default) they are
    warnings with their evidence, with ``"off"`` not looked for (``True``/``False`` mean "warn"/"off").
    ``contact_sheet``: a PNG path; when near-duplicate or identical pairs across parts are found, they are drawn
    side by side there and the path is recorded in the audit. Warnings: duplicates within one part, identical or
    near-identical images with different labels, images that could not be read for hashing.
    """
    policy = _near_policy(near_duplicates)
    near_on = policy != "off"
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
        problems.append(f"{len(pats)} {what} in more than one part: {_listing(pats, max_listed)} (a patient leak: "
                        "re-split by patient, e.g. split.keep_official = false when the official split causes it)")

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
    fps, failures = fingerprint_files(paths, hash_size=hash_size if near_on else None,
                                      cache=cache, workers=workers, sha_all=False)
    if failures:
        warns.append(f"{len(failures)} image(s) could not be read for hashing and were not checked for duplicates")

    identical, same_part_dups, label_conflicts, identical_keys = _identical_pairs(fps, ids, part, labels)
    if identical:
        problems.append(f"{len(identical)} byte-identical image pair(s) across parts: "
                        + _pairs_listing(identical, max_listed)
                        + " (the same file in two parts; split.options.group_duplicates = true keeps copies in one part)")
    if same_part_dups:
        warns.append(f"{same_part_dups} byte-identical image pair(s) within one part (not a leak; inflates counts)")
    if label_conflicts:
        warns.append(f"{len(label_conflicts)} byte-identical pair(s) carry different labels: "
                     + _pairs_listing(label_conflicts, max_listed))

    near: list[dict] = []
    if near_on:
        all_near = [p for p in _near_pairs(fps, ids, part, max_distance, hash_size, dihedral=flips,
                                           min_similarity=min_similarity)
                    if (p["a"], p["b"]) not in identical_keys]
        near = [p for p in all_near if p["parts"][0] != p["parts"][1] and all(p["parts"])]
        if near:
            what = (f"{len(near)} near-duplicate image pair(s) across parts (content hash distance <= {max_distance}, "
                    f"detail similarity >= {min_similarity:g}): " + _pairs_listing(near, max_listed, show_distance=True))
            if policy == "refuse":
                problems.append(what + ' (split.options.near_duplicates = "warn" only warns, "off" skips the check; '
                                       "split.options.group_duplicates = true keeps them in one part)")
            else:
                warns.append(what + ' (a warning: split.options.near_duplicates = "refuse" makes it fail the audit, '
                                    '"off" skips the check; split.options.group_duplicates = true keeps them in one part)')
        label_of = dict(zip(ids, labels, strict=True))
        near_conflicts = [p for p in all_near if label_of[p["a"]] != label_of[p["b"]]]
        if near_conflicts:
            warns.append(f"{len(near_conflicts)} near-duplicate pair(s) carry different labels: "
                         + _pairs_listing(near_conflicts, max_listed, show_distance=True))
        within = len(all_near) - len(near)
        if within:
            warns.append(f"{within} near-duplicate image pair(s) within one part (not a leak; inflates counts)")

    sheet = None
    if contact_sheet is not None and (near or identical):
        from .leak_sheet import write_contact_sheet

        by_id = dict(zip(ids, (str(p) for p in paths), strict=True))
        sheet = str(write_contact_sheet([*identical, *near], by_id, Path(contact_sheet)))

    checked = {"n_images": len(df), "near_duplicates": policy, "hash_size": hash_size,
               "max_distance": max_distance if near_on else None,
               "min_similarity": min_similarity if near_on else None, "flips": bool(near_on and flips),
               "fingerprint": _FP_VERSION, "patient_ids_from_source": manifest.patient_ids_from_source}
    return LeakAudit(ok=not problems, problems=problems, patients_in_several_parts=pats, identical_images=identical,
                     near_duplicates=near, missing_classes=missing, unsplit_rows=unsplit, warnings=warns,
                     unreadable=failures, checked=checked, contact_sheet=sheet)


def _near_policy(value: str | bool) -> str:
    if value is True:
        return "warn"
    if value is False:
        return "off"
    if value not in NEAR_DUPLICATE_POLICIES:
        raise ValueError(f"near_duplicates must be one of {', '.join(map(repr, NEAR_DUPLICATE_POLICIES))} "
                         f"(split.options.near_duplicates), got {value!r}")
    return str(value)


def duplicate_groups(
    manifest: Manifest,
    *,
    near_duplicates: str | bool = True,
    hash_size: int = 8,
    max_distance: int | None = None,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    flips: bool = True,
    cache: str | os.PathLike | None = None,
    workers: int = 0,
) -> np.ndarray:
    """A group key per row: patients merged with every image they share (byte-identical or near-duplicate).

    Connected components (union-find) over "same patient" and "duplicate image" links, so splitting on these
    groups keeps all copies of one scan, and everything linked to them, in one part. Unreadable images stay alone.
    ``near_duplicates``: any policy but "off" (or False) links near duplicates too.
    """
    near_duplicates = _near_policy(near_duplicates) != "off"
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
        for p in _near_pairs(fps, ids, np.full(n, ""), max_distance, hash_size, dihedral=flips,
                             min_similarity=min_similarity):
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
    files = [Path(p) for p in paths]
    store = _load_cache(cache)
    sizes: list[int | None] = []
    for p in files:
        try:
            sizes.append(p.stat().st_size)
        except OSError:
            sizes.append(None)
    size_count: dict[int, int] = defaultdict(int)
    for s in sizes:
        if s is not None:
            size_count[s] += 1

    def one(i: int) -> tuple[Fingerprint, ImageFailure | None]:
        p, size = files[i], sizes[i]
        if size is None:
            return Fingerprint(None, None), ImageFailure(str(p), "file not found")
        key = _cache_key(p)
        entry = dict(store.get(key, {}))
        need_sha = sha_all or size_count[size] > 1
        failure = None
        if need_sha and "sha256" not in entry:
            try:
                entry["sha256"] = _sha256(p)
            except OSError as e:
                return Fingerprint(None, None), ImageFailure(str(p), f"cannot read file ({e})")
        hkey = f"{_FP_VERSION}-phash{hash_size}x8"
        if hash_size is not None and hkey not in entry:
            try:
                entry[hkey] = _content_fingerprint(p, hash_size)
            except ImageDecodeError as e:
                failure = ImageFailure(e.path, e.problem)
        store[key] = entry
        content = entry.get(hkey) if hash_size is not None else None
        hashes = content["phash"] if content else None
        return Fingerprint(entry.get("sha256") if need_sha else None, hashes[0] if hashes else None,
                           tuple(hashes[1:]) if hashes else (), content.get("detail") if content else None), failure

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


def _content_fingerprint(path: Path, hash_size: int) -> dict:
    """Perceptual hashes of the content crop and its 7 flips/rotations (identity first), and its detail image."""
    import imagehash
    from PIL import Image

    size = max(_DECODE, hash_size * 4)
    grey = load_image_resized(path, size).max(axis=2)
    crop = crop_breast(grey, margin=0.0, clean=True).image
    if 8 <= min(crop.shape) < _MIN_CONTENT and min(grey.shape) >= size:
        # content small in a large frame (film digitised into a big black canvas): decode again, finer, so the
        # content is fingerprinted at the same scale as an unpadded copy
        size = min(int(size * _MIN_CONTENT / min(crop.shape)) + 1, _MAX_DECODE)
        grey = load_image_resized(path, size).max(axis=2)
        crop = crop_breast(grey, margin=0.0, clean=True).image
    if min(crop.shape) < 8:  # a sliver: hash the whole image rather than noise
        crop = grey
    im = Image.fromarray(crop)
    ops = [getattr(Image.Transpose, t.upper()) for t in TRANSFORMS]
    hashes = [str(imagehash.phash(x, hash_size=hash_size)) for x in [im, *(im.transpose(op) for op in ops)]]
    return {"phash": hashes, "detail": _detail(crop)}


def _detail(crop: np.ndarray) -> str:
    """64x64 band-pass (Gaussian sigma 1 minus sigma 3) of the content, outline excluded (the interior texture),
    as int8 base64.

    The outline and the overall brightness are what different breasts share; the texture inside is what a copy
    keeps. Resized to a square (like the hash), so resized copies align."""
    x = cv2.resize(crop.astype(np.float32), (_DETAIL, _DETAIL), interpolation=cv2.INTER_AREA)
    lo, hi = float(np.percentile(x, 5)), float(x.max())
    inside: np.ndarray = (x > lo + 0.04 * (hi - lo)).astype(np.uint8)
    inside = cv2.erode(inside, np.ones((7, 7), np.uint8))
    band = (cv2.GaussianBlur(x, (0, 0), 1) - cv2.GaussianBlur(x, (0, 0), 3)) * inside  # speckle and shading out
    peak = float(np.abs(band).max())
    q = np.zeros(band.shape, np.int8) if peak == 0 else np.round(band * (127 / peak)).astype(np.int8)
    return base64.b64encode(q.tobytes()).decode("ascii")


def _detail_array(b64: str) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(b64), dtype=np.int8).astype(np.float32).reshape(_DETAIL, _DETAIL)
    norm = float(np.sqrt((a * a).sum()))
    return a / norm if norm > 0 else a


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Highest normalised correlation of ``a`` with ``b`` under the 8 flips/rotations."""
    best = -1.0
    for k in range(4):
        r = np.rot90(b, k)
        best = max(best, float((a * r).sum()), float((a * r[:, ::-1]).sum()))
    return best


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


def _near_pairs(fps, ids, part, max_distance: int, hash_size: int, dihedral: bool = True,
                min_similarity: float | None = DEFAULT_MIN_SIMILARITY) -> list[dict]:
    """All pairs (i < j) of hashed images within ``max_distance`` bits, blockwise (memory ~ 256 x N x 8), whose
    detail similarity is at least ``min_similarity`` (None: hash only; images without a detail: hash only).

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
            i, j = int(idx[rows[x]]), int(idx[cols[y]])
            sim = None
            if min_similarity is not None and fps[i].detail and fps[j].detail:
                sim = _similarity(_detail_array(fps[i].detail), _detail_array(fps[j].detail))
                if sim < min_similarity:
                    continue
            pair = _pair(ids, part, i, j)
            pair["distance"] = int(dist[x, y])
            pair["transform"] = names[int(which[x, y])]
            pair["similarity"] = None if sim is None else round(sim, 3)
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
        if show_distance and p.get("similarity") is not None:
            dist += f", similarity {p['similarity']:.2f}"
        if p.get("transform", "identity") != "identity":
            dist += f", {p['transform'].replace('_', ' ')} copy"
        return f"{p['a']} ({p['parts'][0]}) ~ {p['b']} ({p['parts'][1]}{dist})"

    items = [fmt(p) for p in pairs[:limit]]
    more = f", ... and {len(pairs) - limit} more" if len(pairs) > limit else ""
    return "; ".join(items) + more
