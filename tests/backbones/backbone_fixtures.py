"""Synthetic images and manifests for the backbone tests (written into tmp_path, never committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """n small RGB PNGs with different sizes and aspect ratios (content differs, so hashes differ)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        h, w = 28 + 7 * (i % 5), 36 + 5 * (i % 7)
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        name = f"img_{i:03d}.png"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return names


def make_manifest(folder: Path, n: int = 12, bad: bool = True, seed: int = 0):
    from breastclip.data.manifest import Manifest

    names = write_images(folder, n, seed)
    rows = [{"image": nm, "label": "benign" if i % 2 else "malignant"} for i, nm in enumerate(names)]
    if bad:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        rows.append({"image": "broken.png", "label": "benign"})
        rows.append({"image": "gone.png", "label": "benign"})
    return Manifest.from_records(rows, folder, name="synthetic", source="synthetic")
