"""evaluation/leaderboard.py: the method is selected on validation (or CV), never test; a method that learned
nothing is never selected; the columns say which threshold they use."""

from __future__ import annotations

import numpy as np
import pandas as pd

from breastclip.evaluation import evaluate_predictions
from breastclip.evaluation.leaderboard import (
    build_leaderboard,
    leaderboard_for,
    method_statuses,
    selected_method,
    val_selection,
)
from breastclip.evaluation.selection import SelectionScore
from breastclip.predictions import make_predictions

N = {"val": 60, "test": 80}


def _method(name: str, sep: dict[str, float], seed: int, flat: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for split, n in N.items():
        y = np.array(["benign", "malignant"] * (n // 2))
        z = sep[split] * ((y == "malignant") - 0.5) * 2 + rng.normal(0, 1, n)
        p = 1 / (1 + np.exp(-z))
        if flat:  # ranks well, but every probability within 1e-4 of 0.5
            p = 0.5 + 1e-4 * (p - 0.5)
        ids = [f"{split}{i}" for i in range(n)]
        parts.append(make_predictions(ids=ids, y_true=y, proba=np.c_[1 - p, p], classes=["benign", "malignant"],
                                      method=name, split=split, patient_id=ids))
    return pd.concat(parts, ignore_index=True)


def _evaluate(pred):
    return {m: evaluate_predictions(pred, method=m, n_boot=50, seed=0) for m in pred["method"].unique()}


def test_validation_chooses_and_test_is_shown_beside():
    pred = pd.concat([_method("A", {"val": 1.5, "test": 0.5}, 1), _method("B", {"val": 0.8, "test": 2.5}, 2)])
    evs = _evaluate(pred)
    board = leaderboard_for(evs, pred, operating_point="youden")
    assert board["method"].tolist() == ["A", "B"] and board["selected"].tolist() == [True, False]
    assert board.attrs["selected"] == selected_method(board) == "A"
    b = board.set_index("method")
    assert b.loc["B", "test_roc_auc"] > b.loc["A", "test_roc_auc"]  # test favours B; it chose nothing
    assert b.loc["A", "selection_value"] == evs["A"].val_headline["roc_auc"]["estimate"]
    assert (b["selection_metric"] == "val_roc_auc").all() and (b["status"] == "ok").all()
    # threshold-dependent columns name their threshold
    assert {"test_accuracy@argmax", "test_sensitivity@argmax", "threshold@youden", "val_sensitivity@youden",
            "test_sensitivity@youden", "test_sensitivity@youden_ci_lo"} <= set(board.columns)
    assert "test_accuracy" not in board.columns and "sensitivity" not in board.columns
    # read back from CSV, the selected row is still found
    assert selected_method(pd.read_csv(pd.io.common.StringIO(board.to_csv(index=False)))) == "A"


def test_a_method_that_learned_nothing_is_never_selected_even_with_the_best_figure():
    pred = pd.concat([_method("flat", {"val": 3.0, "test": 3.0}, 3, flat=True),
                      _method("fair", {"val": 1.0, "test": 1.0}, 4)])
    evs = _evaluate(pred)
    sel = val_selection(evs, "roc_auc")
    assert sel["flat"].value > sel["fair"].value
    status = method_statuses(evs, pred, sel)
    assert "near-constant probabilities" in status["flat"] and status["fair"] == "ok"
    board = build_leaderboard(evs, selection=sel, statuses=status)
    assert board["method"].tolist() == ["fair", "flat"] and board.attrs["selected"] == "fair"
    # every method flagged: nothing selected
    board = build_leaderboard(evs, selection=sel, statuses={"flat": "x", "fair": "y"})
    assert not board["selected"].any() and board.attrs["selected"] is None and board.attrs["no_method_learned"]


def test_cross_validation_scores_are_accepted_from_any_source():
    pred = pd.concat([_method("A", {"val": 1.5, "test": 0.5}, 1), _method("B", {"val": 0.8, "test": 2.5}, 2)])
    evs = _evaluate(pred)
    cv = {"A": SelectionScore("cv_roc_auc", 0.71, source="cv", sd=0.04, n_folds=5),
          "B": SelectionScore("cv_roc_auc", 0.83, source="cv", sd=0.03, n_folds=5)}
    board = leaderboard_for(evs, pred, selection=cv)
    assert board.attrs["selected"] == "B" and board.attrs["selection_metric"] == "cv_roc_auc"
    assert board.loc[0, "selection_sd"] == 0.03 and board.loc[0, "selection_source"] == "cv"
    assert board["selected"].sum() == 1
