"""Looking after the user's cache (``breastclip cache ls | verify | gc | clear``), safe while other runs write.

It knows the embedding folders, the pixel caches and the cross-validation cache (``cv_folds/``: one ``.npz`` of
fold results per candidate, one ``refit-<key>/`` head per chosen point; see :mod:`breastclip.user_cache`).

Writers never need the maintenance lock: a shard is committed by its ``.parquet`` written after its ``.npy``, and
readers that lose a shard to a concurrent clean-up look again once (:meth:`EmbeddingCache.read`). So:

* ``gc`` works under each cache folder's compaction lock: it rewrites the merged index without duplicate rows, then
  deletes the shards no row points to any more (parallel runs that embedded the same images leave such duplicates),
  and orphans (an ``.npy`` without its ``.parquet``, a temp file) older than an hour, never a batch in flight.
* ``verify`` also opens every fold result; ``gc`` removes the fold cache's orphaned temp files older than an hour.
* ``clear`` removes cache folders (the fold cache is one folder), but spares those written to in the last ``busy_minutes`` (a run in progress)
  unless told otherwise; a folder is first renamed away (atomic), then deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from breastclip.atomic import TMP_SUFFIX, atomic_write_bytes
from breastclip.backbones.cache import EmbeddingCache, _parquet_bytes
from breastclip.heads.io import CONFIG_FILE, WEIGHTS_FILE
from breastclip.heads.model_selection import REFIT_PREFIX
from breastclip.user_cache import cache_root, cv_folds_dir, embeddings_dir, pixels_dir

ORPHAN_AGE_S = 3600
BUSY_MINUTES = 10


@dataclass
class CacheFolder:
    """One embedding cache folder, the pixel cache of one input geometry, or the cross-validation fold results."""

    kind: str  # embeddings | pixels | cv_folds
    path: Path
    backbone: str
    rows: int
    shards: int
    bytes: int
    modified: float
    problems: list[str] = field(default_factory=list)

    def to_dict(self, root: Path) -> dict:
        return {"kind": self.kind, "folder": self.path.relative_to(root).as_posix(), "backbone": self.backbone,
                "rows": self.rows, "shards": self.shards, "bytes": self.bytes,
                "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.modified)), "problems": self.problems}


def _size(folder: Path) -> tuple[int, float, int]:
    """Bytes, latest modification time and file count under ``folder`` (files vanishing meanwhile are skipped)."""
    total, latest, n = 0, 0.0, 0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            try:
                st = os.stat(os.path.join(dirpath, f))
            except OSError:
                continue
            total, latest, n = total + st.st_size, max(latest, st.st_mtime), n + 1
    return total, latest, n


def list_cache(root: str | Path | None = None) -> list[CacheFolder]:
    """Every embedding and pixel cache folder under the cache root, and the fold results' folder (rows: entries)."""
    out: list[CacheFolder] = []
    emb = embeddings_dir(root)
    for d in sorted(p for p in emb.glob("*") if p.is_dir()) if emb.is_dir() else []:
        cache = EmbeddingCache.open(d)
        size, modified, _ = _size(d)
        try:
            rows = len(cache.index(refresh=True))
        except Exception as e:  # a damaged index is reported, never fatal
            rows = 0
            cache.parts.setdefault("_problem", str(e))
        shards = len(list(cache.shards.glob("*.parquet"))) if cache.shards.is_dir() else 0
        out.append(CacheFolder("embeddings", d, str(cache.parts.get("backbone", d.name.rsplit("-", 1)[0])), rows,
                               shards, size, modified))
    pix = pixels_dir(root)
    for d in sorted(p for p in pix.glob("*") if p.is_dir()) if pix.is_dir() else []:
        size, modified, n = _size(d)
        out.append(CacheFolder("pixels", d, "", max(n - 1, 0), 0, size, modified))
    folds = cv_folds_dir(root)
    if folds.is_dir():
        size, modified, _ = _size(folds)
        n = len(list(folds.glob("*.npz"))) + len(list(folds.glob(f"{REFIT_PREFIX}*")))
        out.append(CacheFolder("cv_folds", folds, "", n, 0, size, modified))
    return out


FOLD_ARRAYS = ("scores", "oof")  # what heads.model_selection saves per candidate


