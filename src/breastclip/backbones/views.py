"""Feature views: named variants of a registered backbone, written ``<backbone>@<token>+<token>...``.

=============  ====================================================================================================
``stages``     pooled intermediate features instead of the final embedding alone: CNNs (EfficientNet-Lite, open_clip
               ModifiedResNet) the mean and standard deviation over space of every stage's output; ViTs the class
               token and the mean patch token of (up to) four evenly spaced transformer blocks
``final``      with ``stages``: also the backbone's own final embedding, as one more block
``mirror``     test-time averaging with the horizontal mirror (pooled features of both, averaged)
``x<size>``    multi-scale (CNNs): also run the image resized to <size> px (e.g. ``x160``); every scale's blocks kept
=============  ====================================================================================================

Every block (one stage at one scale) is L2-normalised and weighted 1/sqrt(number of blocks), so each counts the
same whatever its width; heads that standardise features (the RBF SVM) then see comparable blocks. The tokens are
part of the entry's name and of its preprocessing key, so each view has its own embedding cache. Example:
``efficientnet-lite0@stages+mirror+x160`` (stage features at 160 and 224 px, mirror-averaged).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace

import torch
from torch.nn import functional as F

from .base import Backbone
from .registry import BackboneEntry

FLAGS = ("stages", "final", "mirror")
_SCALE = re.compile(r"^x(\d{2,4})$")
#: Families whose image tower has stages worth pooling.
STAGE_FAMILIES = ("efficientnet_lite", "open_clip", "tiny")


def parse_view(tokens: str) -> tuple[str, ...]:
    """Validated, canonical (sorted, unique) view tokens from the text after ``@``."""
    out = []
    for tok in (t.strip() for t in tokens.split("+")):
        if tok in FLAGS or _SCALE.match(tok):
            out.append(tok)
        else:
            raise KeyError(f"unknown feature view '{tok}'; views are {', '.join(FLAGS)} and x<size> (extra input "
                           f"size, e.g. x160), joined with '+', as in 'efficientnet-lite0@stages+mirror+x160'")
    if "final" in out and "stages" not in out:
        raise KeyError("feature view 'final' adds the final embedding to 'stages': write '@stages+final'")
    return tuple(sorted(set(out)))


def scales(entry: BackboneEntry) -> tuple[int, ...]:
    """Input sizes the view runs, ascending; the entry's own size always included."""
    extra = {int(m.group(1)) for t in entry.view if (m := _SCALE.match(t))}
    return tuple(sorted(extra | {entry.image_size}))


def view_entry(base: BackboneEntry, tokens: str) -> BackboneEntry:
    view = parse_view(tokens)
    if "stages" in view and base.family not in STAGE_FAMILIES:
        raise KeyError(f"backbone '{base.name}' ({base.family}) has no stage view; stages work for "
                       f"{', '.join(STAGE_FAMILIES)} backbones")
    return replace(base, name=f"{base.name}@{'+'.join(view)}", view=view,
                   description=f"{base.description} [feature view: {', '.join(view)}]")


# ---- which modules to pool ------------------------------------------------------------------------------------
def stage_modules(backbone: Backbone) -> list[tuple[torch.nn.Module, str]]:
    """(module, kind) whose outputs are pooled: kind 'spatial' (N, C, H, W) or 'tokens' (N, L, D) / (L, N, D)."""
    model = backbone.image_model
    net = getattr(model, "net", None)
    if net is not None and hasattr(net, "_blocks"):  # EfficientNet-Lite: the last block of every stage
        blocks = list(net._blocks)
        outc = [b._project_conv.out_channels for b in blocks]
        ends = [i for i in range(len(blocks)) if i == len(blocks) - 1 or outc[i + 1] != outc[i]]
        return [(blocks[i], "spatial") for i in ends]
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):  # open_clip ModifiedResNet
        return [(getattr(model, f"layer{i}"), "spatial") for i in range(1, 5)]
    resblocks = getattr(getattr(model, "transformer", None), "resblocks", None)
    if resblocks is not None:  # open_clip VisionTransformer: four evenly spaced blocks (all when fewer)
        n = len(resblocks)
        picks = sorted({round(k * (n - 1) / 3) for k in range(4)}) if n > 4 else list(range(n))
        kind = "tokens" if getattr(model.transformer, "batch_first", True) else "tokens_lnd"
        return [(resblocks[i], kind) for i in picks]
    raise ValueError(f"backbone '{backbone.name}': no stage layout known for {type(model).__name__}")


def _pool(out: torch.Tensor, kind: str) -> torch.Tensor:
    out = out.float()
    if kind == "spatial":
        return torch.cat([out.mean((2, 3)), out.std((2, 3))], dim=1)
    if kind == "tokens_lnd":
        out = out.permute(1, 0, 2)
    return torch.cat([out[:, 0], out[:, 1:].mean(1)], dim=1)  # class token, mean patch token


class ViewForward(torch.nn.Module):
    """The view's image forward: normalised (N, 3, S, S) -> concatenated, block-normalised features."""

    def __init__(self, base_forward: Callable[[torch.Tensor], torch.Tensor],
                 stages: list[tuple[torch.nn.Module, str]], entry: BackboneEntry) -> None:
        super().__init__()
        self.base_forward = base_forward
        self.stages = stages
        self.final = "final" in entry.view or "stages" not in entry.view
        self.mirror = "mirror" in entry.view
        self.sizes = scales(entry)
        self.interpolation = "bicubic" if entry.interpolation == "bicubic" else "bilinear"

    def _blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        got: list[torch.Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _i, o, kind=kind: got.append(_pool(o, kind)))
                   for m, kind in self.stages]
        try:
            final = self.base_forward(x).float()
        finally:
            for h in handles:
                h.remove()
        return [*got, final] if self.final else got

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats: list[torch.Tensor] = []
        for size in self.sizes:
            xs = x if size == x.shape[-1] else F.interpolate(x, size=(size, size), mode=self.interpolation,
                                                             align_corners=False, antialias=True)
            if self.mirror:  # one batch holding image and mirror, features averaged
                both = self._blocks(torch.cat([xs, torch.flip(xs, dims=[3])]))
                blocks = [(b[: len(x)] + b[len(x):]) / 2 for b in both]
            else:
                blocks = self._blocks(xs)
            feats.extend(blocks)
        w = 1.0 / math.sqrt(len(feats))
        return torch.cat([F.normalize(b, dim=1) * w for b in feats], dim=1)


def apply_view(base: Backbone, entry: BackboneEntry) -> Backbone:
    """The backbone ``base`` (built from the entry without its view) with the view's image forward."""
    stages = stage_modules(base) if "stages" in entry.view else []
    if len(scales(entry)) > 1 and hasattr(base.image_model, "positional_embedding"):
        raise ValueError(f"backbone '{entry.name}': x<size> (multi-scale) needs a CNN; {entry.name.rsplit('@', 1)[0]} is a vision "
                         f"transformer with a fixed {entry.image_size} px position embedding")
    forward = ViewForward(base._image_forward, stages, entry)
    bb = Backbone(entry, image_model=base.image_model, image_forward=forward, device=base.device,
                  fingerprint=base.fingerprint, precision=base.precision, text_forward=base._text_forward)
    s = entry.image_size
    probe = bb.encode_tensor(torch.zeros((1, 3, s, s), dtype=torch.uint8, device=base.device))
    bb.entry = replace(entry, embed_dim=int(probe.shape[1]))  # the view's width, known once built
    return bb
