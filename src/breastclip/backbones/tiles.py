"""High-resolution tiles of a (mammography) image: geometry, tissue-ranked selection, cutting, pooling.

A full-field mammogram (3000x4000 px) squeezed to 224 px loses lesions a few millimetres wide. The tile view cuts
the image, optionally downscaled first (``scale``, the magnification), into overlapping ``size`` x ``size`` tiles,
keeps the ``max_tiles`` tiles with the most breast tissue (at least ``min_tissue`` of their area; the best one is
always kept), and embeds each tile at the backbone's input size. Per image the tile embeddings form a *bag*, which
is pooled to one row (``pool``: mean, max, top-k mean per dimension) or handed to the attention-MIL head as a flat,
zero-padded bag (``pool = "bag"``; see :mod:`breastclip.heads.attention_mil`).

Memory: the decoded image is uint8 (never a float copy of the full frame); downscaling, the tissue mask (on a
<= 512 px working copy) and tile cutting stay uint8; tiles become float only inside the backbone, one batch at a
time. Config (``embed.options.tiles``)::

    tiles = {size = 224, overlap = 0.25, scale = 0.5, max_tiles = 64, min_tissue = 0.25, pool = "mean", top_k = 4}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from breastclip.data.breast import breast_mask

__all__ = ["POOLS", "TileSpec", "bag_matrix", "cut_tiles", "pool_bags", "tile_grid", "tissue_fraction"]

POOLS = ("mean", "max", "topk", "bag")
_WORK_SIZE = 512  # long side of the working copy the tissue mask is computed on


@dataclass(frozen=True)
class TileSpec:
    """Tile geometry and pooling. ``size``: tile side in pixels of the (scaled) image; ``overlap``: fraction of a
    tile shared with its neighbour; ``scale``: resize factor applied before tiling (0.5 = half resolution);
    ``max_tiles``: cap per image (most tissue first); ``min_tissue``: least breast-tissue fraction of a kept tile;
    ``pool``: mean | max | topk | bag; ``top_k``: tiles per dimension averaged by ``topk``."""

    size: int = 224
    overlap: float = 0.25
    scale: float = 1.0
    max_tiles: int = 64
    min_tissue: float = 0.25
    pool: str = "mean"
    top_k: int = 4

    def __post_init__(self) -> None:
        where = "embed.options.tiles"
        if int(self.size) < 16:
            raise ValueError(f"{where}.size must be >= 16 pixels, got {self.size}")
        if not 0.0 <= float(self.overlap) < 0.95:
            raise ValueError(f"{where}.overlap must be in [0, 0.95), got {self.overlap}")
        if not 0.0 < float(self.scale) <= 4.0:
            raise ValueError(f"{where}.scale must be in (0, 4], got {self.scale}")
        if int(self.max_tiles) < 1:
            raise ValueError(f"{where}.max_tiles must be >= 1, got {self.max_tiles}")
        if not 0.0 <= float(self.min_tissue) <= 1.0:
            raise ValueError(f"{where}.min_tissue must be in [0, 1], got {self.min_tissue}")
        if self.pool not in POOLS:
            raise ValueError(f"{where}.pool must be one of {POOLS}, got {self.pool!r}")
        if int(self.top_k) < 1:
            raise ValueError(f"{where}.top_k must be >= 1, got {self.top_k}")

    @property
    def stride(self) -> int:
        return max(1, int(round(self.size * (1.0 - self.overlap))))

    def cache_key(self) -> str:
        """What changes the tile embeddings (pooling does not: it happens on reading)."""
        return json.dumps({"size": int(self.size), "overlap": round(float(self.overlap), 6),
                           "scale": round(float(self.scale), 6), "max_tiles": int(self.max_tiles),
                           "min_tissue": round(float(self.min_tissue), 6)}, sort_keys=True)

    @classmethod
    def parse(cls, value: TileSpec | Mapping | bool | None) -> TileSpec | None:
        """A spec from a config value: a table of fields, ``true`` (defaults), or None / ``false`` (no tiles)."""
        if value is None or value is False:
            return None
        if isinstance(value, TileSpec):
            return value
        if value is True:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError(f"embed.options.tiles must be a table such as {{size = 224, overlap = 0.25}}, "
                             f"got {value!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"embed.options.tiles: unknown key(s) {unknown}; valid keys: {names}")
        return cls(**dict(value))


def tile_grid(height: int, width: int, size: int, stride: int) -> np.ndarray:
    """Top-left corners ``(k, 2)`` (row, col) of tiles covering an image; the last row / column is aligned to the
    far edge so no border is lost (images smaller than a tile get one tile at 0, padded when cut)."""
    def starts(n: int) -> list[int]:
        if n <= size:
            return [0]
        s = list(range(0, n - size + 1, stride))
        if s[-1] != n - size:
            s.append(n - size)
        return s

    rows, cols = starts(height), starts(width)
    return np.array([(r, c) for r in rows for c in cols], dtype=np.int64).reshape(-1, 2)


def tissue_mask(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Boolean breast mask on a <= 512 px working copy of ``image`` (:func:`breastclip.data.breast.breast_mask`:
    Otsu capped near black, largest component, so burned-in labels and markers are not tissue) and its scale
    factor (input pixels per mask pixel). An image without a dark background counts as tissue everywhere."""
    mask, _, found = breast_mask(image, work_size=_WORK_SIZE)
    h, w = image.shape[:2]
    f = max(1.0, max(h, w) / _WORK_SIZE)
    if not found or not mask.any():
        return np.ones(mask.shape, dtype=bool), f
    return mask.astype(bool), f


