"""tiny-test: a seeded, random-initialised open_clip CLIP (32 px, width 64, 2 layers) for fast offline tests."""

from __future__ import annotations

import torch

from .base import Backbone
from .hashing import tensors_fingerprint
from .registry import BackboneEntry

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
SEED = 0


def build_tiny_model() -> torch.nn.Module:
    """The same weights on every machine and call: the global RNG is forked, not consumed."""
    from open_clip.model import CLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = CLIP(embed_dim=TINY_CONFIG["embed_dim"], vision_cfg=TINY_CONFIG["vision_cfg"],
                     text_cfg=TINY_CONFIG["text_cfg"])
    return model.eval()


def build(entry: BackboneEntry, device: torch.device, precision: str) -> Backbone:
    from open_clip.tokenizer import SimpleTokenizer

    from .openclip import wrap_open_clip

    model = build_tiny_model()
    fingerprint = tensors_fingerprint(model.state_dict())
    text_cfg: dict = TINY_CONFIG["text_cfg"]  # type: ignore[assignment]
    tokenizer = SimpleTokenizer(context_length=text_cfg["context_length"])
    return wrap_open_clip(entry, model, tokenizer, device, precision, fingerprint)


def local_weight_files(entry: BackboneEntry):
    return []  # built from code: always available
