"""Grad-CAM through pytorch-grad-cam for fine-tuned CNNs and for CLIP-family image towers.

We wrap the library and add only what it cannot know: which layer to hook for each tower, a reshape transform that
turns ViT tokens back into a (N, D, h, w) grid, and a differentiable "score" model:

- fine-tuned CNN: its class logits (target = a class; default the predicted one);
- CLIP tower: cosine similarity between the image embedding and K target embeddings (text prompts encoded by the
  backbone's own text tower, or any vectors in the image space such as class-mean embeddings); target = one of them.

``with GradCAMExplainer(cam_model) as cam: maps = cam(images)``: hooks are released on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class CamModel:
    """Everything Grad-CAM needs: a score model, where to look, and how to turn an image into its input."""

    model: nn.Module  # normalised float (N, 3, S, S) -> scores (N, K)
    target_layers: list[nn.Module]
    labels: list[str]  # names of the K outputs: classes or prompts
    prepare: Callable[[np.ndarray], torch.Tensor]  # (H, W, 3) uint8 -> (3, S, S) uint8, as the model was fed
    normalize: Callable[[torch.Tensor], torch.Tensor]  # uint8 (N, 3, S, S) -> model input on its device
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    score_kind: str = "probability"  # "probability" (softmax of logits) or "cosine similarity"
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def target_index(self, target: int | str | None) -> int | None:
        """A label name or index -> index (None: the highest-scoring output per image)."""
        if target is None or isinstance(target, (int, np.integer)):
            if target is not None and not 0 <= int(target) < len(self.labels):
                raise ValueError(f"target {target} out of range for {len(self.labels)} outputs {self.labels}")
            return None if target is None else int(target)
        if target not in self.labels:
            raise ValueError(f"unknown target '{target}'; choose one of {self.labels}")
        return self.labels.index(target)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> the score a reader sees (softmax probability, or the cosine similarity itself)."""
        return outputs.softmax(dim=1) if self.score_kind == "probability" else outputs


