"""Decode a manifest's images once, resized to the model's input size, and serve them as training tensors.

Images are decoded with :func:`breastclip.data.images.load_image_resized` (PNG/JPEG/16-bit/DICOM; JPEGs at a
reduced DCT scale), resized to a square and kept as
uint8 in memory: every epoch then costs no decoding, which dominates for large mammograms. Files that fail to decode
are reported and left out, never fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF


@dataclass
class Decoded:
    images: torch.Tensor  # (n_ok, 3, S, S) uint8
    rows: np.ndarray  # manifest row positions of the decoded images
    failures: list[tuple[str, str]]  # (path, reason)


def to_model_size(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, size, size) uint8, antialiased resize (aspect not kept, as the notebooks do)."""
    t = torch.from_numpy(np.require(image, dtype=np.uint8, requirements=['C', 'W'])).permute(2, 0, 1)
    return TF.resize(t, [size, size], antialias=True)


def decode_rows(paths: Sequence, size: int, progress: Callable[[int, int], None] | None = None) -> Decoded:
    """Decode and resize every path; collect (path, reason) for the ones that fail."""
    from breastclip.data.images import load_image_resized

    images: list[torch.Tensor] = []
    rows: list[int] = []
    failures: list[tuple[str, str]] = []
    for i, p in enumerate(paths):
        try:
            images.append(to_model_size(load_image_resized(p, size), size))
            rows.append(i)
        except (ValueError, OSError) as exc:  # ImageDecodeError is a ValueError
            failures.append((str(p), str(exc)))
        if progress is not None:
            progress(i + 1, len(paths))
    stacked = torch.stack(images) if images else torch.empty((0, 3, size, size), dtype=torch.uint8)
    return Decoded(stacked, np.asarray(rows, dtype=int), failures)


class ImageRows(Dataset):
    """uint8 images + integer labels; ``augment`` is applied to rows whose label is in ``augment_classes``."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int],
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 augment_classes: set[int] | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.augment = augment
        self.augment_classes = augment_classes if augment_classes is not None else set()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.images[i], self.labels[i]
        if self.augment is not None and int(y) in self.augment_classes:
            x = self.augment(x)
        return x, y