def _verify_folds(folder: CacheFolder) -> None:
    """Every fold result opens and holds its arrays, every cached refit has its two files (a damaged entry is
    recomputed by the next run; say so here)."""
    for d in sorted(folder.path.glob(f"{REFIT_PREFIX}*")):
        try:
            json.loads((d / CONFIG_FILE).read_text())
        except (OSError, ValueError) as e:
            folder.problems.append(f"{d.name}: {CONFIG_FILE} unreadable ({e})")
        if not (d / WEIGHTS_FILE).is_file():
            folder.problems.append(f"{d.name}: {WEIGHTS_FILE} is missing")
    for p in sorted(folder.path.glob("*.npz")):
        try:
            with np.load(p) as z:
                missing = [k for k in FOLD_ARRAYS if k not in z.files]
                if not missing:
                    scores, oof = z["scores"], z["oof"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            folder.problems.append(f"{p.name}: unreadable ({e})")
            continue
        if missing:
            folder.problems.append(f"{p.name}: missing {', '.join(missing)}")
        elif scores.ndim != 1 or oof.ndim != 3:
            folder.problems.append(f"{p.name}: scores {scores.shape} / out-of-fold {oof.shape} are not fold results")


def verify_cache(root: str | Path | None = None) -> list[CacheFolder]:
    """Each embedding folder checked: meta.json, every indexed shard present with the rows and width it claims;
    every CV fold result opens and holds its arrays."""
    folders = list_cache(root)
    for f in folders:
        if f.kind == "cv_folds":
            _verify_folds(f)
        if f.kind != "embeddings":
            continue
        cache = EmbeddingCache.open(f.path)
        dim = cache.dim
        if dim is None:
            f.problems.append("meta.json missing or unreadable (the folder holds no usable embeddings)")
            continue
        try:
            index = cache.index(refresh=True)
        except Exception as e:
            f.problems.append(f"index unreadable: {e}")
            continue
        for shard, grp in index.groupby("shard"):
            npy = cache.shards / f"{shard}.npy"
            try:
                arr = np.load(npy, mmap_mode="r")
            except FileNotFoundError:
                if (cache.shards / f"{shard}.parquet").exists() or (cache.dir / "index.parquet").exists():
                    f.problems.append(f"shard {shard}: {npy.name} is missing")
                continue
            except (OSError, ValueError) as e:
                f.problems.append(f"shard {shard}: {npy.name} unreadable ({e})")
                continue
            if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] <= int(grp["row"].max()):
                f.problems.append(f"shard {shard}: shape {arr.shape} does not hold rows up to "
                                  f"{int(grp['row'].max())} of width {dim}")
    return folders


@dataclass
class GcResult:
    shards_removed: int = 0
    orphans_removed: int = 0
    bytes_freed: int = 0


def gc_cache(root: str | Path | None = None, *, orphan_age_s: float = ORPHAN_AGE_S) -> GcResult:
    """Remove shards no index row points to (duplicates of parallel runs) and old orphans; keep every row."""
    result = GcResult()
    folds = cv_folds_dir(root)
    cutoff = time.time() - orphan_age_s
    for p in folds.glob(f".*{TMP_SUFFIX}") if folds.is_dir() else []:  # a fold result's write that never finished
        try:
            old = p.stat().st_mtime < cutoff
        except OSError:
            continue
        if old and p.is_dir():  # a refitted head's folder
            result.bytes_freed += _size(p)[0]
            shutil.rmtree(p, ignore_errors=True)
        elif old:
            result.bytes_freed += _unlink(p)
        result.orphans_removed += int(old)
    for f in list_cache(root):
        if f.kind != "embeddings" or not f.path.joinpath("shards").is_dir():
            continue
        cache = EmbeddingCache.open(f.path)
        with cache._lock():
            everything = cache.committed_rows()
            kept = everything.drop_duplicates("key", keep="first").reset_index(drop=True)
            live = set(kept["shard"])
            atomic_write_bytes(cache.dir / "index.parquet", _parquet_bytes(kept))
            for shard in sorted(set(everything["shard"]) - live):
                for p in (cache.shards / f"{shard}.parquet", cache.shards / f"{shard}.npy"):
                    result.bytes_freed += _unlink(p)
                result.shards_removed += 1
            cutoff = time.time() - orphan_age_s
            for p in list(cache.shards.glob("*.npy")) + list(cache.shards.glob(f".*{TMP_SUFFIX}")):
                if p.suffix == ".npy" and (p.stem in live or (cache.shards / f"{p.stem}.parquet").exists()):
                    continue
                try:
                    old = p.stat().st_mtime < cutoff
                except OSError:
                    continue
                if old:
                    result.bytes_freed += _unlink(p)
                    result.orphans_removed += 1
    return result


def _unlink(p: Path) -> int:
    try:
        size = p.stat().st_size
        p.unlink()
        return size
    except FileNotFoundError:
        return 0


@dataclass
class ClearResult:
    removed: list[Path] = field(default_factory=list)
    busy: list[Path] = field(default_factory=list)
    bytes_freed: int = 0


def clear_cache(root: str | Path | None = None, *, busy_minutes: float = BUSY_MINUTES) -> ClearResult:
    """Delete cache folders; those written in the last ``busy_minutes`` (a run in progress) are spared (0: none)."""
    result = ClearResult()
    now = time.time()
    for f in list_cache(root):
        if busy_minutes > 0 and now - f.modified < busy_minutes * 60:
            result.busy.append(f.path)
            continue
        trash = f.path.with_name(f".trash-{uuid.uuid4().hex[:8]}-{f.path.name}")
        try:
            os.rename(f.path, trash)  # atomic: readers see the folder or nothing
        except FileNotFoundError:
            continue
        shutil.rmtree(trash, ignore_errors=True)
        result.removed.append(f.path)
        result.bytes_freed += f.bytes
    return result


def summary_json(folders: list[CacheFolder], root: str | Path | None = None) -> str:
    base = cache_root(root)
    return json.dumps([f.to_dict(base) for f in folders], indent=2)
