"""FC head of the BreakHis notebook: Linear -> Dropout -> ReLU -> Linear, cross-entropy with label smoothing,
Adam (weight decay 1e-5) and a step learning-rate schedule, 35 epochs."""

from __future__ import annotations

import torch
from torch import nn

from breastclip.heads._torch_base import TorchHead


class FCHead(TorchHead):
    """One hidden fully connected layer; ``step_size`` / ``step_gamma`` drive StepLR."""

    head_name = "fc"

    def __init__(
        self,
        hidden: int = 512,
        dropout: float = 0.5,
        label_smoothing: float = 0.1,
        epochs: int = 35,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        step_size: int = 10,
        step_gamma: float = 0.1,
        patience: int | None = None,
        validation_fraction: float = 0.0,
        random_state: int | None = None,
        device: str | None = None,
    ) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.step_size = step_size
        self.step_gamma = step_gamma
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device

    def _build_module(self, n_features: int, n_classes: int) -> nn.Module:
        h = int(self.hidden)
        return nn.Sequential(nn.Linear(n_features, h), nn.Dropout(float(self.dropout)), nn.ReLU(), nn.Linear(h, n_classes))

    def _make_loss(self, y_train, n_classes):
        ce = nn.CrossEntropyLoss(label_smoothing=float(self.label_smoothing))
        return lambda module, xb, logits, yb: ce(logits, yb)

    def _make_scheduler(self, optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, int(self.step_size)), gamma=self.step_gamma)
