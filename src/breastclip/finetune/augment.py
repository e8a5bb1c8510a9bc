"""Training-time augmentation (torchvision.transforms.v2) and the deterministic evaluation transform.

Augmentation follows the BreakHis / CBIS notebooks: flips, rotations by multiples of 90 degrees (lesions have no
canonical orientation), brightness / contrast jitter and a shift-scale-rotate affine. It is applied to training rows
only; with ``minority_only`` only to rows of classes smaller than the largest one (the notebooks' way of evening
out class imbalance without synthesising images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms import v2


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each augmentation; 0 turns one off."""

    hflip: float = 0.5
    vflip: float = 0.5
    rotate90: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    shift: float = 0.0625
    scale: float = 0.1
    rotate_degrees: float = 15.0
    affine_p: float = 0.5
    minority_only: bool = False


class RandomRotate90(torch.nn.Module):
    """Rotate by 0, 90, 180 or 270 degrees, uniformly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(0, 4, ()).item())
        return torch.rot90(x, k, dims=(-2, -1)) if k else x


def build_augment(cfg: AugmentConfig | None = None) -> v2.Compose:
    """Augmentation on uint8 (3, H, W) tensors of the model's input size; returns uint8 of the same size."""
    cfg = cfg or AugmentConfig()
    steps: list[torch.nn.Module] = []
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.vflip:
        steps.append(v2.RandomVerticalFlip(cfg.vflip))
    if cfg.rotate90:
        steps.append(RandomRotate90())
    if cfg.brightness or cfg.contrast:
        steps.append(v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast))
    if cfg.shift or cfg.scale or cfg.rotate_degrees:
        affine = v2.RandomAffine(degrees=cfg.rotate_degrees, translate=(cfg.shift, cfg.shift),
                                 scale=(1 - cfg.scale, 1 + cfg.scale))
        steps.append(v2.RandomApply([affine], p=cfg.affine_p))
    return v2.Compose(steps or [v2.Identity()])


def augmented_classes(labels: Sequence[int], num_classes: int, minority_only: bool) -> set[int]:
    """Class indices whose training rows get augmented: all, or those smaller than the largest class."""
    if not minority_only:
        return set(range(num_classes))
    counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=num_classes)
    return {i for i in range(num_classes) if counts[i] < counts.max()}


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float normalised with the architecture's mean and std."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    return (x.float() / 255.0 - m) / s
