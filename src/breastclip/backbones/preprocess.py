"""Resize + crop to a backbone's input size on uint8 pixels, exactly as the backbone's reference transform does.

The reference (open_clip / Hugging Face CLIP) transform is: PIL image -> torchvision ``Resize(size)`` (shortest side,
bicubic, antialiased) -> ``CenterCrop(size)`` -> ToTensor -> Normalize. We run the same torchvision calls on the PIL
image and stop before ToTensor, so the uint8 result is bit-identical; normalisation happens later on the device.

Mammography entries (``breast_crop``) first crop to the breast (:func:`breastclip.data.breast.crop_breast`),
optionally mirrored to one chest-wall side and padded to a square; those settings are part of both cache keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from breastclip.data.breast import CHEST_WALL_SIDES, crop_breast
from breastclip.data.images import load_image, load_image_resized

from .registry import BackboneEntry

_MODES = ("shortest", "squash")


#: Backbone-entry fields a config may set under ``embed.options`` that change the pixels (and so the cache keys).
PREPROCESSING_OPTIONS = ("breast_crop", "flip_to", "pad_square")


def pixel_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`PREPROCESSING_OPTIONS` among a run's ``embed.options``: what a backbone built again for that run
    (Grad-CAM, predict) must be given so its pixels are the ones the embeddings saw."""
    return {k: v for k, v in options.items() if k in PREPROCESSING_OPTIONS}


def spec_key(entry: BackboneEntry) -> str:
    """Key of the geometric part of preprocessing (what the uint8 pixel cache depends on)."""
    return json.dumps({"size": entry.image_size, "resize": entry.resize_mode, "interp": entry.interpolation,
                       **entry.breast_key(), **entry.decode_key()}, sort_keys=True)


def check_breast_options(entry: BackboneEntry) -> None:
    """A clear error for breast-crop settings that cannot work (before any image is decoded)."""
    if entry.flip_to not in ("", *CHEST_WALL_SIDES):
        raise ValueError(f"backbone '{entry.name}': flip_to must be \"L\", \"R\" or \"\" (no flip), got "
                         f"{entry.flip_to!r} (embed.options.flip_to)")
    if (entry.flip_to or entry.pad_square) and not entry.breast_crop:
        raise ValueError(f"backbone '{entry.name}': flip_to / pad_square act on the breast crop; set "
                         "embed.options.breast_crop = true as well")


def load_for_model(path: str | os.PathLike, entry: BackboneEntry) -> np.ndarray:
    """A file -> (3, S, S) uint8 model input, the way embedding does it.

    Plain entries decode at reduced resolution (:func:`breastclip.data.images.load_image_resized`: JPEG DCT
    scaling, JPEG 2000 resolution levels, area averaging of 16-bit values before the 8-bit mapping), then
    :func:`resize_crop`: on a full-field mammogram this is several times faster than a full decode and the pixels
    differ by well under one grey level on average; images already near the input size decode exactly as before.
    Breast-crop entries decode at full resolution (the crop is found there), then :func:`prepare_image`."""
    if entry.decode_mode == "full":
        return prepare_image(load_image(path), entry)
    return resize_crop(load_image_resized(path, entry.image_size), entry)


def prepare_image(image: np.ndarray, entry: BackboneEntry) -> np.ndarray:
    """Decoded (H, W, 3) uint8 RGB -> (3, S, S) uint8: the breast crop when the entry asks for it, then
    :func:`resize_crop`."""
    if entry.breast_crop:
        image = crop_breast(image, flip_to=entry.flip_to or None, pad_square=entry.pad_square).image
    return resize_crop(image, entry)


def resize_crop(image: np.ndarray, entry: BackboneEntry) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, S, S) uint8, S = entry.image_size, with the entry's resize mode and filter."""
    import torchvision.transforms.functional as F
    from PIL import Image
    from torchvision.transforms import InterpolationMode

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if entry.resize_mode not in _MODES:
        raise ValueError(f"backbone '{entry.name}': resize mode '{entry.resize_mode}' is not supported ({_MODES})")
    interp = InterpolationMode.BILINEAR if entry.interpolation == "bilinear" else InterpolationMode.BICUBIC
    size = entry.image_size
    pil = Image.fromarray(image)
    if entry.resize_mode == "squash":
        pil = F.resize(pil, [size, size], interpolation=interp)
    else:
        pil = F.resize(pil, size, interpolation=interp)
        pil = F.center_crop(pil, [size, size])
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8).transpose(2, 0, 1))
