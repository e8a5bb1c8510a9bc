"""Intensity scaling to 8 bit: min-max and percentile windows, exact and fast for integer (detector) data.

Integer images take a histogram + lookup-table path: the window comes from the histogram (weighted percentiles
equal to ``np.percentile``'s linear definition) and every pixel is mapped in one indexing pass, so a 16-bit
mammogram costs about as much as copying it. DICOM's Modality LUT and VOI run on the same per-value table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["PERCENTILE_WINDOW", "Intensity", "compact_values", "to_uint8", "window_bounds"]

PERCENTILE_WINDOW = (0.5, 99.5)
Intensity = Literal["auto", "minmax", "percentile"]


def to_uint8(arr: np.ndarray, mode: Literal["minmax", "percentile"] = "minmax",
             percentiles: tuple[float, float] = PERCENTILE_WINDOW, *,
             apply_to: np.ndarray | None = None) -> np.ndarray:
    """Scale any numeric array linearly to uint8 by its min..max or a percentile window (constant -> zeros).

    Integer images (16-bit detectors) take a fast exact path: a histogram gives the window, and a lookup table
    over the value range maps every pixel in one pass. ``apply_to``: map this array instead (e.g. an area-averaged
    copy of ``arr``) with the window found on ``arr``, so a reduced image gets the full image's window.
    """
    a = np.asarray(arr)
    if a.dtype == np.uint8 and apply_to is None:
        return a
    compact = compact_values(a, index=apply_to is None)
    if compact is not None:
        values, idx, counts = compact
        v = values.astype(np.float64)
        lo, hi = window_bounds(v, counts, mode, percentiles)
        lut = _window_to_uint8(v, lo, hi)
        if apply_to is None:
            return lut[idx]
        return lut[np.clip(np.asarray(apply_to, np.int64) - int(values[0]), 0, len(lut) - 1)]
    lo, hi = window_bounds(a.astype(np.float64, copy=False), None, mode, percentiles)
    return _window_to_uint8(np.asarray(a if apply_to is None else apply_to, np.float64), lo, hi)


def compact_values(a: np.ndarray, max_range: int = 1 << 20,
                   index: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For an integer image: (every value from min to max, index image into it, histogram), else None.

    Pointwise maps (rescale, window, LUT) then run once per possible value instead of once per pixel.
    ``index=False``: the histogram only (the index image comes back empty).
    """
    if a.dtype.kind not in "iu" or a.size < 4096:
        return None
    lo, hi = int(a.min()), int(a.max())
    if hi - lo >= max_range:
        return None
    if a.dtype.kind == "u":
        idx = a - a.dtype.type(lo)  # cannot underflow: every value >= lo
    else:
        idx = a.astype(np.int32 if a.itemsize <= 2 else np.int64) - lo
    counts = np.bincount(idx.ravel(), minlength=hi - lo + 1)
    return np.arange(lo, hi + 1, dtype=np.int64), idx if index else np.empty(0, np.int64), counts


def window_bounds(v: np.ndarray, counts: np.ndarray | None, mode: str,
                  percentiles: tuple[float, float] = PERCENTILE_WINDOW) -> tuple[float, float]:
    """(low, high) of ``v`` by min..max or percentiles; ``counts`` weights each value (a histogram)."""
    present = np.isfinite(v) if counts is None else (counts > 0) & np.isfinite(v)
    vals = v[present]
    if vals.size == 0:
        return 0.0, 0.0
    if mode != "percentile":
        return float(vals.min()), float(vals.max())
    if counts is None:
        lo, hi = np.percentile(vals, percentiles)
        return float(lo), float(hi)
    return _weighted_percentiles(vals, counts[present], percentiles)


def _weighted_percentiles(v: np.ndarray, w: np.ndarray, q: Sequence[float]) -> tuple[float, float]:
    """``np.percentile`` (linear) of the array in which each ``v[i]`` occurs ``w[i]`` times."""
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(w[order])
    n = int(cum[-1])
    out = []
    for qq in q:
        pos = qq / 100 * (n - 1)
        k = int(np.floor(pos))
        a = v[np.searchsorted(cum, k, side="right")]
        b = v[np.searchsorted(cum, min(k + 1, n - 1), side="right")]
        out.append(float(a + (b - a) * (pos - k)))
    return out[0], out[1]


def _gray_to_rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a


def _window_to_uint8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(a.shape, np.uint8)
    out = (np.clip(a, lo, hi) - lo) * (255.0 / (hi - lo))
    return np.nan_to_num(np.rint(out), nan=0.0).astype(np.uint8)