def tissue_fraction(mask: np.ndarray, mask_scale: float, corners: np.ndarray, size: int) -> np.ndarray:
    """Fraction of each tile (corners in image pixels, side ``size``) covered by ``mask`` (integral image)."""
    ii = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    mh, mw = mask.shape
    r0 = np.clip(np.floor(corners[:, 0] / mask_scale).astype(int), 0, mh)
    c0 = np.clip(np.floor(corners[:, 1] / mask_scale).astype(int), 0, mw)
    r1 = np.clip(np.ceil((corners[:, 0] + size) / mask_scale).astype(int), 0, mh)
    c1 = np.clip(np.ceil((corners[:, 1] + size) / mask_scale).astype(int), 0, mw)
    area = np.maximum((r1 - r0) * (c1 - c0), 1)
    inside = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
    return inside / area


def select_tiles(fractions: np.ndarray, max_tiles: int, min_tissue: float) -> np.ndarray:
    """Indices of the kept tiles, in grid (raster) order: the ``max_tiles`` with most tissue among those with at
    least ``min_tissue`` (ties by position); the tile with most tissue is always kept."""
    order = np.lexsort((np.arange(len(fractions)), -fractions))
    keep = [i for i in order if fractions[i] >= min_tissue][:max_tiles]
    if not keep:
        keep = [int(order[0])]
    return np.sort(np.asarray(keep, dtype=np.int64))


def cut_tiles(image: np.ndarray, spec: TileSpec, out_size: int, interpolation: str = "bilinear",
              mask: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> (tiles ``(k, 3, out_size, out_size)`` uint8, boxes ``(k, 4)`` top, left, bottom, right in
    the *input* image's pixels). ``mask``: a precomputed (tissue mask, scale) of ``image``."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    m, mf = mask if mask is not None else tissue_mask(image)
    scaled = image
    if spec.scale != 1.0:
        sw, sh = max(1, round(w * spec.scale)), max(1, round(h * spec.scale))
        scaled = np.asarray(Image.fromarray(image).resize((sw, sh), Image.Resampling.BILINEAR, reducing_gap=2.0
                                                          if spec.scale < 0.5 else None))
    sh, sw = scaled.shape[:2]
    corners = tile_grid(sh, sw, spec.size, spec.stride)
    frac = tissue_fraction(m, mf * spec.scale, corners, spec.size)
    keep = select_tiles(frac, spec.max_tiles, spec.min_tissue)
    resample = Image.Resampling.BILINEAR if interpolation == "bilinear" else Image.Resampling.BICUBIC
    tiles = np.zeros((len(keep), 3, out_size, out_size), dtype=np.uint8)
    s = spec.size
    for j, i in enumerate(keep):
        r, c = (int(v) for v in corners[i])
        patch = scaled[r:r + s, c:c + s]
        if patch.shape[:2] != (s, s):  # image smaller than a tile: pad with black
            patch = np.pad(patch, ((0, s - patch.shape[0]), (0, s - patch.shape[1]), (0, 0)))
        if s != out_size:
            patch = np.asarray(Image.fromarray(np.ascontiguousarray(patch)).resize((out_size, out_size), resample))
        tiles[j] = patch.transpose(2, 0, 1)
    inv = 1.0 / spec.scale
    boxes = np.stack([corners[keep, 0] * inv, corners[keep, 1] * inv,
                      np.minimum((corners[keep, 0] + s) * inv, h), np.minimum((corners[keep, 1] + s) * inv, w)],
                     axis=1).round().astype(np.int64)
    return tiles, boxes


# ---- pooling ------------------------------------------------------------------------------------------------
def _unit(X: np.ndarray) -> np.ndarray:
    return (X / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def pool_bags(bags: Sequence[np.ndarray], how: str = "mean", top_k: int = 4, max_tiles: int | None = None
              ) -> np.ndarray:
    """Bags ``[(k_i, d)]`` -> ``(n, d)`` L2-normalised rows (mean, max, or per-dimension mean of the ``top_k``
    largest values), or for ``how="bag"`` the flat zero-padded ``(n, max_tiles * d)`` matrix of :func:`bag_matrix`."""
    if how == "bag":
        return bag_matrix(bags, max_tiles or max((len(b) for b in bags), default=1))
    if how not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {how!r}")
    d = bags[0].shape[1] if len(bags) else 0
    out = np.zeros((len(bags), d), dtype=np.float64)
    for i, b in enumerate(bags):
        b = np.asarray(b, dtype=np.float64)
        if how == "mean":
            out[i] = b.mean(axis=0)
        elif how == "max":
            out[i] = b.max(axis=0)
        else:
            k = min(int(top_k), len(b))
            out[i] = np.sort(b, axis=0)[-k:].mean(axis=0)
    return _unit(out)


def bag_matrix(bags: Sequence[np.ndarray], max_tiles: int) -> np.ndarray:
    """Flat bags ``(n, max_tiles * d)``: each image's tile embeddings in order, zero rows as padding (the input of
    :class:`~breastclip.heads.attention_mil.AttentionMILHead` with ``tile_dim = d``)."""
    d = bags[0].shape[1] if len(bags) else 0
    out = np.zeros((len(bags), int(max_tiles), d), dtype=np.float32)
    for i, b in enumerate(bags):
        if len(b) > max_tiles:
            raise ValueError(f"bag {i} holds {len(b)} tiles, more than max_tiles={max_tiles}")
        out[i, :len(b)] = b
    return out.reshape(len(bags), -1)
