"""Tile embeddings over a Manifest, streamed and cached: hash -> cache lookup -> decode + cut tiles in workers ->
encode tile batches on the device -> commit whole images.

The tile cache is an :class:`~breastclip.backbones.cache.EmbeddingCache` of its own (folder ``<backbone>@tiles-
<key>``) whose key adds the tile geometry (size, overlap, scale, cap, tissue threshold) to the backbone's weights,
preprocessing and precision. Its rows are tiles, keyed ``<image hash>#<tile>/<tiles in the image>``; all tiles of
an image are committed in one shard, so an image is cached whole or not at all (a killed run loses only the images
in flight). Workers return uint8 tiles; the main process packs tiles of several images into batches of
``batch_size`` tiles, so the device sees full batches and at most one batch of tiles is float at a time.
Single process (torchrun ranks each embed everything; distribute by manifest slices instead).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from breastclip.data.breast import crop_breast
from breastclip.data.images import ImageDecodeError, load_image
from breastclip.user_cache import cache_root as user_cache_root

from .base import Backbone, resolve_device, resolve_precision
from .cache import EmbeddingCache
from .encode import EmbeddingResult, _encode_safe, _hash_all, _progress, auto_num_workers
from .factory import as_entry, create_backbone, weights_fingerprint
from .preprocess import PREPROCESSING_OPTIONS, check_breast_options
from .registry import BackboneEntry
from .tiles import TileSpec, cut_tiles, pool_bags

__all__ = ["TileCache", "TileEmbeddingResult", "embed_tiles"]


@dataclass
class TileEmbeddingResult(EmbeddingResult):
    """:class:`EmbeddingResult` whose ``X`` is the pooled tile view (``spec.pool``); ``bags[i]`` holds the
    ``(k_i, d)`` tile embeddings of ``ids[i]`` and ``boxes[i]`` their (top, left, bottom, right) in the image, or
    in its breast crop with ``breast_crop`` (boxes only for images encoded in this call; cached images have ``None``)."""

    bags: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray | None] = field(default_factory=list)
    spec: TileSpec = field(default_factory=TileSpec)
    n_tiles: int = 0  # tiles encoded in this call

    def pooled(self, how: str, top_k: int | None = None) -> np.ndarray:
        """The bags pooled another way (mean / max / topk / bag) without re-embedding."""
        return pool_bags(self.bags, how, top_k or self.spec.top_k, self.spec.max_tiles)


class TileCache:
    """Per-image bags of tile embeddings in an :class:`EmbeddingCache` (rows = tiles)."""

    def __init__(self, cache_root: Path, entry: BackboneEntry, parts: dict, spec: TileSpec) -> None:
        self.cache = EmbeddingCache(cache_root, f"{entry.name}@tiles", {**parts, "tiles": spec.cache_key()})

    def counts(self) -> dict[str, int]:
        """Tiles per cached image hash."""
        keys = self.cache.index(refresh=True)["key"].astype(str)
        out: dict[str, int] = {}
        for k in keys:
            h, _, rest = k.partition("#")
            out[h] = int(rest.split("/")[1])
        return out

    def write(self, bags: Mapping[str, np.ndarray]) -> None:
        keys = [f"{h}#{i}/{len(b)}" for h, b in bags.items() for i in range(len(b))]
        self.cache.write(keys, np.concatenate(list(bags.values())))

    def read(self, hashes: Sequence[str], counts: Mapping[str, int]) -> list[np.ndarray]:
        keys = [f"{h}#{i}/{counts[h]}" for h in hashes for i in range(counts[h])]
        flat = self.cache.read(keys) if keys else np.zeros((0, 0), np.float32)
        out, pos = [], 0
        for h in hashes:
            out.append(flat[pos:pos + counts[h]])
            pos += counts[h]
        return out


class _TileDataset(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[tuple[str, str]], entry: BackboneEntry, spec: TileSpec) -> None:
        self.items, self.entry, self.spec = list(items), entry, spec

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        _, path = self.items[i]
        try:
            image = _breast_region(load_image(path), self.entry)
            tiles, boxes = cut_tiles(image, self.spec, self.entry.image_size, self.entry.interpolation)
        except ImageDecodeError as e:
            return i, None, None, e.problem
        except Exception as e:  # anything else about this one file: report it, keep going
            return i, None, None, f"{type(e).__name__}: {e}"
        return i, torch.from_numpy(tiles), boxes, None


def _breast_region(image: np.ndarray, entry: BackboneEntry) -> np.ndarray:
    """The breast crop when the entry asks for it (``embed.options.breast_crop``: burned-in labels blanked,
    optional flip), else the whole frame; tiles are ranked by breast tissue either way."""
    if entry.breast_crop:
        return crop_breast(image, flip_to=entry.flip_to or None, pad_square=entry.pad_square).image
    return image


def _compute(model: Backbone, entry: BackboneEntry, cache: TileCache, items: list[tuple[str, str]], spec: TileSpec,
             *, batch_size: int, num_workers: int, show: bool) -> tuple[dict[str, str], dict[str, np.ndarray], int]:
    """Encode the tiles of ``items`` (hash, path); commit whole images. Returns (failures, boxes, tiles encoded)."""
    ds = _TileDataset(items, entry, spec)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, shuffle=False, num_workers=num_workers,
        prefetch_factor=2 if num_workers else None,
        multiprocessing_context="fork" if num_workers and os.name == "posix" else None)
    failures: dict[str, str] = {}
    boxes: dict[str, np.ndarray] = {}
    queue: list[tuple[str, torch.Tensor]] = []  # (hash, uint8 tiles) waiting for the device
    queued = 0
    partial: dict[str, list[np.ndarray]] = {}
    expected: dict[str, int] = {}
    done: dict[str, np.ndarray] = {}
    n_tiles = 0

    def encode_queue() -> None:
        nonlocal queue, queued, n_tiles
        if not queue:
            return
        batch = torch.cat([t for _, t in queue])
        feats = _encode_safe(model, batch).cpu().numpy()
        pos = 0
        for h, t in queue:
            partial.setdefault(h, []).append(feats[pos:pos + len(t)])
            pos += len(t)
            if sum(len(p) for p in partial[h]) == expected[h]:
                done[h] = np.concatenate(partial.pop(h))
        n_tiles += len(batch)
        queue, queued = [], 0

    def commit(force: bool = False) -> None:
        if done and (force or sum(len(b) for b in done.values()) >= 512):
            cache.write(dict(done))
            done.clear()

    t0 = time.perf_counter()
    with _progress(len(items), f"{model.name} tiles", show) as bar:
        task = bar.add_task(f"embed {model.name} tiles", total=len(items), rate="")
        for i, tiles, bx, err in loader:
            h = items[i][0]
            if err is not None:
                failures[h] = err
            else:
                boxes[h] = np.asarray(bx)
                expected[h] = len(tiles)
                for start in range(0, len(tiles), batch_size):  # an image's tiles may span batches
                    part = tiles[start:start + batch_size]
                    if queued + len(part) > batch_size:
                        encode_queue()
                    queue.append((h, part))
                    queued += len(part)
                if queued >= batch_size:
                    encode_queue()
                commit()
            el = time.perf_counter() - t0
            bar.update(task, advance=1, rate=f"{n_tiles / el:,.1f} tiles" if el > 0 else "")
        encode_queue()
        commit(force=True)
    return failures, boxes, n_tiles


def embed_tiles(
    manifest,
    backbone: str | Backbone | BackboneEntry,
    tiles: TileSpec | Mapping | bool = True,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    progress: bool = True,
    **overrides,
) -> TileEmbeddingResult:
    """Embed the tiles of every image of ``manifest`` (see :mod:`breastclip.backbones.tiles` for the geometry) and
    pool them per image. ``X`` is ``(n, d)`` for pool mean / max / topk, ``(n, max_tiles * d)`` for ``bag``."""
    t0 = time.perf_counter()
    spec = TileSpec.parse(tiles)
    assert spec is not None
    cache_root = user_cache_root(cache_dir)
    model: Backbone | None = backbone if isinstance(backbone, Backbone) else None
    if model is not None:
        entry, dev, prec, fp = model.entry, model.device, model.precision, model.fingerprint
        stray = sorted(set(overrides) - set(PREPROCESSING_OPTIONS))
        if stray:
            raise TypeError(f"embed_tiles: {stray} cannot change an already built backbone; pass it by name")
        entry = replace(entry, **overrides)  # breast crop settings: pixels only, the model is unchanged
    else:
        assert not isinstance(backbone, Backbone)  # the branch above took a built one
        entry = as_entry(backbone, **overrides)
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        on_disk = weights_fingerprint(entry, cache_root)
        if on_disk is None:
            model = create_backbone(entry, dev, precision=prec)
            fp = model.fingerprint
            entry = replace(model.entry, **{k: getattr(entry, k) for k in PREPROCESSING_OPTIONS})
        else:
            fp = on_disk
    check_breast_options(entry)
    cache = TileCache(cache_root, entry, {
        "backbone": entry.name, "family": entry.family, "architecture": entry.architecture, "weights": fp,
        "preprocessing": entry.preprocessing_key(), "precision": prec}, spec)

    ids = manifest.df["id"].astype(str).tolist()
    paths = [str(p) for p in manifest.paths()]
    hashed = _hash_all(paths)
    key_path: dict[str, str] = {}
    for (k, _), p in zip(hashed, paths, strict=True):
        if k is not None:
            key_path.setdefault(k, p)
    counts = cache.counts()
    todo = [k for k in key_path if k not in counts]
    failures_by_key: dict[str, str] = {}
    boxes: dict[str, np.ndarray] = {}
    n_tiles = 0
    if todo:
        if model is None:
            model = create_backbone(entry, dev, precision=prec)
        bs = batch_size or (32 if dev.type == "cpu" else 256)
        nw = auto_num_workers(dev) if num_workers is None else num_workers
        failures_by_key, boxes, n_tiles = _compute(model, entry, cache, [(k, key_path[k]) for k in todo], spec,
                                                   batch_size=bs, num_workers=nw, show=progress)
        counts = cache.counts()
    ok, failures = [], []
    for i, (k, err) in enumerate(hashed):
        if k is not None and k in counts:
            ok.append(i)
        else:
            failures.append((ids[i], paths[i], err or failures_by_key.get(k or "", "not encoded (unknown reason)")))
    keys = [hashed[i][0] for i in ok]
    bags = cache.read(keys, counts) if ok else []  # type: ignore[arg-type]
    X = (pool_bags(bags, spec.pool, spec.top_k, spec.max_tiles) if bags
         else np.zeros((0, entry.embed_dim * (spec.max_tiles if spec.pool == "bag" else 1)), np.float32))
    return TileEmbeddingResult(
        X=X, ids=[ids[i] for i in ok], failures=failures, backbone=f"{entry.name}@tiles",
        cache_dir=str(cache.cache.dir), n_computed=len(todo) - len(failures_by_key), n_cached=len(key_path) - len(todo),
        seconds=time.perf_counter() - t0, bags=bags, boxes=[boxes.get(k) for k in keys], spec=spec,  # type: ignore[arg-type]
        n_tiles=n_tiles)
