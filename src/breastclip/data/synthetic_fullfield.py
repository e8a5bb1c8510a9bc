"""A synthetic full-field mammography set: whole breasts on a black background with lesions too small for 224 px.

Each patient has one screening exam of four images: left and right breast (``laterality`` L / R) in ``CC`` and
``MLO`` views. The breast is a textured half-ellipse against the chest-wall edge (right breast: chest wall on the
left of the image, left breast: on the right, as displayed), with a skin line, fibroglandular texture whose
brightness follows the BI-RADS density, and for MLO views a pectoral-muscle triangle in the upper chest-wall corner.

A **malignant** breast holds a cluster of microcalcifications (``n_calcs`` bright dots of radius ``calc_radius``
pixels within ``cluster_radius`` pixels) in both of its views, at different positions; a **normal** breast holds
none but the same texture, and every breast gets the same number of isolated single bright specks (benign
calcifications), so neither brightness nor "a bright dot somewhere" separates the classes; the *cluster* does. At
the default 1024 px a dot of radius 1.5 px shrinks to a third of a pixel at 224 px and its contrast drops below the
texture's, while a 224-px tile at native resolution shows it plainly.

Files: ``root/<label>/<patient>_<L|R>_<view>.png`` (8-bit greyscale) and ``root/labels.csv`` with image, label,
patient_id, exam_id, laterality, view, density and the cluster centre (``lesion_x``, ``lesion_y``; empty for
normal breasts). Labels are per breast; the exam label is the worst breast's. Same arguments, same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter

from .manifest import Manifest
from .synthetic import _DENSITY, _write_bytes, _write_png

__all__ = ["FULLFIELD_CLASSES", "make_synthetic_fullfield", "render_breast"]

FULLFIELD_CLASSES = ("normal", "malignant")


def make_synthetic_fullfield(
    root: str | os.PathLike,
    n_patients: int = 24,
    size: int = 1024,
    seed: int = 0,
    *,
    malignant_fraction: float = 0.5,
    n_calcs: int = 7,
    calc_radius: float = 1.5,
    cluster_radius: float = 14.0,
    calc_contrast: float = 0.45,
    overwrite: bool = False,
) -> Manifest:
    """Write the set under ``root`` and return its Manifest (classes normal, malignant; no split).

    About ``malignant_fraction`` of the patients have one malignant breast (side at random), the others none.
    ``size``: image side in pixels (square frames); lesion geometry is in pixels, so a larger ``size`` makes the
    lesions relatively smaller.
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    if size < 128:
        raise ValueError(f"size must be >= 128 pixels, got {size}")
    if not 0.0 <= malignant_fraction <= 1.0:
        raise ValueError(f"malignant_fraction must be in [0, 1], got {malignant_fraction}")
    root = Path(root)
    n_sick = int(round(n_patients * malignant_fraction))
    sick = np.random.default_rng([seed, 7]).permutation(np.arange(n_patients) < n_sick)
    rows: list[dict] = []
    for i in range(n_patients):
        rng = np.random.default_rng([seed, 11, i])
        pid = f"FF{i + 1:04d}"
        density = str(rng.choice(list(_DENSITY), p=[0.15, 0.35, 0.35, 0.15]))
        sick_side = str(rng.choice(["L", "R"])) if sick[i] else ""
        for lat in ("L", "R"):
            label = "malignant" if lat == sick_side else "normal"
            for view in ("CC", "MLO"):
                img, centre = render_breast(rng, size, density=density, laterality=lat, view=view,
                                            lesion=label == "malignant", n_calcs=n_calcs, calc_radius=calc_radius,
                                            cluster_radius=cluster_radius, calc_contrast=calc_contrast)
                rel = f"{label}/{pid}_{lat}_{view}.png"
                _write_png(root / rel, img, overwrite)
                rows.append({"image": rel, "label": label, "patient_id": pid, "exam_id": f"{pid}-E1",
                             "laterality": lat, "view": view, "density": density,
                             "lesion_x": round(centre[0], 1) if centre else "",
                             "lesion_y": round(centre[1], 1) if centre else ""})
    table = pd.DataFrame(rows)
    _write_bytes(root / "labels.csv", table.to_csv(index=False, lineterminator="\n").encode(), overwrite)
    manifest = Manifest.from_records(table, root, name=f"synthetic-fullfield-{seed}", source="synthetic_fullfield",
                                     classes=list(FULLFIELD_CLASSES))
    manifest.notes.append(f"synthetic full-field mammograms: {n_patients} patients x 4 views, {size}px, seed {seed}; "
                          "microcalcification clusters invisible at 224 px; not real data")
    return manifest


