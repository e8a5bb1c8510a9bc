"""open_clip family: OpenAI CLIP tags, hf-hub models (BiomedCLIP), local state dicts and local-dir folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .base import Backbone
from .hashing import files_fingerprint, tensors_fingerprint
from .hub import require_hub, unavailable_message
from .registry import BackboneEntry, BackboneUnavailable

_HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                    "open_clip_pytorch_model.bin")


def prepare_module(module: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """Eval mode, frozen, channels-last, on device; int8 dynamic quantisation of Linear layers on request (CPU)."""
    module = module.eval().requires_grad_(False)
    if precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        module = quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
    return module.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]


def wrap_open_clip(entry: BackboneEntry, model: Any, tokenizer, device: torch.device, precision: str,
                   fingerprint: str) -> Backbone:
    """Backbone around an open_clip CLIP model: image tower ``model.visual``, text via ``encode_text``."""
    visual = prepare_module(model.visual, device, precision)
    model.visual = visual
    text_forward = None
    if entry.has_text:
        model = model.eval().requires_grad_(False).to(device)
        model.visual = visual

        def text_forward(prompts: list[str]) -> torch.Tensor:
            return model.encode_text(tokenizer(prompts).to(device))

    return Backbone(entry, image_model=visual, image_forward=visual, device=device, fingerprint=fingerprint,
                    precision=precision, text_forward=text_forward)


def _split_arch(entry: BackboneEntry) -> tuple[str, str | None]:
    """(model_name for open_clip.create_model, pretrained argument)."""
    if entry.architecture.startswith(("hf-hub:", "local-dir:")):
        return entry.architecture, None
    return entry.architecture, entry.weights or None


def local_weight_files(entry: BackboneEntry) -> list[Path] | None:
    """Weight files already on this machine (no download), or None when they would have to be fetched."""
    arch, pretrained = _split_arch(entry)
    if arch.startswith("local-dir:"):
        folder = Path(arch[len("local-dir:"):])
        files = sorted(p for p in folder.glob("*") if p.suffix in (".safetensors", ".bin", ".pth", ".pt"))
        return files or None
    if pretrained and Path(pretrained).is_file():
        return [Path(pretrained)]
    repo: str | None = None
    names: tuple[str, ...] = _HF_WEIGHT_NAMES
    if arch.startswith("hf-hub:"):
        repo = arch[len("hf-hub:"):]
    elif pretrained:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(arch, pretrained)
        hub = cfg.get("hf_hub", "")
        if hub:
            repo, fname = os.path.split(hub)  # open_clip's own convention: 'org/model/' or 'org/model/file'
            names = (fname,) if fname else _HF_WEIGHT_NAMES
        url = cfg.get("url", "")
        if url:
            cached = Path.home() / ".cache" / "clip" / Path(url).name
            if cached.is_file():
                return [cached]
    if repo:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        for name in names:
            for cand in (name, name.replace(".bin", ".safetensors")):
                hit = try_to_load_from_cache(repo, cand)
                if isinstance(hit, str):
                    return [Path(hit)]
    return None


def build(entry: BackboneEntry, device: torch.device, precision: str) -> Backbone:
    import open_clip

    arch, pretrained = _split_arch(entry)
    tried = f"open_clip.create_model('{arch}', pretrained={pretrained!r})"
    if local_weight_files(entry) is None:
        require_hub(entry, tried, _download_url(entry))
    try:
        model = open_clip.create_model(arch, pretrained=pretrained, require_pretrained=True, device="cpu",
                                       weights_only=True)
        tokenizer = open_clip.get_tokenizer(arch) if entry.has_text else None
    except Exception as e:  # network, gated repo, renamed tag, corrupt file: one clear message
        raise BackboneUnavailable(unavailable_message(entry, tried, _first_line(e))) from e
    files = local_weight_files(entry)
    fingerprint = files_fingerprint(files) if files else tensors_fingerprint(model.state_dict())
    return wrap_open_clip(entry, model, tokenizer, device, precision, fingerprint)


def _download_url(entry: BackboneEntry) -> str | None:
    """Host the weights come from: the HF endpoint (None) unless the tag only has a plain URL."""
    arch, pretrained = _split_arch(entry)
    if pretrained and not arch.startswith(("hf-hub:", "local-dir:")) and not Path(pretrained).exists():
        import open_clip

        cfg = open_clip.get_pretrained_cfg(arch, pretrained)
        if cfg and not cfg.get("hf_hub") and cfg.get("url"):
            return cfg["url"]
    return None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300] if text else ''}"
