"""How the run's recommended method is chosen: the selection figure of each method, computed on validation or by
cross-validation over train+val, never on the test split.

This module holds the shared types only; the leaderboard (:mod:`breastclip.evaluation.leaderboard`) orders methods
by :attr:`SelectionScore.value` and marks the selected one; the cross-validation engine produces ``cv_*`` scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Where a selection figure comes from.
SelectionSource = Literal["val", "cv"]


@dataclass(frozen=True)
class SelectionScore:
    """One method's selection figure, e.g. ``metric="val_roc_auc"`` or ``"cv_roc_auc"`` (mean over folds).

    ``sd`` is the spread over folds (and seeds) for cross-validation; ``ci_lo``/``ci_hi`` the bootstrap interval of a
    validation figure, when known (used to tell a method that learned nothing from chance). ``value`` is None when
    the figure cannot be computed (e.g. a validation part with one class).
    """

    metric: str
    value: float | None
    source: SelectionSource = "val"
    sd: float | None = None
    ci_lo: float | None = None
    ci_hi: float | None = None
    n_folds: int | None = None
