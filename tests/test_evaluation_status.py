"""evaluation/status.py: each way a method can learn nothing is detected, and a method that learned is "ok"."""

from __future__ import annotations

import numpy as np
import pytest

from breastclip.evaluation.selection import SelectionScore
from breastclip.evaluation.status import (
    OK,
    chance_level,
    diverged,
    losses_of,
    method_status,
    near_constant,
    no_better_than_chance,
    one_class_predicted,
    temperature_at_bound,
)

CLASSES = ["benign", "malignant", "normal"]


def _proba(rng, n, k=3):
    p = rng.dirichlet(np.ones(k), size=n)
    return p


def _status(**kw):
    rng = np.random.default_rng(0)
    base = {"classes": CLASSES, "p_val": _proba(rng, 30), "p_test": _proba(rng, 40),
            "selection": SelectionScore("val_roc_auc", 0.85, ci_lo=0.72, ci_hi=0.95), "chance": 0.5,
            "val_auc": SelectionScore("val_roc_auc", 0.85, ci_lo=0.72, ci_hi=0.95), "temperature": 1.3,
            "losses": [1.1, 0.9, 0.7]}
    return method_status(**{**base, **kw})


def test_a_method_that_learned_is_ok():
    assert _status() == OK


def test_one_predicted_class_for_every_validation_or_test_image():
    one = np.tile([0.2, 0.5, 0.3], (30, 1)) + np.linspace(0, 0.05, 30)[:, None] * [1, 0, -1]
    assert one_class_predicted(one) == 1
    assert "predicts 'malignant' for every validation image" in _status(p_val=one)
    assert "predicts 'malignant' for every test image" in _status(p_test=one)
    assert one_class_predicted(np.eye(3)) is None


def test_near_constant_probabilities():
    flat = np.full((50, 3), 1 / 3) + np.random.default_rng(1).normal(0, 1e-5, (50, 3))
    assert near_constant(flat) and not near_constant(np.eye(3))
    status = _status(p_val=flat[:20], p_test=flat[20:])
    assert "near-constant probabilities" in status


def test_validation_figure_no_better_than_chance():
    assert no_better_than_chance(SelectionScore("val_roc_auc", 0.7, ci_lo=0.45, ci_hi=0.9), 0.5)
    assert not no_better_than_chance(SelectionScore("val_roc_auc", 0.7, ci_lo=0.55, ci_hi=0.9), 0.5)
    assert no_better_than_chance(SelectionScore("cv_roc_auc", 0.49, sd=0.02, source="cv"), 0.5)  # no CI: estimate
    assert no_better_than_chance(SelectionScore("val_roc_auc", None), 0.5)
    s = SelectionScore("val_roc_auc", 0.6, ci_lo=0.4, ci_hi=0.8)
    assert "val_roc_auc 0.600 [0.400, 0.800] no better than chance (0.5)" in _status(selection=s, val_auc=s)
    # accuracy as the selection figure: chance is the majority-class rate of the validation labels
    y = np.array([0] * 7 + [1] * 2 + [2])
    assert chance_level("accuracy", y, 3) == pytest.approx(0.7)
    assert chance_level("balanced_accuracy", y, 3) == pytest.approx(1 / 3)
    acc = SelectionScore("val_accuracy", 0.75, ci_lo=0.6, ci_hi=0.9)
    assert "val_accuracy 0.750 [0.600, 0.900] no better than chance (0.7)" in _status(selection=acc, chance=0.7)
    # the validation AUC is checked as well when another metric selects
    bad_auc = SelectionScore("val_roc_auc", 0.55, ci_lo=0.3, ci_hi=0.8)
    assert "val_roc_auc 0.550" in _status(selection=SelectionScore("val_accuracy", 0.9, ci_lo=0.85, ci_hi=0.95),
                                          chance=0.7, val_auc=bad_auc)
    assert "no selection figure" in _status(selection=SelectionScore("val_roc_auc", None))


def test_temperature_at_a_bound():
    assert temperature_at_bound(0.01, (0.01, 100.0)) and temperature_at_bound(99.5, (0.01, 100.0))
    assert not temperature_at_bound(1.0, (0.01, 100.0)) and not temperature_at_bound(None, (0.01, 100.0))
    assert "calibration temperature 100 at a bound" in _status(temperature=100.0)


def test_training_diverged():
    assert diverged([1.0, float("nan")]) and diverged(None, np.array([[np.inf, 0.0]]))
    assert not diverged([1.0, 0.5], np.eye(2))
    assert "training diverged" in _status(losses=[0.9, float("inf")])
    assert losses_of([{"epoch": 1, "train_loss": 0.5, "val_loss": float("nan"), "lr": 0.1}]) == [0.5, pytest.approx(
        float("nan"), nan_ok=True)]
