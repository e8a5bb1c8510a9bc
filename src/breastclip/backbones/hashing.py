"""Content hashes: image files (cache keys) and weight files (backbone fingerprints)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from pathlib import Path

from breastclip.atomic import atomic_write_bytes
from breastclip.user_cache import weights_fingerprints_file

_CHUNK = 1 << 20
_memo_lock = threading.Lock()


def file_hash(path: str | Path, digest_size: int = 16) -> str:
    """blake2b of the file bytes (hex). ~1 GB/s: a rerun over cached images costs only this."""
    h = hashlib.blake2b(digest_size=digest_size)
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_fingerprint(paths: Iterable[str | Path], cache_dir: Path | None = None) -> str:
    """Hash of several weight files, memoised by (path, size, mtime) so multi-GB checkpoints are hashed once."""
    memo_path = weights_fingerprints_file(cache_dir)
    with _memo_lock:
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        h = hashlib.blake2b(digest_size=16)
        changed = False
        for p in sorted(Path(x).resolve() for x in paths):
            st = p.stat()
            key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
            if key not in memo:
                memo[key] = file_hash(p)
                changed = True
            h.update(memo[key].encode())
        if changed:
            try:
                atomic_write_bytes(memo_path, json.dumps(memo, indent=0).encode())
            except OSError:
                pass  # read-only cache folder: the fingerprint is still right, just not memoised
    return h.hexdigest()


def tensors_fingerprint(state_dict: dict) -> str:
    """Hash of in-memory weights (for models without a weight file, e.g. the seeded tiny-test)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for k in sorted(state_dict):
        v = state_dict[k].detach().cpu().contiguous().view(-1)
        h.update(f"{k}|{v.dtype}|{tuple(state_dict[k].shape)}".encode())
        if v.numel():
            h.update(v.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
