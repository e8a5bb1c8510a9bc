"""Augmentation pipeline and the minority-only rule."""

from __future__ import annotations

import torch

from breastclip.finetune.augment import AugmentConfig, augmented_classes, build_augment
from breastclip.finetune.dataset import ImageRows


def test_augment_keeps_shape_and_dtype_and_changes_pixels():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    aug = build_augment()
    outs = [aug(x) for _ in range(8)]
    assert all(o.shape == x.shape and o.dtype == torch.uint8 for o in outs)
    assert any(not torch.equal(o, x) for o in outs)


def test_all_off_is_identity():
    cfg = AugmentConfig(hflip=0, vflip=0, rotate90=False, brightness=0, contrast=0, shift=0, scale=0,
                        rotate_degrees=0)
    x = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    assert torch.equal(build_augment(cfg)(x), x)


def test_minority_only_selects_the_smaller_classes():
    labels = [0] * 10 + [1] * 3 + [2] * 5
    assert augmented_classes(labels, 3, minority_only=True) == {1, 2}
    assert augmented_classes(labels, 3, minority_only=False) == {0, 1, 2}


def test_dataset_augments_only_the_chosen_classes():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    seen = []

    def spy(x):
        seen.append(x.clone())
        return 255 - x

    ds = ImageRows(images, [0, 1, 0, 1], augment=spy, augment_classes={1})
    outs = [ds[i][0] for i in range(4)]
    assert len(seen) == 2
    assert torch.equal(outs[0], images[0]) and torch.equal(outs[2], images[2])
    assert torch.equal(outs[1], 255 - images[1]) and torch.equal(outs[3], 255 - images[3])
