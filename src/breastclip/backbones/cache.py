"""Content-addressed, resumable embedding cache.

Layout under ``<cache_dir>/embeddings/<backbone>-<model key>/``::

    meta.json                what the key covers: backbone, weights fingerprint, preprocessing, precision, dim
    index.parquet            merged index: key (image content hash), shard, row
    shards/<id>.npy          float32 (k, d) embeddings of one batch (or a compacted run of batches)
    shards/<id>.parquet      that shard's index rows; written AFTER its .npy, so it is the commit record

Every file is written to a temp name, fsynced and renamed. A kill -9 leaves at most an orphan ``.npy`` of the batch in
flight (ignored, swept on the next compaction); committed shards are never touched by a writer. Several processes
(torchrun ranks) write their own shards concurrently; only one compacts, under a file lock.

The uint8 pixel cache (``<cache_dir>/pixels/<spec>/<ab>/<key>.npy``) keeps resized copies of expensive images
(large, 16-bit, DICOM) so a second backbone with the same input geometry skips decoding.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from breastclip.atomic import atomic_write_bytes
from breastclip.user_cache import embeddings_dir, pixels_dir

CACHE_FORMAT = 1
COMPACT_MIN_SHARDS = 16


def model_key(parts: dict) -> str:
    """Stable hash of everything that changes an embedding except the image: backbone, weights, preprocessing."""
    blob = json.dumps({**parts, "format": CACHE_FORMAT}, sort_keys=True).encode()
    return hashlib.blake2b(blob, digest_size=10).hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def read_parquet_file(path: Path) -> pd.DataFrame:
    """Read a parquet file from ONE open of it: pyarrow opens a path more than once (footer, then pages), so a
    concurrent atomic replace (compaction, gc) could hand it the footer of one file and the pages of another."""
    return pd.read_parquet(io.BytesIO(path.read_bytes()))


class EmbeddingCache:
    """One folder per (backbone, weights, preprocessing, precision); rows addressed by image content hash."""

    def __init__(self, cache_dir: str | Path, name: str, parts: dict) -> None:
        self.key = model_key(parts)
        self.parts = parts
        self.dir = embeddings_dir(cache_dir) / f"{_safe(name)}-{self.key}"
        self.shards = self.dir / "shards"
        self.shards.mkdir(parents=True, exist_ok=True)
        self._index: pd.DataFrame | None = None

    @classmethod
    def open(cls, folder: str | Path) -> EmbeddingCache:
        """An existing cache folder (``<root>/embeddings/<backbone>-<key>``), for maintenance (``breastclip cache``)."""
        self = cls.__new__(cls)
        self.dir = Path(folder)
        self.shards = self.dir / "shards"
        self.key = self.dir.name.rsplit("-", 1)[-1]
        try:
            self.parts = json.loads((self.dir / "meta.json").read_text())
        except (OSError, ValueError):
            self.parts = {}
        self._index = None
        return self

    @property
    def dim(self) -> int | None:
        """Embedding width, known once the first batch is committed (from meta.json)."""
        try:
            return int(json.loads((self.dir / "meta.json").read_text())["dim"])
        except (OSError, ValueError, KeyError):
            return None

    # ---- reading --------------------------------------------------------------------------------------------
    def index(self, refresh: bool = False) -> pd.DataFrame:
        """All committed rows (key, shard, row), duplicates dropped; merged index plus shards committed since."""
        if self._index is not None and not refresh:
            return self._index
        df = self.committed_rows().drop_duplicates("key", keep="first").reset_index(drop=True)
        self._index = df
        return df

    def committed_rows(self) -> pd.DataFrame:
        """Every committed row, duplicates included: the merged index first, then the shards committed since."""
        parts: list[pd.DataFrame] = []
        merged = self.dir / "index.parquet"
        known: set[str] = set()
        if merged.is_file():
            m = read_parquet_file(merged)
            parts.append(m)
            known = set(m["shard"].unique())
        for p in sorted(self.shards.glob("*.parquet")):
            if p.stem not in known:
                try:
                    parts.append(read_parquet_file(p))
                except Exception:  # a foreign or damaged file, or one a compaction just removed: never fatal
                    continue
        if not parts:
            return pd.DataFrame({"key": pd.Series(dtype=str), "shard": pd.Series(dtype=str),
                                 "row": pd.Series(dtype="int64")})
        return pd.concat(parts, ignore_index=True)

    def missing(self, keys: Sequence[str]) -> list[str]:
        have = set(self.index()["key"])
        return [k for k in dict.fromkeys(keys) if k not in have]

    def read(self, keys: Sequence[str]) -> np.ndarray:
        """Embeddings for ``keys`` in order (every key must be cached), gathered shard by shard via mmap."""
        try:
            return self._read(keys)
        except FileNotFoundError:  # another process compacted the shards we had indexed: look again once
            self._index = None
            return self._read(keys)

    def _read(self, keys: Sequence[str]) -> np.ndarray:
        idx = self.index().set_index("key")
        sel = idx.loc[list(keys)]
        dim = self.dim
        if dim is None and len(keys):
            raise KeyError(f"cache {self.dir} holds no embeddings yet")
        out = np.empty((len(keys), dim or 0), dtype=np.float32)
        pos = np.arange(len(keys))
        for shard, grp in pd.DataFrame({"shard": sel["shard"].to_numpy(), "row": sel["row"].to_numpy(),
                                        "pos": pos}).groupby("shard", sort=False):
            arr = np.load(self.shards / f"{shard}.npy", mmap_mode="r")
            out[grp["pos"].to_numpy()] = arr[grp["row"].to_numpy()]
        return out

    # ---- writing --------------------------------------------------------------------------------------------
    def write(self, keys: Sequence[str], X: np.ndarray, rank: int = 0) -> str:
        """Commit one batch: shard .npy first, then its index .parquet (the commit record). Returns the shard id."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        dim = self.dim
        if dim is None:
            dim = X.shape[1]
            atomic_write_bytes(self.dir / "meta.json", json.dumps(
                {**self.parts, "dim": dim, "format": CACHE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
                indent=1).encode())
        if X.ndim != 2 or X.shape != (len(keys), dim):
            raise ValueError(f"embedding batch shape {X.shape} does not match {len(keys)} keys x dim {dim}")
        shard = f"r{rank:03d}-{time.time_ns():x}-{uuid.uuid4().hex[:6]}"
        atomic_write_bytes(self.shards / f"{shard}.npy", _npy_bytes(X))
        rows = pd.DataFrame({"key": list(keys), "shard": shard, "row": np.arange(len(keys), dtype=np.int64)})
        atomic_write_bytes(self.shards / f"{shard}.parquet", _parquet_bytes(rows))
        self._index = None
        return shard

    @contextmanager
    def _lock(self):
        with open(self.dir / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def compact(self, min_shards: int = COMPACT_MIN_SHARDS) -> None:
        """Merge the shard indexes into index.parquet; fold many small shards into one; sweep orphans.

        Order keeps every step crash-safe: the new big shard is committed before the index points at it, and old
        files are deleted only after the index no longer needs them (a crash in between leaves duplicates, which
        lookups drop)."""
        with self._lock():
            df = self.index(refresh=True)
            small = df.groupby("shard")["row"].transform("size") < 4096
            small_shards = sorted(df.loc[small, "shard"].unique())
            old: list[str] = []
            if len(small_shards) >= min_shards:
                sub = df[df["shard"].isin(small_shards)]
                X = self.read(sub["key"].tolist())
                new = self.write(sub["key"].tolist(), X, rank=999)
                keep = df[~df["shard"].isin(small_shards)]
                df = pd.concat([keep, pd.DataFrame({"key": sub["key"].to_numpy(), "shard": new,
                                                    "row": np.arange(len(sub), dtype=np.int64)})], ignore_index=True)
                old = small_shards
            atomic_write_bytes(self.dir / "index.parquet", _parquet_bytes(df))
            live = set(df["shard"])
            for shard in old:
                (self.shards / f"{shard}.parquet").unlink(missing_ok=True)
                (self.shards / f"{shard}.npy").unlink(missing_ok=True)
            cutoff = time.time() - 3600  # orphans of killed runs (npy without parquet); spare runs in progress
            for p in self.shards.glob("*.npy"):
                if p.stem not in live and not (self.shards / f"{p.stem}.parquet").exists() \
                        and p.stat().st_mtime < cutoff:
                    p.unlink(missing_ok=True)
            for p in self.shards.glob(".*.tmp"):
                if p.stat().st_mtime < cutoff:
                    p.unlink(missing_ok=True)
            self._index = df


class PixelCache:
    """Resized uint8 (3, S, S) copies keyed by (geometry spec, image content hash)."""

    def __init__(self, cache_dir: str | Path, spec: str) -> None:
        self.dir = pixels_dir(cache_dir) / hashlib.blake2b(spec.encode(), digest_size=6).hexdigest()
        self.spec = spec

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None  # damaged copy: decode again (and overwrite it)

    def put(self, key: str, pixels: np.ndarray) -> None:
        if not (self.dir / "spec.json").is_file():
            atomic_write_bytes(self.dir / "spec.json", self.spec.encode())
        atomic_write_bytes(self.path(key), _npy_bytes(pixels))


def cache_dirs_of(cache_dir: str | Path) -> list[Path]:
    root = embeddings_dir(cache_dir)
    return sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []


__all__ = ["EmbeddingCache", "PixelCache", "cache_dirs_of", "model_key"]
