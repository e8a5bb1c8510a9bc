"""Gated attention multiple-instance learning (Ilse, Tomczak & Welling, ICML 2018) on bags of tile embeddings.

An image is a bag of tiles; ``X`` keeps the heads' 2-D contract by laying each bag flat: row ``i`` holds
``n_tiles`` tile embeddings of width ``tile_dim`` one after another (``n_features = n_tiles * tile_dim``), and a
tile slot that is all zeros is padding (real embeddings are L2-normalised, never zero). This is exactly what
``breastclip.backbones.tiles.bag_matrix`` (and the tile view's ``pool = "bag"``) produce, so ``Pipeline``,
``clone``, cross-validation and calibration work unchanged.

Model: ``h_k = ReLU(W x_k)``, attention ``a_k = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k)))`` over the real
tiles, bag vector ``z = sum_k a_k h_k``, logits ``= C z``. :meth:`AttentionMILHead.attention` returns ``a`` (which
tiles the prediction rests on). ``tile_dim=None`` treats each row as a bag of one tile (then the head is a small
MLP); scikit-learn's estimator checks run with that and with ``tile_dim=1`` (bags of scalar instances).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted
from torch import nn

from breastclip.heads._torch_base import TorchHead, torch_threads


class GatedAttentionMIL(nn.Module):
    """Flat bags ``(B, n_tiles * tile_dim)`` -> logits ``(B, n_classes)``; all-zero tile slots are masked out."""

    def __init__(self, tile_dim: int, hidden: int, attention_dim: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.tile_dim = int(tile_dim)
        self.embed = nn.Sequential(nn.Linear(self.tile_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attn_v = nn.Linear(hidden, attention_dim)
        self.attn_u = nn.Linear(hidden, attention_dim)
        self.attn_w = nn.Linear(attention_dim, 1)
        self.classifier = nn.Linear(hidden, n_classes)

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention weights (B, n_tiles), tile features (B, n_tiles, hidden))."""
        bags = x.reshape(x.shape[0], -1, self.tile_dim)
        real = bags.abs().sum(-1) > 0
        real = real | ~real.any(dim=1, keepdim=True)  # a bag of padding only: attend to every slot alike
        h = self.embed(bags)
        scores = self.attn_w(torch.tanh(self.attn_v(h)) * torch.sigmoid(self.attn_u(h))).squeeze(-1)
        scores = scores.masked_fill(~real, float("-inf"))
        return torch.softmax(scores, dim=1), h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, h = self.attention(x)
        return self.classifier((a.unsqueeze(-1) * h).sum(dim=1))


class AttentionMILHead(TorchHead):
    """Gated attention-MIL classifier on flat bags of tile embeddings (see the module docstring for ``X``).

    ``tile_dim``: width of one tile embedding (the backbone's embedding width, e.g. 1280 for EfficientNet-Lite0);
    None: the whole row is one instance. ``class_weight="balanced"`` weights the cross-entropy by inverse class
    frequency (a ``{class: weight}`` dict sets them). Other hyperparameters as the other torch heads (best epoch by validation loss).
    """

    head_name = "attention_mil"

    def __init__(
        self,
        tile_dim: int | None = None,
        hidden: int = 128,
        attention_dim: int = 64,
        dropout: float = 0.25,
        class_weight: str | dict | None = None,
        epochs: int = 40,
        batch_size: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int | None = None,
        validation_fraction: float = 0.0,
        random_state: int | None = None,
        device: str | None = None,
    ) -> None:
        self.tile_dim = tile_dim
        self.hidden = hidden
        self.attention_dim = attention_dim
        self.dropout = dropout
        self.class_weight = class_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device

    def _tile_dim(self, n_features: int) -> int:
        d = n_features if self.tile_dim is None else int(self.tile_dim)
        if d < 1 or n_features % d:
            raise ValueError(f"AttentionMILHead: {n_features} features are not a whole number of tiles of width "
                             f"tile_dim={self.tile_dim} (X rows must be n_tiles * tile_dim long)")
        return d

    def _build_module(self, n_features: int, n_classes: int) -> nn.Module:
        return GatedAttentionMIL(self._tile_dim(n_features), int(self.hidden), int(self.attention_dim), n_classes,
                                 float(self.dropout))

    def _make_loss(self, y_train: np.ndarray, n_classes: int):
        weight = None
        if self.class_weight == "balanced":
            present = np.unique(y_train)
            w = np.ones(n_classes)
            w[present] = compute_class_weight("balanced", classes=present, y=y_train)
            weight = torch.as_tensor(w, dtype=torch.float32)
        elif isinstance(self.class_weight, dict):
            w = np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()])
            weight = torch.as_tensor(w, dtype=torch.float32)
        elif self.class_weight is not None:
            raise ValueError(f"class_weight must be None, 'balanced' or a {{class: weight}} dict, "
                             f"got {self.class_weight!r}")
        ce = nn.CrossEntropyLoss(weight=weight)

        def loss(module, xb, logits, yb):
            if ce.weight is not None and ce.weight.dtype != logits.dtype:
                ce.weight = ce.weight.to(logits)
            return ce(logits, yb)

        return loss

    @property
    def n_tiles_(self) -> int:
        check_is_fitted(self, "module_")
        return self.n_features_in_ // self.module_.tile_dim

    def attention(self, X) -> np.ndarray:
        """Attention weights ``(n, n_tiles)`` of each bag's tiles (padding slots get 0; rows sum to 1)."""
        check_is_fitted(self, "module_")
        X = self._check_predict_input(X)
        out = []
        with torch.no_grad(), torch_threads(self.device):
            for start in range(0, len(X), 256):
                xb = torch.as_tensor(X[start:start + 256], dtype=torch.float64, device=self._torch_device())
                module: Any = self.module_  # a GatedAttentionMIL (the base class types it as a plain Module)
                out.append(module.attention(xb)[0].cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_tiles_))
