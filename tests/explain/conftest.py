"""Two small lesion-like PNGs written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_pngs(folder: Path, size: int = 48) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    paths = []
    for i, (cy, cx) in enumerate([(size // 3, size // 3), (2 * size // 3, size // 2)]):
        img = rng.normal(100, 15, (size, size)).clip(0, 255)
        img[np.hypot(yy - cy, xx - cx) < size / 6] = 220
        p = folder / f"lesion {i}.png"
        Image.fromarray(img.astype(np.uint8)).convert("RGB").save(p)
        paths.append(p)
    return paths


@pytest.fixture
def two_pngs(tmp_path: Path) -> list[Path]:
    return write_pngs(tmp_path / "imgs")
