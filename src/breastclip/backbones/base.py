"""The Backbone object: a frozen image tower (and maybe a text tower) behind one uint8-in, unit-vectors-out API."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from .registry import BackboneEntry

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None means CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto': bf16 autocast on CUDA (fp16 on GPUs without bf16), fp32 on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    if precision != "auto":
        if precision == "int8" and device.type != "cpu":
            raise ValueError("int8 dynamic quantisation runs on CPU only")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


class Backbone:
    """A built backbone. ``encode_images`` takes uint8 (N, 3, S, S) at ``entry.image_size``; normalisation,
    autocast and L2 normalisation happen here, on the device."""

    def __init__(
        self,
        entry: BackboneEntry,
        *,
        image_model: torch.nn.Module,
        image_forward: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
        fingerprint: str,
        precision: str = "fp32",
        text_forward: Callable[[list[str]], torch.Tensor | np.ndarray] | None = None,
    ) -> None:
        self.entry = entry
        self.device = device
        self.image_model = image_model
        self.fingerprint = fingerprint
        self.precision = precision
        self._image_forward = image_forward
        self._text_forward = text_forward
        mean = torch.tensor(entry.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(entry.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        # (x / 255 - mean) / std  ==  x * scale - shift, one fused multiply-add per pixel on the device
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std

    # ---- properties -----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def has_text(self) -> bool:
        return self.entry.has_text and self._text_forward is not None

    @property
    def embed_dim(self) -> int:
        return self.entry.embed_dim

    def __repr__(self) -> str:
        return f"Backbone({self.entry.name!r}, device={self.device}, precision={self.precision})"

    # ---- images ---------------------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, S, S) on any device -> normalised float32 on ``self.device``, channels-last."""
        if x.dtype != torch.uint8:
            raise TypeError(f"encode_images expects uint8 pixels, got {x.dtype}")
        s = self.entry.image_size
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (s, s):
            raise ValueError(f"backbone '{self.name}' expects (N, 3, {s}, {s}) uint8, got {tuple(x.shape)}")
        x = x.to(self.device, non_blocking=True).float()
        x = torch.addcmul(-self._shift, x, self._scale)
        return x.contiguous(memory_format=torch.channels_last)

    def _autocast(self):
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return nullcontext()

    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> L2-normalised float32 features, left on the device (no host sync)."""
        with torch.inference_mode(), self._autocast():
            feats = self._image_forward(self.normalize(x))
        feats = feats.float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def encode_images(self, x: torch.Tensor) -> np.ndarray:
        """uint8 (N, 3, S, S) -> (N, d) float32 L2-normalised. Halves the batch and retries on CUDA out-of-memory."""
        if len(x) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        try:
            return self.encode_tensor(x).cpu().numpy()
        except torch.cuda.OutOfMemoryError:
            if len(x) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(x) // 2
            return np.concatenate([self.encode_images(x[:half]), self.encode_images(x[half:])])

    # ---- text -----------------------------------------------------------------------------------------------
    def encode_text(self, prompts: list[str]) -> np.ndarray:
        """Prompts -> (N, d_text) float32 L2-normalised. Image-only backbones raise ``ValueError``."""
        if not self.has_text:
            raise ValueError(f"backbone '{self.name}' is image-only: it has no text tower, so it cannot encode "
                             "prompts (zero-shot needs a CLIP-style backbone such as 'clip-vit-b32')")
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            return np.zeros((0, self.entry.text_embed_dim), dtype=np.float32)
        assert self._text_forward is not None  # has_text says so
        with torch.inference_mode(), self._autocast():
            t = self._text_forward(prompts)
        t = torch.as_tensor(t).float()
        t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return t.cpu().numpy()
