"""Hugging Face ``CLIPModel`` family (PLIP, any ``hf:<id>``, local HF folders) through transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .base import Backbone
from .hashing import files_fingerprint, tensors_fingerprint
from .hub import require_hub, unavailable_message
from .openclip import _first_line, prepare_module
from .registry import BackboneEntry, BackboneUnavailable

_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


class HFImageTower(torch.nn.Module):
    """vision_model + visual_projection as one module: (N, 3, S, S) normalised -> (N, d) image embeddings."""

    def __init__(self, vision_model: torch.nn.Module, projection: torch.nn.Module) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.visual_projection = projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)


def local_weight_files(entry: BackboneEntry) -> list[Path] | None:
    folder = Path(entry.weights)
    if folder.is_dir():
        files = [folder / n for n in _WEIGHT_NAMES if (folder / n).is_file()]
        return files[:1] or None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in _WEIGHT_NAMES:
        hit = try_to_load_from_cache(entry.weights, name)
        if isinstance(hit, str):
            return [Path(hit)]
    return None


def build(entry: BackboneEntry, device: torch.device, precision: str) -> Backbone:
    tried = f"transformers.CLIPModel.from_pretrained('{entry.weights}')"
    if local_weight_files(entry) is None:
        require_hub(entry, tried)
    try:
        from transformers import AutoTokenizer, CLIPModel

        model = CLIPModel.from_pretrained(entry.weights)
        tokenizer: Any = AutoTokenizer.from_pretrained(entry.weights) if entry.has_text else None
    except Exception as e:
        raise BackboneUnavailable(unavailable_message(entry, tried, _first_line(e))) from e
    model = model.eval().requires_grad_(False)
    entry = _entry_from_loaded(entry, model)
    files = local_weight_files(entry)
    fingerprint = files_fingerprint(files) if files else tensors_fingerprint(model.state_dict())
    tower = prepare_module(HFImageTower(model.vision_model, model.visual_projection), device, precision)
    text_forward = None
    if entry.has_text:
        text_model: Any = model.text_model.to(device)  # transformers' CLIPTextTransformer (untyped here)
        text_projection: Any = model.text_projection.to(device)
        max_len = int(getattr(model.config.text_config, "max_position_embeddings", 77))

        def text_forward(prompts: list[str]) -> torch.Tensor:
            tok = tokenizer(prompts, padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(device)
            out = text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
            return text_projection(out.pooler_output)

    return Backbone(entry, image_model=tower, image_forward=tower, device=device, fingerprint=fingerprint,
                    precision=precision, text_forward=text_forward)


def _entry_from_loaded(entry: BackboneEntry, model) -> BackboneEntry:
    """Input size and width from the loaded model (an hf: id read before its config was cached may have guessed);
    mean/std/filter from its image processor config when it is available locally."""
    from dataclasses import replace

    from .registry import _hf_cached, _hf_folder_preprocessing

    size = int(model.config.vision_config.image_size)
    dim = int(model.config.projection_dim)
    folder = Path(entry.weights)
    pp = folder / "preprocessor_config.json" if folder.is_dir() else _hf_cached(entry.weights, "preprocessor_config.json")
    if pp is not None and pp.is_file():
        _, mean, std, interp, _ = _hf_folder_preprocessing(Path("/nonexistent"), pp)
        return replace(entry, image_size=size, embed_dim=dim, mean=mean, std=std, interpolation=interp)
    return replace(entry, image_size=size, embed_dim=dim)
