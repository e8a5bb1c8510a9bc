"""Tiny lesion-like image sets written into tmp_path (no files from the repo or shared data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastclip.data.manifest import Manifest


def write_lesion_images(root: Path, n_per_class: dict[str, int], size: int = 48, seed: int = 0) -> list[dict]:
    """Grey speckled background; 'benign' rows hold a smooth bright disc, 'malignant' a dark irregular blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for label, n in n_per_class.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.normal(110, 20, (size, size)).clip(0, 255)
            cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
            r = size / 6 + rng.uniform(-2, 2)
            dist = np.hypot(yy - cy, xx - cx)
            if label == "benign":
                img[dist < r] = 200
            else:
                angle = np.arctan2(yy - cy, xx - cx)
                img[dist < r * (1 + 0.4 * np.sin(7 * angle))] = 40
            path = root / label / f"{label}_{i:02d}.png"
            Image.fromarray(img.astype(np.uint8)).convert("RGB").save(path)
            rows.append({"image": f"{label}/{path.name}", "label": label})
    return rows


def tiny_manifest(root: Path, n_per_class: dict[str, int] | None = None, size: int = 48) -> Manifest:
    """A split manifest: per class, half train, a quarter val, a quarter test (at least one of each)."""
    n_per_class = n_per_class or {"benign": 8, "malignant": 8}
    rows = write_lesion_images(root, n_per_class, size)
    for label in n_per_class:
        mine = [r for r in rows if r["label"] == label]
        n = len(mine)
        n_val = max(1, n // 4)
        for j, r in enumerate(mine):
            r["split"] = "val" if j < n_val else "test" if j < 2 * n_val else "train"
    return Manifest.from_records(rows, root, name="tiny", source="test").validate()


@pytest.fixture
def make_tiny():
    """The :func:`tiny_manifest` factory, for tests that need other class counts."""
    return tiny_manifest


@pytest.fixture
def tiny(tmp_path: Path) -> Manifest:
    return tiny_manifest(tmp_path / "images")