def render_breast(rng: np.random.Generator, size: int, *, density: str, laterality: str, view: str, lesion: bool,
                  n_calcs: int = 7, calc_radius: float = 1.5, cluster_radius: float = 14.0,
                  calc_contrast: float = 0.45) -> tuple[np.ndarray, tuple[float, float] | None]:
    """One view: (uint8 image, cluster centre (x, y) in pixels or None)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # breast outline: half-ellipse from the chest wall (x = 0 before mirroring), slightly irregular
    depth = rng.uniform(0.55, 0.75) * size
    half_h = rng.uniform(0.36, 0.46) * size
    cy = rng.uniform(0.45, 0.55) * size
    theta = np.arctan2(yy - cy, xx)
    wobble = 1 + 0.03 * np.sin(3 * theta + rng.uniform(0, 6.28)) + 0.02 * np.sin(5 * theta + rng.uniform(0, 6.28))
    r = np.sqrt((xx / depth) ** 2 + ((yy - cy) / half_h) ** 2) / wobble
    inside = r <= 1.0
    base = _DENSITY[density]
    coarse = _smooth_noise(rng, size, sigma=size / 24)
    fine = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma=size / 200)
    coarse /= coarse.std() + 1e-9
    fine /= fine.std() + 1e-9
    tissue = base + 0.22 + 0.09 * coarse * (0.5 + base) + 0.035 * fine
    tissue *= 1.0 - 0.35 * np.clip((r - 0.85) / 0.15, 0, 1)  # thinner towards the skin line
    img = np.where(inside, tissue, 0.0).astype(np.float32)
    if view == "MLO":  # pectoral muscle: a brighter triangle in the upper chest-wall corner
        a, b = rng.uniform(0.2, 0.3) * size, rng.uniform(0.35, 0.5) * size
        pect = (xx / a + yy / b) <= 1.0
        img = np.where(pect & inside, img + 0.18, img)
    specks = _dots(rng, xx, yy, inside & (r < 0.9), n=3, radius=calc_radius, spread=None)
    img += calc_contrast * specks
    centre = None
    if lesion:
        cand = np.argwhere(inside & (r < 0.75) & (xx > 0.12 * size))
        py, px = cand[rng.integers(len(cand))]
        img += calc_contrast * _dots(rng, xx, yy, None, n=n_calcs, radius=calc_radius, spread=cluster_radius,
                                     centre=(float(px), float(py)))
        centre = (float(px), float(py))
    img = img * (1 + 0.04 * rng.standard_normal((size, size)).astype(np.float32)) * inside
    out = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    if laterality == "L":  # left breast displayed with the chest wall on the right
        out = out[:, ::-1]
        if centre is not None:
            centre = (size - 1 - centre[0], centre[1])
    return np.ascontiguousarray(out), centre


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered noise of a large ``sigma``, made on an 8x smaller grid and upsampled (same look, ~50x
    cheaper than filtering the full frame)."""
    small = max(8, size // 8)
    noise = gaussian_filter(rng.standard_normal((small, small)).astype(np.float32), sigma=sigma * small / size)
    return np.array(Image.fromarray(noise, mode="F").resize((size, size), Image.Resampling.BILINEAR))


def _dots(rng, xx, yy, where, *, n: int, radius: float, spread: float | None,
          centre: tuple[float, float] | None = None) -> np.ndarray:
    """Sum of small Gaussian bright dots: scattered over ``where`` (spread None) or clustered around ``centre``."""
    out = np.zeros_like(xx)
    if spread is None:
        cand = np.argwhere(where)
        pts = [tuple(cand[rng.integers(len(cand))][::-1].astype(float)) for _ in range(n)] if len(cand) else []
    else:
        assert centre is not None
        pts = [(centre[0] + rng.uniform(-spread, spread), centre[1] + rng.uniform(-spread, spread)) for _ in range(n)]
    for px, py in pts:
        r0, r1 = int(max(0, py - 6 * radius)), int(py + 6 * radius) + 1
        c0, c1 = int(max(0, px - 6 * radius)), int(px + 6 * radius) + 1
        rad = radius * rng.uniform(0.8, 1.25)
        sub = np.exp(-0.5 * (((xx[r0:r1, c0:c1] - px) ** 2 + (yy[r0:r1, c0:c1] - py) ** 2) / rad ** 2))
        out[r0:r1, c0:c1] = np.maximum(out[r0:r1, c0:c1], sub)
    return out
