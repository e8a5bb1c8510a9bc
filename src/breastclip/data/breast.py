"""Breast-region preprocessing for full-field mammograms: crop to the breast, drop burned-in markers, flip, pad.

A full-field mammogram is mostly black background with the breast against one edge, plus burned-in labels
("R MLO", scanner marks, rulers) and, on digitised film, bright strips along the film edge. Resizing the whole frame
to a backbone's 224 px (or hashing it for duplicates) spends most pixels on background. :func:`crop_breast`:

1. works on a copy downscaled to at most ``work_size`` px on the long side (area filter), greyscale, 8 bit;
2. thresholds it with Otsu's method, capped at a low level (``max_threshold`` above black) so that the faint skin
   line and fatty periphery stay inside the mask even in dense breasts where Otsu would split fat from gland;
3. opens the mask (a small morphological opening detaches thin film-edge lines and labels touching the breast) and
   keeps the largest connected component: the breast. Labels and markers are other, smaller components;
4. crops the full-resolution image to that component's bounding box (plus a margin) and, with ``clean=True``, sets
   the other bright objects (labels, markers; dilated, never overlapping the breast) to the background level, so
   markers inside the box vanish too while dark fat inside the breast is left untouched;
5. optionally mirrors the crop so the chest wall is on one side (``flip_to``) and pads it to a square with the
   background level (``pad_square``) instead of stretching it.

The chest-wall side is read from the image (the side where the breast touches the frame edge), never from metadata:
digitised film sets (DDSM) do not follow one display convention. ``flip_to="L"`` puts the chest wall on the left,
the way a left breast is displayed (DICOM/IHE mammography hanging: chest walls facing each other, left breast on the
right-hand screen); ``"R"`` puts it on the right.

Images without a dark background (ROI crops, already-cropped images) are returned whole (``found=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["BreastCrop", "CHEST_WALL_SIDES", "breast_mask", "crop_breast"]

CHEST_WALL_SIDES = ("L", "R")
_MIN_BACKGROUND = 0.05  # below this fraction of dark pixels the image has no background to crop


@dataclass(frozen=True)
class BreastCrop:
    """Result of :func:`crop_breast`.

    ``image``: the crop (same dtype and channels as the input; flipped and padded when asked). ``bbox``:
    ``(top, left, bottom, right)`` of the crop in the input image, half-open. ``chest_wall``: "L" or "R", the side
    of the *input* image where the chest wall is. ``flipped``: the crop was mirrored left-right. ``found``: a
    breast region was found against a background (False: whole image kept). ``area_fraction``: breast mask area
    over the input image's area.
    """

    image: np.ndarray
    bbox: tuple[int, int, int, int]
    chest_wall: str
    flipped: bool
    found: bool
    area_fraction: float


_CV_DTYPES = (np.uint8, np.uint16, np.float32)  # what OpenCV resizes, flips and pads natively


def _grey_small(image: np.ndarray, work_size: int) -> tuple[np.ndarray, float]:
    """uint8 greyscale copy with the long side <= work_size, stretched to 0..255 (see the comment on the range)."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., :3] if a.shape[2] >= 3 else a[..., 0]
    if a.dtype not in _CV_DTYPES:
        a = a.astype(np.float32)
    h, w = a.shape[:2]
    scale = max(1.0, max(h, w) / work_size)
    small = a
    if scale > 1:  # resize first (all channels, native dtype), reduce channels on the small copy: cheap
        small = cv2.resize(np.ascontiguousarray(a), (max(1, round(w / scale)), max(1, round(h / scale))),
                           interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = small.max(axis=2)
    small = small.astype(np.float32, copy=False)
    # the range: darkest level to the 99.5th percentile of the pixels that are not background, so neither a few hot
    # pixels nor the amount of black around the breast (a film digitised into a larger canvas) moves the threshold
    lo, top = float(small.min()), float(small.max())
    above = small[small > lo + 0.02 * (top - lo)]
    hi = float(np.percentile(above, 99.5)) if above.size else top
    if hi <= lo:
        return np.zeros(small.shape, np.uint8), scale
    return np.clip((small - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8), scale


def breast_mask(image: np.ndarray, *, work_size: int = 512, max_threshold: int = 10) -> tuple[np.ndarray, np.ndarray, bool]:
    """Masks on the downscaled working copy (uint8 0/1): the breast, the other bright objects (labels, markers,
    film-edge strips), and whether a background was found.

    Foreground: brighter than Otsu's threshold or ``max_threshold`` above the darkest level (of 255 after a min-max
    stretch), whichever is lower: mammogram backgrounds are flat and near black, so a low threshold keeps the skin
    line and fatty periphery that Otsu alone cuts off. Then a small opening and the largest component.
    """
    small, _ = _grey_small(image, work_size)
    empty = np.zeros(small.shape, np.uint8)
    if small.max() == 0:
        return empty, empty, False
    otsu, _ = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    t = max(1.0, min(float(otsu), float(max_threshold)))
    fg = (small > t).astype(np.uint8)
    if 1.0 - fg.mean() < _MIN_BACKGROUND:
        return np.ones(small.shape, np.uint8), empty, False
    rows, cols = np.nonzero(fg.any(axis=1))[0], np.nonzero(fg.any(axis=0))[0]
    extent = min(rows[-1] - rows[0], cols[-1] - cols[0]) + 1  # of the content, not the frame: padding-invariant
    k = max(3, (int(extent) // 100) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    opened = cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(opened if opened.any() else fg, connectivity=8)
    if n <= 1:
        return np.ones(small.shape, np.uint8), empty, False
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = (lab == best).astype(np.uint8)
    # the opening shaved the skin line: grow back by the kernel, inside the thresholded foreground only
    mask = np.bitwise_and(cv2.dilate(mask, kernel), fg)
    others = np.bitwise_and(fg, 1 - cv2.dilate(mask, kernel))
    return mask, others, True


def _chest_wall_side(mask: np.ndarray) -> str:
    """"L" or "R": the image side where the breast meets the frame (more mask in the outer columns), else the
    side nearer the mask's centroid."""
    w = mask.shape[1]
    band = max(1, w // 20)
    left, right = int(mask[:, :band].sum()), int(mask[:, w - band:].sum())
    if left != right:
        return "L" if left > right else "R"
    cols = np.nonzero(mask.any(axis=0))[0]
    return "L" if cols.size == 0 or cols.mean() <= (w - 1) / 2 else "R"


def crop_breast(
    image: np.ndarray,
    *,
    flip_to: str | None = None,
    pad_square: bool = False,
    clean: bool = True,
    margin: float = 0.01,
    work_size: int = 512,
    max_threshold: int = 10,
) -> BreastCrop:
    """Crop a mammogram to the breast (see the module docstring for the steps).

    ``image``: (H, W) or (H, W, C) array of any numeric dtype (uint8 RGB from :func:`~breastclip.data.images.
    load_image`, or 16-bit greyscale). ``flip_to``: None (keep), "L" (chest wall on the left) or "R".
    ``pad_square``: pad the short side with the background level to a square (the chest wall stays on its edge).
    ``clean``: blank burned-in labels and markers (bright objects apart from the breast) inside the box.
    ``margin``: extra border around the breast, as a fraction of the image's long side.
    """
    a = np.asarray(image)
    if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1 or (a.ndim == 3 and a.shape[2] < 1):
        raise ValueError(f"crop_breast expects an (H, W) or (H, W, C) image, got shape {a.shape}")
    if flip_to is not None and flip_to not in CHEST_WALL_SIDES:
        raise ValueError(f"flip_to must be None, 'L' or 'R' (the side the chest wall goes to), got {flip_to!r}")
    h, w = a.shape[:2]
    mask, others, found = breast_mask(a, work_size=work_size, max_threshold=max_threshold)
    side = _chest_wall_side(mask)
    step = max(1, max(h, w) // 1024)  # the background level from a strided sample: a full reduction is slow
    background = a[::step, ::step].min(axis=(0, 1))
    if found:
        sy, sx = h / mask.shape[0], w / mask.shape[1]
        rows = np.nonzero(mask.any(axis=1))[0]
        cols = np.nonzero(mask.any(axis=0))[0]
        m = int(round(margin * max(h, w)))
        top, bottom = max(0, int(rows[0] * sy) - m), min(h, int(np.ceil((rows[-1] + 1) * sy)) + m)
        left, right = max(0, int(cols[0] * sx) - m), min(w, int(np.ceil((cols[-1] + 1) * sx)) + m)
        out = a[top:bottom, left:right].copy()
        if clean and others.any():
            k = 2 * max(1, int(round(margin * max(mask.shape)))) + 1
            grown = cv2.dilate(others, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) & (1 - mask)
            _blank(out, grown, (sy, sx), (top, left), background)
        area = float(mask.mean())
    else:
        top, left, bottom, right = 0, 0, h, w
        out = a.copy()
        area = 1.0
    flipped = flip_to is not None and found and side != flip_to
    if flipped:
        out = cv2.flip(out, 1) if _cv_ok(out) else np.ascontiguousarray(out[:, ::-1])
    if pad_square:
        out = _pad_square(out, background, chest_wall=(flip_to or side) if flipped else side)
    return BreastCrop(image=out, bbox=(top, left, bottom, right), chest_wall=side, flipped=bool(flipped),
                      found=found, area_fraction=area)


def _cv_ok(a: np.ndarray) -> bool:
    return a.dtype in _CV_DTYPES and (a.ndim == 2 or a.shape[2] <= 4)


def _blank(out: np.ndarray, small_mask: np.ndarray, scale: tuple[float, float], origin: tuple[int, int],
           fill) -> None:
    """Set ``out`` (a crop whose top-left is ``origin`` in the full image) to ``fill`` where the upscaled
    ``small_mask`` is set, one object's box at a time (labels are small: no full-resolution mask is built)."""
    sy, sx = scale
    n, lab, stats, _ = cv2.connectedComponentsWithStats(small_mask, connectivity=8)
    for i in range(1, n):
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        y0, y1 = int(y * sy), int(np.ceil((y + bh) * sy))
        x0, x1 = int(x * sx), int(np.ceil((x + bw) * sx))
        piece = cv2.resize((lab[y:y + bh, x:x + bw] == i).astype(np.uint8), (x1 - x0, y1 - y0),
                           interpolation=cv2.INTER_NEAREST)
        cy0, cx0 = max(y0, origin[0]), max(x0, origin[1])
        cy1, cx1 = min(y1, origin[0] + out.shape[0]), min(x1, origin[1] + out.shape[1])
        if cy1 <= cy0 or cx1 <= cx0:
            continue
        sub = piece[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] > 0
        out[cy0 - origin[0]:cy1 - origin[0], cx0 - origin[1]:cx1 - origin[1]][sub] = fill


def _pad_square(a: np.ndarray, fill, *, chest_wall: str) -> np.ndarray:
    """Pad to a square with ``fill``: rows centred, columns added on the side away from the chest wall."""
    h, w = a.shape[:2]
    if h == w:
        return a
    s = max(h, w)
    y = (s - h) // 2
    x = 0 if chest_wall == "L" else s - w
    top, bottom, left, right = y, s - h - y, x, s - w - x
    if _cv_ok(a):
        value = [float(v) for v in np.atleast_1d(fill)]
        return cv2.copyMakeBorder(a, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)
    out = np.empty((s, s, *a.shape[2:]), dtype=a.dtype)
    out[...] = fill
    out[y:y + h, x:x + w] = a
    return out
