"""Streaming extraction over a Manifest: hash -> look up the cache -> decode in workers -> encode on device -> commit.

Only images whose content hash is not cached are decoded and encoded, so a rerun costs one pass of file hashing.
DataLoader workers decode and resize to uint8; the uint8 batch goes to the device (pinned memory, non-blocking copy)
and is normalised there; the device-to-host copy of batch i overlaps the compute of batch i+1 on CUDA. Under
torchrun each rank hashes and encodes its own slice and writes its own shards; rank 0 merges the index.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from breastclip.distributed import DistContext, init_distributed
from breastclip.user_cache import cache_root as user_cache_root

from .base import Backbone, resolve_device, resolve_precision
from .cache import EmbeddingCache, PixelCache
from .factory import as_entry, create_backbone, weights_fingerprint
from .hashing import file_hash
from .preprocess import PREPROCESSING_OPTIONS, check_breast_options, load_for_model, spec_key
from .registry import DEFAULT_BACKBONE, BackboneEntry

_EXPENSIVE_SUFFIXES = (".dcm", ".dicom", ".dic", ".tif", ".tiff")


@dataclass
class EmbeddingResult:
    """Embeddings of the images that decoded, in manifest order. ``X[i]`` belongs to ``ids[i]``.

    Unpacks as ``X, ids, failures = result`` (the contract's tuple form)."""

    X: np.ndarray
    ids: list[str]
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (id, path, problem)
    backbone: str = ""
    cache_dir: str = ""
    n_computed: int = 0  # distinct images encoded in this call (all ranks)
    n_cached: int = 0  # distinct images found in the cache
    seconds: float = 0.0

    def __iter__(self):
        return iter((self.X, self.ids, self.failures))

    @property
    def images_per_second(self) -> float:
        return len(self.ids) / self.seconds if self.seconds > 0 else float("nan")


# ---- decoding (runs in DataLoader workers) ----------------------------------------------------------------------
class _DecodeDataset(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[tuple[str, str]], entry: BackboneEntry, pixels: PixelCache | None,
                 pixel_policy: str) -> None:
        self.items = list(items)
        self.entry = entry
        self.pixels = pixels
        self.policy = pixel_policy

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from breastclip.data.images import ImageDecodeError

        key, path = self.items[i]
        px = self.pixels.get(key) if self.pixels is not None else None
        if px is None:
            try:
                px = load_for_model(path, self.entry)
            except ImageDecodeError as e:
                return i, None, e.problem
            except Exception as e:  # anything else about this one file: report it, keep going
                return i, None, f"{type(e).__name__}: {e}"
            if self.pixels is not None and self._worth_keeping(path):
                try:
                    self.pixels.put(key, px)
                except OSError:
                    pass
        return i, torch.from_numpy(px), None

    def _worth_keeping(self, path: str) -> bool:
        """"always", or (auto) DICOM / TIFF, or a file of >= 4x the input area (its header says; cheap)."""
        if self.policy == "always" or path.lower().endswith(_EXPENSIVE_SUFFIXES):
            return True
        from PIL import Image

        try:
            with Image.open(path) as im:
                w, h = im.size
        except Exception:  # not something Pillow reads (DICOM without a suffix): decoding it was not cheap
            return True
        s = self.entry.image_size
        return w * h >= 4 * s * s


def _collate(items):
    ok = [(i, x) for i, x, _ in items if x is not None]
    return {
        "idx": [i for i, _ in ok],
        "x": torch.stack([x for _, x in ok]) if ok else None,
        "failed": [(i, err) for i, x, err in items if x is None],
    }


# ---- sizing ---------------------------------------------------------------------------------------------------
def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def auto_batch_size(entry: BackboneEntry, device: torch.device) -> int:
    """CPU: 32 (larger batches do not help on a few cores). CUDA: ~1024 ViT-B/32-sized images per batch, scaled
    down for larger inputs, finer patches and wider models, capped by free memory; OOM halves it anyway."""
    scale = (224 / entry.image_size) ** 2
    if device.type != "cuda":
        return max(4, int(32 * min(1.0, scale)))
    arch = entry.architecture.upper()
    cost = 4.0 if "L-14" in arch or "L/14" in arch else 2.0 if ("B-16" in arch or "PATCH16" in arch) else 1.0
    free, _ = torch.cuda.mem_get_info(device)
    by_mem = int(free / 2**30 * 24 / cost)  # ~40 MB per ViT-B/32 image with generous headroom
    return int(max(16, min(1024 * scale / cost, by_mem)))


def auto_num_workers(device: torch.device, world_size: int = 1) -> int:
    cpus = max(1, _cpu_count() // max(1, world_size))
    if device.type == "cuda":
        return max(2, min(16, cpus - 1))
    return max(0, min(4, cpus - 1))  # the model needs the cores on CPU: one decoder on a 2-core machine


# ---- encoding loop --------------------------------------------------------------------------------------------
def _encode_safe(model: Backbone, x: torch.Tensor) -> torch.Tensor:
    """encode_tensor, halving the batch on CUDA out-of-memory."""
    try:
        return model.encode_tensor(x)
    except torch.cuda.OutOfMemoryError:
        if len(x) == 1:
            raise
        torch.cuda.empty_cache()
        h = len(x) // 2
        return torch.cat([_encode_safe(model, x[:h]), _encode_safe(model, x[h:])])


def _progress(total: int, label: str, enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>9} img/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def _compute(model: Backbone, entry: BackboneEntry, cache: EmbeddingCache, items: list[tuple[str, str]], *,
             batch_size: int, num_workers: int, pixels: PixelCache | None, pixel_policy: str, rank: int, show: bool,
             total: int) -> tuple[list[tuple[str, str]], int]:
    """Encode ``items`` (key, path) and commit each batch; returns (failures as (key, problem), n encoded)."""
    dev = model.device
    ds = _DecodeDataset(items, entry, pixels, pixel_policy)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate,
        pin_memory=dev.type == "cuda", prefetch_factor=4 if num_workers else None,
        persistent_workers=False, multiprocessing_context="fork" if num_workers and os.name == "posix" else None)
    failures: list[tuple[str, str]] = []
    done = 0
    pending = None

    def flush(p) -> None:
        keys, host, event = p
        if event is not None:
            event.synchronize()
        cache.write(keys, host.numpy(), rank=rank)

    t0 = time.perf_counter()
    with _progress(total, model.name, show) as bar:
        task = bar.add_task(f"embed {model.name}", total=total, rate="")
        for batch in loader:
            failures.extend((items[i][0], err) for i, err in batch["failed"])
            if batch["x"] is not None:
                keys = [items[i][0] for i in batch["idx"]]
                feats = _encode_safe(model, batch["x"])
                if dev.type == "cuda":
                    host = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
                    host.copy_(feats, non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
                else:
                    host, event = feats, None
                if pending is not None:
                    flush(pending)
                pending = (keys, host, event)
                done += len(keys)
            n = len(batch["idx"]) + len(batch["failed"])
            el = time.perf_counter() - t0
            bar.update(task, advance=n, rate=f"{done / el:,.1f}" if el > 0 else "")
        if pending is not None:
            flush(pending)
    return failures, done


def _hash_all(paths: Sequence[str], workers: int = 8) -> list[tuple[str | None, str | None]]:
    """(content hash, None) or (None, problem) per path; threads overlap the reads (hashlib releases the GIL)."""
    def one(p: str):
        try:
            return file_hash(p), None
        except FileNotFoundError:
            return None, "file not found"
        except IsADirectoryError:
            return None, "is a directory, not an image file"
        except OSError as e:
            return None, f"cannot read: {e.strerror or e}"

    if len(paths) < 64:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(one, paths, chunksize=64))


def _breast_fields(entry: BackboneEntry) -> dict:
    return {k: getattr(entry, k) for k in PREPROCESSING_OPTIONS}


# ---- public API ---------------------------------------------------------------------------------------------
def embed_manifest(
    manifest,
    backbone: str | Backbone | BackboneEntry = DEFAULT_BACKBONE,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    pixel_cache: str = "auto",
    progress: bool = True,
    tiles: Mapping | bool | None = None,
    **overrides,
) -> EmbeddingResult:
    """Embed every image of ``manifest`` with ``backbone``, through the content-addressed cache.

    Returns an :class:`EmbeddingResult`: ``X`` (n, d) float32 L2-normalised rows for the ``ids`` that decoded, in
    manifest order, and ``failures`` (id, path, problem) for the rest. ``pixel_cache``: "auto" keeps resized uint8
    copies of expensive images (>= 4x the input area, DICOM, TIFF), "always", or "never". Under torchrun each rank
    processes its share and every rank returns the same full result. ``overrides`` replace backbone-entry fields;
    the mammography ones (``breast_crop``, ``flip_to``, ``pad_square``: see :mod:`breastclip.data.breast`) also apply
    to an already built backbone and are part of the cache key.

    ``tiles`` (config ``embed.options.tiles``): embed overlapping high-resolution tiles instead of the whole image
    and pool them per image (:mod:`breastclip.backbones.tiles`; returns a ``TileEmbeddingResult``).
    """
    if tiles is not None and tiles is not False:
        # lazy: tile_embed builds on this module's helpers, so it cannot be imported at the top
        from .tile_embed import embed_tiles

        return embed_tiles(manifest, backbone, tiles, cache_dir=cache_dir, batch_size=batch_size,
                           num_workers=num_workers, device=device, precision=precision, progress=progress,
                           **overrides)
    t0 = time.perf_counter()
    if pixel_cache not in ("auto", "always", "never"):
        raise ValueError(f"pixel_cache must be 'auto', 'always' or 'never', got {pixel_cache!r}")
    cache_root = user_cache_root(cache_dir)
    ctx = init_distributed(device if not isinstance(backbone, Backbone) else backbone.device)
    try:
        return _embed(manifest, backbone, ctx, cache_root, batch_size, num_workers, device, precision,
                      pixel_cache, progress, overrides, t0)
    finally:
        ctx.close()


def _embed(manifest, backbone, ctx: DistContext, cache_root: Path, batch_size, num_workers, device,
           precision, pixel_policy, progress, overrides, t0) -> EmbeddingResult:
    model: Backbone | None = backbone if isinstance(backbone, Backbone) else None
    if model is not None:
        entry, dev, prec, fp = model.entry, model.device, model.precision, model.fingerprint
        stray = sorted(set(overrides) - set(PREPROCESSING_OPTIONS))
        if stray:
            raise TypeError(f"embed_manifest: {stray} cannot change an already built backbone; pass it by name")
        entry = replace(entry, **overrides)  # breast crop settings: pixels only, the model is unchanged
        check_breast_options(entry)
    else:
        entry = as_entry(backbone, **overrides)
        check_breast_options(entry)
        dev = ctx.device or resolve_device(device)
        prec = resolve_precision(precision, dev)
        on_disk = weights_fingerprint(entry, cache_root)
        if on_disk is None:  # weights not on disk yet (hub) or built from code: build to learn the fingerprint
            model = create_backbone(entry, dev, precision=prec)
            # the loaded model may refine size/width (hf: ids)
            fp, entry = model.fingerprint, replace(model.entry, **_breast_fields(entry))
        else:
            fp = on_disk
    cache = EmbeddingCache(cache_root, entry.name, {
        "backbone": entry.name, "family": entry.family, "architecture": entry.architecture, "weights": fp,
        "preprocessing": entry.preprocessing_key(), "precision": prec})

    ids = manifest.df["id"].astype(str).tolist()
    paths = [str(p) for p in manifest.paths()]
    n = len(ids)
    mine = list(range(ctx.rank, n, ctx.world_size))
    hashed_mine = _hash_all([paths[i] for i in mine])
    keys: list[str | None] = [None] * n
    problems: dict[int, str] = {}
    for part in ctx.all_gather([(i, k, err) for i, (k, err) in zip(mine, hashed_mine, strict=True)]):
        for i, k, err in part:
            keys[i] = k
            if err:
                problems[i] = err
    key_path: dict[str, str] = {}
    for i, k in enumerate(keys):
        if k is not None:
            key_path.setdefault(k, paths[i])
    # one reading of the cache decides who encodes what: were each rank to read the index itself, a fast rank's
    # first committed batch could shorten a slower rank's list and shift every slice (images skipped or doubled)
    todo = ctx.broadcast_object(cache.missing(list(key_path)) if ctx.is_main else None)
    my_todo = todo[ctx.rank::ctx.world_size]
    key_fail: dict[str, str] = {}
    computed = 0
    if my_todo:
        if model is None:
            model = create_backbone(entry, dev, precision=prec)
            if replace(model.entry, **_breast_fields(entry)).preprocessing_key() != entry.preprocessing_key():
                raise RuntimeError(f"backbone '{entry.name}': preprocessing changed on loading; rerun")
        bs = batch_size or auto_batch_size(entry, dev)
        nw = auto_num_workers(dev, ctx.world_size) if num_workers is None else num_workers
        pixels = None if pixel_policy == "never" else PixelCache(cache_root, spec_key(entry))
        fails, computed = _compute(model, entry, cache, [(k, key_path[k]) for k in my_todo], batch_size=bs,
                                   num_workers=nw, pixels=pixels, pixel_policy=pixel_policy, rank=ctx.rank,
                                   show=progress and ctx.is_main, total=len(my_todo))
        key_fail.update(fails)
    gathered = ctx.all_gather((key_fail, computed))
    for kf, _ in gathered:
        key_fail.update(kf)
    computed = sum(c for _, c in gathered)
    ctx.barrier()
    if ctx.is_main and computed:
        cache.compact()
    ctx.barrier()
    have = set(cache.index(refresh=True)["key"])
    ok: list[int] = []
    failures: list[tuple[str, str, str]] = []
    for i in range(n):
        k = keys[i]
        if k is not None and k in have:
            ok.append(i)
        else:
            problem = problems.get(i) or key_fail.get(k or "", "not encoded (unknown reason)")
            failures.append((ids[i], paths[i], problem))
    X = cache.read([k for i in ok if (k := keys[i]) is not None]) if ok else np.zeros((0, cache.dim or entry.embed_dim), np.float32)
    return EmbeddingResult(X=X, ids=[ids[i] for i in ok], failures=failures, backbone=entry.name,
                           cache_dir=str(cache.dir), n_computed=computed, n_cached=len(key_path) - len(todo),
                           seconds=time.perf_counter() - t0)
