"""Similarity-guided head (the CBIS-DDSM notebook's SimilarityFCClassifier): image embedding -> residual adapter
-> cosine similarity to the class text embeddings with a learned temperature. Loss: cross-entropy on the labels
plus ``guidance_weight`` x KL(zero-shot similarity distribution || head distribution)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from breastclip.heads._torch_base import TorchHead


class _SimilarityModule(nn.Module):
    def __init__(self, n_features: int, text: torch.Tensor, *, project: bool, hidden: int, ratio: float,
                 tune_text: bool, init_temperature: float, dropout: float) -> None:
        super().__init__()
        d_text = text.shape[1]
        self.proj = nn.Linear(n_features, d_text, bias=False) if project else nn.Identity()
        self.adapter = nn.Sequential(nn.Linear(d_text, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, d_text))
        self.ratio = float(ratio)
        text = F.normalize(text.float(), dim=1)
        if tune_text:
            self.text = nn.Parameter(text.clone())
        else:
            self.register_buffer("text", text.clone())
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.proj(x)
        z = (1.0 - self.ratio) * z + self.ratio * self.adapter(z)
        sim = F.normalize(z, dim=1) @ F.normalize(self.text, dim=1).T
        return self.logit_scale.exp().clamp(max=100.0) * sim


class SimilarityGuidedHead(TorchHead):
    """Cosine-similarity classifier anchored on prompt-bank class embeddings.

    ``text_embeddings (K, d_text)``: class text embeddings in ``classes_`` order (sorted labels). With
    ``text_aligned=True`` and ``d_text == d`` the adapter works in the shared space and the guidance term pulls the
    head toward the zero-shot distribution ``softmax(zero_shot_scale * cos(x, t))``. With an unaligned pair (e.g.
    efficientnet-lite + MiniLM) a linear projection into the text space is learned and the guidance term is off
    (no zero-shot distribution exists there); ``guidance_active_`` records which. ``tune_text`` makes the class
    embeddings trainable. ``text_embeddings=None`` learns the class vectors from scratch (a plain cosine
    classifier; for backbones without a text tower).
    """

    head_name = "similarity_guided"

    def __init__(
        self,
        text_embeddings: np.ndarray | None = None,
        text_aligned: bool = True,
        hidden: int = 256,
        residual_ratio: float = 0.5,
        tune_text: bool = False,
        guidance_weight: float = 1.0,
        zero_shot_scale: float = 100.0,
        init_temperature: float = 0.07,
        dropout: float = 0.1,
        epochs: int = 50,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int | None = None,
        validation_fraction: float = 0.0,
        random_state: int | None = None,
        device: str | None = None,
    ) -> None:
        self.text_embeddings = text_embeddings
        self.text_aligned = text_aligned
        self.hidden = hidden
        self.residual_ratio = residual_ratio
        self.tune_text = tune_text
        self.guidance_weight = guidance_weight
        self.zero_shot_scale = zero_shot_scale
        self.init_temperature = init_temperature
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device

    def _text(self, n_features: int, n_classes: int) -> tuple[torch.Tensor, bool, bool]:
        """(class vectors, project?, guidance?)."""
        if self.text_embeddings is None:
            gen = torch.Generator().manual_seed(self.seed_)
            return torch.randn(n_classes, n_features, generator=gen), False, False
        T = torch.as_tensor(np.asarray(self.text_embeddings, dtype=np.float32))
        if T.ndim != 2 or T.shape[0] != n_classes:
            raise ValueError(f"text_embeddings has shape {tuple(T.shape)}; expected ({n_classes}, d_text), one row "
                             f"per class in classes_ order {self.classes_.tolist()}")
        if self.text_aligned and T.shape[1] != n_features:
            raise ValueError(f"text_aligned=True but image embeddings have {n_features} dimensions and text "
                             f"embeddings {T.shape[1]}: pass text_aligned=False to learn a projection")
        aligned = bool(self.text_aligned)
        return T, not aligned, aligned and float(self.guidance_weight) > 0

    def _build_module(self, n_features: int, n_classes: int) -> nn.Module:
        text, project, guided = self._text(n_features, n_classes)
        self.guidance_active_ = guided
        return _SimilarityModule(n_features, text, project=project, hidden=int(self.hidden),
                                 ratio=float(self.residual_ratio), tune_text=bool(self.tune_text),
                                 init_temperature=float(self.init_temperature), dropout=float(self.dropout))

    def _make_loss(self, y_train, n_classes):
        guided = self.guidance_active_
        w = float(self.guidance_weight)
        frozen = None
        if guided:
            frozen = F.normalize(torch.as_tensor(np.asarray(self.text_embeddings, dtype=np.float32)), dim=1)
        scale = float(self.zero_shot_scale)

        def loss(module, xb, logits, yb):
            ce = F.cross_entropy(logits, yb)
            if not guided:
                return ce
            assert frozen is not None  # built above whenever guidance is on
            with torch.no_grad():
                p_zs = F.softmax(scale * F.normalize(xb, dim=1) @ frozen.to(xb.device).T, dim=1)
            kl = F.kl_div(F.log_softmax(logits, dim=1), p_zs, reduction="batchmean")
            return ce + w * kl

        return loss

    def _extra_state(self):
        return {"guidance_active": bool(self.guidance_active_)}
