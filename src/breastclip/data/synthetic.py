"""A deterministic synthetic lesion set for tests, demos and offline smoke runs (no real patient data).

Each patient has one lesion, seen in ``images_per_patient`` views (CC, MLO, ...) of one breast side:

- **benign**: a round or oval mass with a smooth, soft margin;
- **malignant**: an irregular mass (radius modulated by several harmonics) with a sharper margin and thin
  spicules radiating from it;
- **normal** (optional, ``classes=("normal", "benign", "malignant")``): background only.

Both classes share the same ranges of size, contrast, position and background, so neither mean brightness nor
any single pixel separates them; the margin shape does (what radiologists read in BI-RADS), which a frozen image
encoder or a small CNN picks up. Backgrounds are speckled fibroglandular-like texture whose brightness and
texture follow the breast density category (A-D). Views of one patient share the lesion's shape but differ in
position, rotation and noise, so a split that ignores patients leaks (useful for testing leak-safe splits).

The files are PNG (8-bit greyscale) under ``root/<label>/``, plus ``root/labels.csv`` (image, label, patient_id and
metadata: side, view, density, age, lesion_x, lesion_y, lesion_radius) readable by the CSV and class-folder
readers. Same arguments, same bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter

from breastclip.atomic import atomic_write_bytes

from .manifest import Manifest

__all__ = ["ALL_CLASSES", "SYNTHETIC_CLASSES", "make_synthetic", "render_lesion"]

SYNTHETIC_CLASSES = ("benign", "malignant")
ALL_CLASSES = ("normal", "benign", "malignant")
_DENSITY = {"A": 0.18, "B": 0.26, "C": 0.34, "D": 0.42}  # mean background level per BI-RADS density
_VIEWS = ("CC", "MLO")


def make_synthetic(
    root: str | os.PathLike,
    n_patients: int = 24,
    images_per_patient: int = 2,
    size: int = 64,
    seed: int = 0,
    *,
    masks: bool = False,
    overwrite: bool = False,
    classes: Sequence[str] = SYNTHETIC_CLASSES,
    difficulty: float = 0.0,
) -> Manifest:
    """Write the synthetic set under ``root`` and return its Manifest (patient ids from the source, no split).

    Patients are balanced between ``classes`` (earlier classes get the extra ones); add ``"normal"`` (e.g.
    ``classes=("normal", "benign", "malignant")``, like BUSI) for images without a lesion. ``masks``
    also writes ``<image>_mask.png`` lesion masks (for localisation checks of saliency maps). An existing file with
    different content is never overwritten unless ``overwrite=True``; identical files are left alone, so a rerun
    after an interruption completes the set.

    ``difficulty`` in [0, 1] fades the malignant cues (margin irregularity, spicules, sharp edge) towards the
    benign look: 0 gives classes a frozen ImageNet encoder separates almost perfectly, 1 makes them identical in
    distribution (chance level), values between give known, intermediate AUCs for tests of calibration and ROC.
    """
    if n_patients < 1 or images_per_patient < 1:
        raise ValueError("n_patients and images_per_patient must be >= 1")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    classes = list(classes)
    unknown = sorted(set(classes) - set(ALL_CLASSES))
    if unknown or len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes must be two or more distinct names from {ALL_CLASSES}, got {classes}")
    root = Path(root)
    rng_labels = np.random.default_rng([seed, 0])
    class_of = rng_labels.permutation(np.sort(np.arange(n_patients) % len(classes)))
    rows: list[dict] = []
    for i in range(n_patients):
        rng = np.random.default_rng([seed, 1, i])
        label = classes[int(class_of[i])]
        pid = f"SYN{i + 1:04d}"
        density = str(rng.choice(list(_DENSITY), p=[0.1, 0.4, 0.4, 0.1]))
        side = str(rng.choice(["L", "R"]))
        age = int(rng.integers(40, 80))
        shape = _lesion_shape(rng, malignant=label == "malignant", normal=label == "normal", difficulty=difficulty)
        for v in range(images_per_patient):
            view = _VIEWS[v % len(_VIEWS)] + (str(v // len(_VIEWS) + 1) if v >= len(_VIEWS) else "")
            img, mask, (cx, cy, r) = render_lesion(rng, size, shape, density)
            rel = f"{label}/{pid}_{side}_{view}.png"
            _write_png(root / rel, img, overwrite)
            if masks:
                _write_png(root / rel.replace(".png", "_mask.png"), mask, overwrite)
            rows.append({"image": rel, "label": label, "patient_id": pid, "side": side, "view": view,
                         "density": density, "age": age, "lesion_x": _round(cx), "lesion_y": _round(cy),
                         "lesion_radius": _round(r)})
    table = pd.DataFrame(rows)
    csv_bytes = table.to_csv(index=False, lineterminator="\n").encode()
    _write_bytes(root / "labels.csv", csv_bytes, overwrite)
    manifest = Manifest.from_records(table, root, name=f"synthetic-{seed}", source="synthetic", classes=classes)
    manifest.notes.append(f"synthetic lesions: {n_patients} patients x {images_per_patient} views, {size}px, "
                          f"seed {seed}; not real data")
    return manifest


def _round(v: float) -> float:
    return round(v, 2) if np.isfinite(v) else float("nan")


def _lesion_shape(rng: np.random.Generator, *, malignant: bool, normal: bool = False,
                  difficulty: float = 0.0) -> dict:
    """Per-patient lesion parameters shared by all views."""
    shape: dict[str, object] = {
        "normal": normal,
        "malignant": malignant,
        "radius": rng.uniform(0.10, 0.17),  # fraction of image size
        "contrast": rng.uniform(0.22, 0.36),
        "aspect": rng.uniform(0.65, 1.0) if not malignant else rng.uniform(0.8 - 0.15 * difficulty, 1.0),
        "cue": 1.0 - difficulty,  # strength of the malignant cues
    }
    if malignant:
        k = np.arange(3, 9)
        shape["harmonics"] = (k, rng.uniform(0.06, 0.16, len(k)) / np.sqrt(k / 3), rng.uniform(0, 2 * np.pi, len(k)))
        shape["n_spicules"] = int(rng.integers(7, 14))
    return shape


def render_lesion(rng: np.random.Generator, size: int, shape: dict,
                  density: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """One view: (uint8 image, uint8 mask 0/255, (centre x, centre y, radius) in pixels)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # background: smooth fibroglandular texture + gradient, level and texture by density
    base = _DENSITY[density]
    texture = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 14)
    texture /= texture.std() + 1e-9
    fine = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 48)
    fine /= fine.std() + 1e-9
    gx, gy = rng.uniform(-0.08, 0.08, 2)
    bg = base + 0.05 * texture * (0.6 + base) + 0.02 * fine + gx * (xx / size - 0.5) + gy * (yy / size - 0.5)

    r = shape["radius"] * size * rng.uniform(0.92, 1.08)  # views differ slightly in apparent size
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    theta = rng.uniform(0, 2 * np.pi)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(theta) + dy * np.sin(theta)
    w = (-dx * np.sin(theta) + dy * np.cos(theta)) / shape["aspect"]
    rho = np.hypot(u, w)
    phi = np.arctan2(w, u)
    if shape["malignant"]:
        k, amp, phase = shape["harmonics"]
        amp = amp * shape["cue"]
        boundary = r * (1 + (amp[:, None, None] * np.cos(k[:, None, None] * phi + phase[:, None, None])).sum(0))
        edge = (0.035 * shape["cue"] + 0.16 * (1 - shape["cue"])) * r
    else:
        boundary = np.full_like(rho, r)
        edge = 0.16 * r
    mass = 1.0 / (1.0 + np.exp((rho - boundary) / max(edge, 0.3)))
    mass *= 0.85 + 0.15 * np.clip(1 - rho / (boundary + 1e-9), 0, 1)  # slightly brighter core
    lesion = mass
    if shape["malignant"]:
        lesion = np.maximum(lesion, shape["cue"] * _spicules(rng, xx, yy, cx, cy, r, shape["n_spicules"], theta))
    if shape.get("normal"):  # no lesion: same background statistics, nothing to find
        lesion = mass = np.zeros_like(mass)
    img = bg + shape["contrast"] * lesion
    # speckle: multiplicative (ultrasound-like) + additive sensor noise
    img = img * (1 + 0.08 * rng.standard_normal((size, size))) + 0.015 * rng.standard_normal((size, size))
    out = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    mask = ((mass > 0.5) * 255).astype(np.uint8)
    if shape.get("normal"):
        return out, mask, (float("nan"), float("nan"), float("nan"))
    return out, mask, (float(cx), float(cy), float(r))


