"""``create_backbone``: one thin dispatch from a registry entry to its family builder."""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path

import torch

from .base import Backbone, resolve_device, resolve_precision
from .hashing import files_fingerprint
from .registry import BackboneEntry, get_entry

_FAMILIES = {"open_clip": "openclip", "hf_clip": "hf_clip", "efficientnet_lite": "efficientnet_lite", "tiny": "tiny"}


def _family(entry: BackboneEntry):
    try:
        return importlib.import_module(f"breastclip.backbones.{_FAMILIES[entry.family]}")
    except KeyError:
        raise ValueError(f"backbone '{entry.name}': unknown family '{entry.family}' ({sorted(_FAMILIES)})") from None


def as_entry(backbone: str | BackboneEntry, **overrides) -> BackboneEntry:
    if isinstance(backbone, BackboneEntry):
        return replace(backbone, **overrides) if overrides else backbone
    return get_entry(backbone, **overrides)


def create_backbone(name: str | BackboneEntry, device: str | torch.device | None = None, *, precision: str = "auto",
                    **overrides) -> Backbone:
    """Build a frozen backbone on ``device`` (None: CUDA if available). ``precision``: auto (bf16 autocast on GPU,
    fp32 on CPU), fp32, bf16, fp16, or int8 (CPU dynamic quantisation of Linear layers). ``overrides`` replace entry
    fields (e.g. ``architecture=`` for a ``local:`` checkpoint, ``weights=`` for another file)."""
    entry = as_entry(name, **overrides)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    if entry.view:  # a feature view: build the plain backbone, then swap its image forward
        from .views import apply_view

        return apply_view(_family(entry).build(replace(entry, view=()), dev, prec), entry)
    return _family(entry).build(entry, dev, prec)


def local_weight_files(entry: BackboneEntry) -> list[Path] | None:
    """Weight files already on disk (empty list: built from code), or None when a download would be needed."""
    return _family(entry).local_weight_files(entry)


def offline_status(entry: BackboneEntry) -> tuple[bool, str]:
    """(usable offline right now, why), checked cheaply: local files and caches only, nothing downloaded."""
    try:
        files = local_weight_files(entry)
    except Exception as e:  # broken package or unreadable folder
        return False, f"{type(e).__name__}: {e}"
    if files is None:
        hint = entry.install_hint or "needs one download (internet) or a local checkpoint"
        return False, hint
    if not files:
        return True, "built from code (random weights)"
    return True, str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1})"


def weights_fingerprint(entry: BackboneEntry, cache_dir: Path | None = None) -> str | None:
    """Fingerprint from the weight files on disk without building the model (None: build needed to know)."""
    files = local_weight_files(entry)
    return files_fingerprint(files, cache_dir) if files else None
