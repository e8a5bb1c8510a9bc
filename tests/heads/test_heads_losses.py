from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from breastclip.heads.losses import FocalLoss, effective_number_weights


def test_focal_with_gamma_zero_is_cross_entropy():
    logits = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, y), F.cross_entropy(logits, y))


def test_focal_loss_known_value_and_alpha():
    logits = torch.tensor([[0.0, np.log(3.0)]], dtype=torch.float32)  # p = (0.25, 0.75)
    y = torch.tensor([1])
    expected = -(0.25**2) * np.log(0.75)
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, y), torch.tensor(expected, dtype=torch.float32))
    alpha = torch.tensor([1.0, 0.5])
    torch.testing.assert_close(FocalLoss(2.0, alpha)(logits, y), torch.tensor(0.5 * expected, dtype=torch.float32))


def test_effective_number_weights():
    w = effective_number_weights([1000, 10], beta=0.999)
    raw = np.array([(1 - 0.999) / (1 - 0.999**1000), (1 - 0.999) / (1 - 0.999**10)])
    np.testing.assert_allclose(w, raw / raw.sum() * 2)
    assert w[1] > w[0]
    np.testing.assert_allclose(effective_number_weights([5, 50], beta=0.0), [1.0, 1.0])
    with pytest.raises(ValueError, match="beta"):
        effective_number_weights([1, 2], beta=1.0)
