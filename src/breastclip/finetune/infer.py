"""A fine-tuned CNN with its preprocessing: load a checkpoint, predict probabilities, feed Grad-CAM."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from breastclip.finetune.augment import normalize
from breastclip.finetune.checkpoint import load_checkpoint, read_meta
from breastclip.finetune.dataset import to_model_size
from breastclip.finetune.models import build_model, get_arch, target_layer


@dataclass
class FinetunedModel:
    """The network (eval mode after loading) plus what it needs: architecture, classes, input size, mean/std."""

    model: nn.Module
    arch: str
    classes: list[str]
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]
    loss: str = "ce"

    @classmethod
    def wrap(cls, model: nn.Module, arch: str, classes: Sequence[str], image_size: int | None = None,
             loss: str = "ce") -> FinetunedModel:
        """A model built by :func:`build_model` with the architecture's own preprocessing."""
        entry = get_arch(arch)
        return cls(model.eval(), arch, list(classes), image_size or entry.image_size, entry.mean, entry.std, loss)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, S, S) -> normalised float (channels-last on CUDA, where convolutions prefer it)."""
        out = normalize(x, self.mean, self.std)
        return out.contiguous(memory_format=torch.channels_last) if out.is_cuda else out

    def to_input(self, images: Sequence[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 arrays of any size, or a uint8 (N, 3, S, S) tensor -> model input on its device."""
        if isinstance(images, torch.Tensor):
            batch = images
        else:
            batch = torch.stack([to_model_size(im, self.image_size) for im in images])
        return self.normalize(batch.to(self.device))

    def target_layer(self) -> nn.Module:
        """The layer Grad-CAM hooks for this architecture."""
        return target_layer(self.model, self.arch)

    def proba(self, logits: torch.Tensor) -> torch.Tensor:
        return logits_to_proba(logits, self.loss, len(self.classes))

    @torch.no_grad()
    def predict_proba(self, images: Sequence[np.ndarray] | torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """(N, n_classes) probabilities in ``classes`` order."""
        self.model.eval()
        if not isinstance(images, torch.Tensor):
            images = torch.stack([to_model_size(im, self.image_size) for im in images])
        return self.proba(predict_logits(self, images, batch_size)).numpy()


def logits_to_proba(logits: torch.Tensor, loss: str, k: int) -> torch.Tensor:
    """Class probabilities from raw outputs: softmax for CE; sigmoid (one logit, or normalised OvR) for BCE."""
    logits = logits.float().cpu()
    if loss == "ce":
        return logits.softmax(dim=1)
    if k == 2 and logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    p = torch.sigmoid(logits)
    return p / p.sum(dim=1, keepdim=True).clamp_min(1e-12)


def predict_logits(fm: FinetunedModel, images: torch.Tensor, batch_size: int,
                   amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Raw outputs for uint8 images (N, 3, S, S), batched, on the model's device; returned on CPU."""
    out = []
    device = fm.device
    for i in range(0, len(images), batch_size):
        xb = fm.normalize(images[i:i + batch_size].to(device))
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out.append(fm.model(xb).float().cpu())
    return torch.cat(out) if out else torch.empty((0, 1))


def load_finetuned(path: str | Path, device: str | torch.device | None = None) -> FinetunedModel:
    """Rebuild a model saved by :func:`breastclip.finetune.finetune` (a run folder or its ``best.safetensors``)."""
    path = Path(path)
    stem = path / "best" if path.is_dir() else path.with_suffix("")
    if not stem.with_suffix(".json").is_file():
        raise FileNotFoundError(f"no fine-tuned checkpoint at {path} (expected {stem.with_suffix('.json')})")
    meta = read_meta(stem)
    try:
        arch, classes, n_out = meta["architecture"], list(meta["classes"]), int(meta["n_outputs"])
    except KeyError as exc:
        raise ValueError(f"{stem.with_suffix('.json')} is not a breastclip fine-tune checkpoint: no {exc}") from None
    model = build_model(arch, n_out, pretrained=False)
    load_checkpoint(stem, model)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model.to(dev).eval()
    return FinetunedModel(model, arch, classes, int(meta["image_size"]), tuple(meta["mean"]), tuple(meta["std"]),
                          meta.get("loss", "ce"))