# ---- token reshape ---------------------------------------------------------------------------------------------
def vit_reshape_transform(grid: tuple[int, int] | None = None, *, batch_first: bool = True
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tokens (N, L, D) (or (L, N, D)) -> (N, D, h, w): drop the class/prefix tokens, keep the last h*w patches."""

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if isinstance(tokens, tuple):
            tokens = tokens[0]
        t = tokens if batch_first else tokens.transpose(0, 1)
        n, length, d = t.shape
        gh, gw = grid or _square_grid(length)
        if gh * gw > length:
            raise ValueError(f"token grid {gh}x{gw} does not fit {length} tokens")
        return t[:, length - gh * gw:, :].reshape(n, gh, gw, d).permute(0, 3, 1, 2)

    return reshape


def _square_grid(length: int) -> tuple[int, int]:
    for prefix in range(0, 9):  # class token, register / distillation tokens
        side = int(round((length - prefix) ** 0.5))
        if side * side == length - prefix and side > 0:
            return side, side
    raise ValueError(f"cannot infer a square patch grid from {length} tokens; pass grid=(h, w)")


def _as_pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def default_target_layers(image_model: nn.Module
                          ) -> tuple[list[nn.Module], Callable[[torch.Tensor], torch.Tensor] | None]:
    """The conventional Grad-CAM layer (and token reshape) for the image towers and CNNs breastclip builds."""
    m: Any = image_model  # duck-typed: the attributes each tower family has are probed below
    if hasattr(m, "transformer") and hasattr(m.transformer, "resblocks"):  # open_clip VisionTransformer
        batch_first = bool(getattr(m.transformer, "batch_first", False))
        grid = _as_pair(m.grid_size) if hasattr(m, "grid_size") else None
        return [m.transformer.resblocks[-1].ln_1], vit_reshape_transform(grid, batch_first=batch_first)
    vision = getattr(m, "vision_model", None)
    if vision is not None and hasattr(vision, "encoder"):  # Hugging Face CLIPVisionModel (+ projection)
        cfg = vision.config
        side = cfg.image_size // cfg.patch_size
        return [vision.encoder.layers[-1].layer_norm1], vit_reshape_transform((side, side), batch_first=True)
    if hasattr(m, "layer4"):  # open_clip ModifiedResNet, torchvision ResNet
        return [m.layer4], None
    net = getattr(m, "net", m)
    if hasattr(net, "_conv_head"):  # EfficientNet-Lite (breastclip backbone wrapper or the bare network)
        return [net._conv_head], None
    if hasattr(m, "trunk"):  # open_clip TimmModel: fall through to its last convolution
        m = m.trunk
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    if convs:
        return [convs[-1]], None
    raise ValueError(f"no default Grad-CAM layer known for {type(image_model).__name__}; pass target_layers=[...]")


# ---- score models ----------------------------------------------------------------------------------------------
class SimilarityScores(nn.Module):
    """Image tower -> cosine similarity to K fixed target embeddings, (N, K): a differentiable prompt target."""

    def __init__(self, image_model: nn.Module, targets: torch.Tensor) -> None:
        super().__init__()
        self.image_model = image_model
        self.targets: torch.Tensor
        self.register_buffer("targets", F.normalize(targets.float(), dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.image_model(x)
        if isinstance(f, (tuple, list)):  # towers that also return tokens
            f = f[0]
        return F.normalize(f.float(), dim=-1) @ self.targets.T


class _TwoLogits(nn.Module):
    """One BCE logit z -> (-z/2, z/2): softmax of it is (1 - sigmoid(z), sigmoid(z)), so class 0 is explainable."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        return torch.cat([-z / 2, z / 2], dim=1)


def cam_model_for_finetuned(fm, target_layers: Sequence[nn.Module] | None = None) -> CamModel:
    """A :class:`breastclip.finetune.FinetunedModel` (see ``load_finetuned``) as a Grad-CAM model over its classes."""
    from breastclip.finetune.dataset import to_model_size

    model = fm.model.eval()
    layers = list(target_layers) if target_layers else [fm.target_layer()]
    if fm.loss == "bce" and len(fm.classes) == 2:
        model = _TwoLogits(model)
    return CamModel(model=model, target_layers=layers, labels=list(fm.classes),
                    prepare=lambda im: to_model_size(im, fm.image_size), normalize=fm.normalize,
                    score_kind="probability", description=f"fine-tuned {fm.arch}")


def cam_model_for_backbone(backbone, prompts: Sequence[str] | None = None, *, bank=None,
                           target_embeddings: np.ndarray | None = None, labels: Sequence[str] | None = None,
                           target_layers: Sequence[nn.Module] | None = None,
                           reshape_transform: Callable | None = None) -> CamModel:
    """A breastclip Backbone's image tower scored by cosine similarity to K targets, one of:

    ``prompts`` (each prompt its own target), ``bank`` (a prompt bank or its name: one target per class, the
    zero-shot class embedding averaged over the bank's prompts and templates), or ``target_embeddings`` (vectors in
    the image space, e.g. class-mean image embeddings; the only choice for image-only backbones)."""
    from breastclip.backbones.preprocess import prepare_image

    if getattr(backbone, "precision", "fp32") == "int8":
        raise ValueError("Grad-CAM needs gradients: build the backbone with precision='fp32' (not int8)")
    if bank is not None:
        from breastclip.prompts import class_text_embeddings, load_bank

        bank = load_bank(bank) if isinstance(bank, str) else bank
        targets = class_text_embeddings(backbone, bank)
        labels = list(bank.classes) if labels is None else list(labels)
    elif prompts:
        targets = backbone.encode_text(list(prompts))  # raises a clear error for image-only backbones
        labels = list(prompts) if labels is None else list(labels)
    elif target_embeddings is not None:
        targets = np.asarray(target_embeddings, dtype=np.float32)
        labels = list(labels) if labels is not None else [f"target {i}" for i in range(len(targets))]
    else:
        raise ValueError("give prompts or a prompt bank (backbones with a text tower) or target_embeddings "
                         "(vectors in the image embedding space, e.g. class-mean embeddings of the training split)")
    if targets.ndim != 2 or len(labels) != len(targets):
        raise ValueError(f"{len(labels)} labels for target embeddings of shape {targets.shape}")
    if targets.shape[1] != backbone.embed_dim:
        raise ValueError(f"backbone '{backbone.name}' embeds images in {backbone.embed_dim} dimensions but the "
                         f"targets have {targets.shape[1]} (a text tower without a shared space, e.g. "
                         "efficientnet-lite + MiniLM, cannot target prompts: pass image-space target_embeddings)")
    tower = backbone.image_model
    if target_layers:
        layers, reshape = list(target_layers), reshape_transform
    else:
        layers, reshape = default_target_layers(tower)
        reshape = reshape_transform or reshape
    model = SimilarityScores(tower, torch.as_tensor(targets)).to(backbone.device).eval()
    return CamModel(model=model, target_layers=layers, labels=labels,
                    # the pixels the embeddings saw: the breast crop (flip, padding) when the entry asks for it
                    prepare=lambda im: torch.from_numpy(prepare_image(im, backbone.entry)),
                    normalize=backbone.normalize, reshape_transform=reshape, score_kind="cosine similarity",
                    description=f"{backbone.name} image tower, cosine similarity to {len(labels)} target(s)")


# ---- the explainer ---------------------------------------------------------------------------------------------
@dataclass
class CamOutput:
    cams: np.ndarray  # (N, S, S) float32 in [0, 1]
    targets: np.ndarray  # (N,) output index explained
    scores: np.ndarray  # (N, K) scores before any perturbation (probabilities or similarities)


class GradCAMExplainer:
    """Context manager around ``pytorch_grad_cam.GradCAM`` (or another CAM class) for a :class:`CamModel`."""

    def __init__(self, cam_model: CamModel, method: str = "gradcam") -> None:
        import pytorch_grad_cam

        classes = {"gradcam": pytorch_grad_cam.GradCAM, "gradcam++": pytorch_grad_cam.GradCAMPlusPlus,
                   "hirescam": pytorch_grad_cam.HiResCAM, "layercam": pytorch_grad_cam.LayerCAM}
        if method not in classes:
            raise ValueError(f"unknown CAM method '{method}'; choose one of {sorted(classes)}")
        self.cam_model = cam_model
        self._cls = classes[method]
        self._cam = None

    def __enter__(self) -> GradCAMExplainer:
        cm = self.cam_model
        self._cam = self._cls(model=cm.model, target_layers=cm.target_layers, reshape_transform=cm.reshape_transform)
        return self

    def __exit__(self, *exc) -> None:
        if self._cam is not None:
            self._cam.activations_and_grads.release()
            self._cam = None

    def __call__(self, images: torch.Tensor, target: int | str | None = None) -> CamOutput:
        """uint8 (N, 3, S, S) as prepared by ``cam_model.prepare`` -> maps for ``target`` (default: top output)."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if self._cam is None:
            raise RuntimeError("use GradCAMExplainer as a context manager: `with GradCAMExplainer(m) as cam:`")
        cm = self.cam_model
        # frozen towers: gradients reach the hooked layer through the input
        x = cm.normalize(images.to(cm.device)).float().contiguous().requires_grad_(True)
        idx = cm.target_index(target)
        chosen = None if idx is None else [ClassifierOutputTarget(idx) for _ in range(len(images))]
        cams = self._cam(input_tensor=x, targets=chosen)  # None: the library explains each row's top output
        scores = cm.scores(self._cam.outputs.detach().float()).cpu()
        targets = scores.argmax(dim=1).numpy() if idx is None else np.full(len(images), idx)
        return CamOutput(np.asarray(cams, dtype=np.float32), targets.astype(int), scores.numpy())