def _spicules(rng, xx, yy, cx, cy, r, n, theta0) -> np.ndarray:
    """Thin bright lines radiating out of the mass (intensity falls along each)."""
    out = np.zeros_like(xx)
    angles = theta0 + np.sort(rng.uniform(0, 2 * np.pi, n))
    width = max(0.45, xx.shape[0] / 110)
    for a in angles:
        length = r * rng.uniform(0.7, 1.5)
        start, end = 0.7 * r, 0.7 * r + length
        ux, uy = np.cos(a), np.sin(a)
        px, py = xx - cx, yy - cy
        t = np.clip(px * ux + py * uy, start, end)
        d = np.hypot(px - t * ux, py - t * uy)
        fade = 1 - (t - start) / (end - start)
        out = np.maximum(out, np.exp(-0.5 * (d / width) ** 2) * (0.45 + 0.5 * fade))
    return out


def _write_png(path: Path, arr: np.ndarray, overwrite: bool) -> None:
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG", optimize=False, compress_level=6)
    _write_bytes(path, buf.getvalue(), overwrite)


def _write_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    if path.exists():
        if path.read_bytes() == data:
            return
        if not overwrite:
            raise FileExistsError(f"{path} exists with different content; not overwriting it "
                                  "(pass overwrite=True, or choose an empty folder)")
    atomic_write_bytes(path, data)
