"""MLP head of the DBT notebook: d -> 256 -> 128 -> K with BatchNorm, ReLU and dropout; focal loss with
effective-number class weights; optional SMOTETomek on the training rows only; Adam + cosine annealing."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from breastclip.heads._torch_base import TorchHead
from breastclip.heads.losses import FocalLoss, effective_number_weights


def mlp(n_features: int, hidden: tuple[int, ...], n_classes: int, dropout: float, batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_features
    for h in hidden:
        layers.append(nn.Linear(width, int(h)))
        if batchnorm:
            layers.append(nn.BatchNorm1d(int(h)))
        layers += [nn.ReLU(), nn.Dropout(dropout)]
        width = int(h)
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


class MLPHead(TorchHead):
    """Focal-loss MLP for imbalanced classes.

    ``loss``: ``"focal"`` (gamma ``gamma``, alpha from the effective number of samples with ``beta``) or
    ``"ce"``. ``smote``: resample the training rows with imbalanced-learn's SMOTETomek before training (validation
    rows are never resampled). The best epoch by validation loss is kept.
    """

    head_name = "mlp"

    def __init__(
        self,
        hidden: tuple[int, ...] = (256, 128),
        dropout: float = 0.5,
        batchnorm: bool = True,
        loss: str = "focal",
        gamma: float = 2.0,
        beta: float = 0.999,
        smote: bool = False,
        epochs: int = 30,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        patience: int | None = None,
        validation_fraction: float = 0.0,
        random_state: int | None = None,
        device: str | None = None,
    ) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.batchnorm = batchnorm
        self.loss = loss
        self.gamma = gamma
        self.beta = beta
        self.smote = smote
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device

    def _build_module(self, n_features: int, n_classes: int) -> nn.Module:
        return mlp(n_features, tuple(self.hidden), n_classes, float(self.dropout), bool(self.batchnorm))

    def _resample(self, X, y, rng_seed):
        if not self.smote:
            return X, y
        from imblearn.combine import SMOTETomek
        from imblearn.over_sampling import SMOTE

        k = int(min(5, np.bincount(y).min() - 1))
        if k < 1:
            raise ValueError("SMOTETomek needs at least 2 training rows in every class")
        sampler = SMOTETomek(smote=SMOTE(k_neighbors=k, random_state=rng_seed), random_state=rng_seed)
        X_res, y_res = sampler.fit_resample(X, y)
        return np.asarray(X_res), np.asarray(y_res)

    def _make_loss(self, y_train, n_classes):
        if self.loss == "ce":
            ce = nn.CrossEntropyLoss()
            return lambda module, xb, logits, yb: ce(logits, yb)
        if self.loss != "focal":
            raise ValueError(f"loss must be 'focal' or 'ce', got {self.loss!r}")
        alpha = effective_number_weights(np.bincount(y_train, minlength=n_classes), self.beta)
        focal = FocalLoss(self.gamma, torch.as_tensor(alpha, dtype=torch.float32))
        return lambda module, xb, logits, yb: focal(logits, yb)

    def _make_scheduler(self, optimizer):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(self.epochs)))
