"""Did a method learn anything? Each check is a plain numpy function; :func:`method_status` joins their reasons.

A method's ``status`` is ``"ok"`` or the reasons it learned nothing usable, separated by ``"; "``:

- it predicts one class (argmax) for every validation image, or for every test image (test *predictions* only:
  test labels are never read here);
- its probabilities are near-constant (every class's probability varies by less than :data:`NEAR_CONSTANT` across
  the validation and test images), e.g. a 3-class probe that returns 0.333 for every image;
- its validation figure is no better than chance: the confidence interval of the validation ROC AUC includes 0.5,
  or that of the selection figure includes its chance level (:func:`chance_level`: majority-class rate for
  accuracy, 1/k for balanced accuracy, prevalence for average precision); without an interval (no bootstrap,
  cross-validation), the estimate itself at or below chance;
- its calibration temperature sits at a bound of the search (the fitted model is degenerate);
- training diverged: a non-finite loss in its history, or non-finite probabilities.

Such a method is never selected (:mod:`breastclip.evaluation.leaderboard`). Plain numpy: no torch here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from breastclip.evaluation.selection import SelectionScore

OK = "ok"
#: A class probability varying by less than this (max - min) over every image counts as constant.
NEAR_CONSTANT = 1e-3
#: A fitted temperature within this factor of a bound of its search (e.g. 0.01 or 100) sits at that bound.
BOUND_TOLERANCE = 1.02
#: Headline metrics whose chance level is defined (others are checked only through the validation ROC AUC).
CHANCE_METRICS = ("roc_auc", "accuracy", "balanced_accuracy", "recall_macro", "average_precision")


def one_class_predicted(proba: np.ndarray) -> int | None:
    """The class index argmax gives every row, when it is one class for all (and there are at least 2 rows)."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[0] < 2 or not np.isfinite(proba).all():
        return None
    pred = proba.argmax(axis=1)
    return int(pred[0]) if (pred == pred[0]).all() else None


def near_constant(proba: np.ndarray, tol: float = NEAR_CONSTANT) -> bool:
    """Every class column varies by less than ``tol`` over the rows (needs at least 2 rows)."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[0] < 2 or not np.isfinite(proba).all():
        return False
    return bool(np.ptp(proba, axis=0).max() < tol)


def chance_level(metric: str, y: np.ndarray, n_classes: int, positive_index: int | None = None) -> float | None:
    """What a method that learned nothing scores on labels ``y`` (class indices); None when not defined here."""
    y = np.asarray(y, dtype=int)
    if metric == "roc_auc":
        return 0.5
    if y.size == 0:
        return None
    if metric == "accuracy":
        return float(np.bincount(y, minlength=n_classes).max() / y.size)
    if metric in ("balanced_accuracy", "recall_macro"):
        return 1.0 / n_classes
    if metric == "average_precision":
        if n_classes == 2 and positive_index is not None:
            return float(np.mean(y == positive_index))
        return float(np.mean(np.bincount(y, minlength=n_classes) / y.size))
    return None


def no_better_than_chance(score: SelectionScore, chance: float) -> bool:
    """The figure's interval includes ``chance`` (or, without an interval, its estimate is at or below it)."""
    if score.value is None or not math.isfinite(score.value):
        return True
    if score.ci_lo is not None and math.isfinite(score.ci_lo):
        return score.ci_lo <= chance
    return score.value <= chance


def temperature_at_bound(temperature: float | None, bounds: tuple[float, float]) -> bool:
    if temperature is None or not math.isfinite(temperature):
        return False
    lo, hi = bounds
    return temperature <= lo * BOUND_TOLERANCE or temperature >= hi / BOUND_TOLERANCE


def diverged(losses: Sequence[float] | None, proba: np.ndarray | None = None) -> bool:
    """A non-finite training / validation loss, or non-finite probabilities."""
    if losses is not None and len(losses) and not np.isfinite(np.asarray(losses, dtype=float)).all():
        return True
    return proba is not None and not np.isfinite(np.asarray(proba, dtype=float)).all()


def method_status(
    *,
    classes: Sequence[str],
    p_val: np.ndarray,
    p_test: np.ndarray,
    selection: SelectionScore | None,
    chance: float | None,
    val_auc: SelectionScore | None = None,
    temperature: float | None = None,
    temperature_bounds: tuple[float, float] = (0.01, 100.0),
    losses: Sequence[float] | None = None,
) -> str:
    """``"ok"`` or the reasons the method learned nothing usable (see the module docstring)."""
    reasons: list[str] = []
    p_val, p_test = np.asarray(p_val, dtype=float), np.asarray(p_test, dtype=float)
    both = np.concatenate([p for p in (p_val, p_test) if p.size]) if p_val.size or p_test.size else p_val
    if diverged(losses, both):
        reasons.append("training diverged (non-finite loss or probabilities)")
    for name, p in (("validation", p_val), ("test", p_test)):
        k = one_class_predicted(p)
        if k is not None:
            reasons.append(f"predicts '{classes[k]}' for every {name} image")
    if near_constant(both):
        reasons.append(f"near-constant probabilities (each class varies by < {NEAR_CONSTANT:g} over all images)")
    if selection is None or selection.value is None or not math.isfinite(selection.value):
        reasons.append("no selection figure (no validation predictions, or the validation split lacks a class)")
    elif chance is not None and no_better_than_chance(selection, chance):
        reasons.append(f"{selection.metric} {_fig(selection)} no better than chance ({chance:.3g})")
    if (val_auc is not None and (selection is None or val_auc.metric != selection.metric)
            and val_auc.value is not None and no_better_than_chance(val_auc, 0.5)):
        reasons.append(f"{val_auc.metric} {_fig(val_auc)} no better than chance (0.5)")
    if temperature_at_bound(temperature, temperature_bounds):
        reasons.append(f"calibration temperature {temperature:.3g} at a bound of its search "
                       f"[{temperature_bounds[0]:g}, {temperature_bounds[1]:g}]")
    return "; ".join(dict.fromkeys(reasons)) or OK


def _fig(s: SelectionScore) -> str:
    if s.ci_lo is not None and s.ci_hi is not None and math.isfinite(s.ci_lo) and math.isfinite(s.ci_hi):
        return f"{s.value:.3f} [{s.ci_lo:.3f}, {s.ci_hi:.3f}]"
    if s.sd is not None:
        return f"{s.value:.3f} ± {s.sd:.3f}"
    return f"{s.value:.3f}"


def losses_of(history: Sequence[Mapping] | None) -> list[float]:
    """Every loss value (keys containing ``loss``) of a per-epoch history (list of dicts)."""
    out: list[float] = []
    for row in history or ():
        for k, v in row.items():
            if "loss" in str(k) and v is not None:
                try:
                    out.append(float(v))
                except (TypeError, ValueError):
                    continue
    return out
