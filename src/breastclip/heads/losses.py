"""Class-imbalance losses: focal loss (Lin et al. 2017) with effective-number-of-samples class weights
(Cui et al. 2019), as in the DBT notebook."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def effective_number_weights(counts, beta: float = 0.999) -> np.ndarray:
    """Per-class weights ``(1 - beta) / (1 - beta**n_c)``, rescaled to sum to the number of classes.

    Rare classes get larger weights; ``beta -> 0`` gives uniform weights, ``beta -> 1`` inverse frequency.
    Classes with no samples get the largest weight seen (they cannot contribute to the loss anyway).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {counts.shape}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    present = counts > 0
    if not present.any():
        raise ValueError("every class count is zero")
    w = np.zeros_like(counts)
    w[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    w[~present] = w[present].max()
    return w / w.sum() * len(counts)


class FocalLoss(nn.Module):
    """Multi-class focal loss ``-alpha_y (1 - p_y)^gamma log p_y``, averaged over the batch.

    ``gamma = 0`` and no ``alpha`` is plain cross-entropy.
    """

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.alpha: torch.Tensor | None
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - log_p.exp()).clamp(min=0.0) ** self.gamma) * log_p
        if self.alpha is not None:
            loss = loss * self.alpha.to(logits.device)[target]
        return loss.mean()
