"""evaluation/leaderboard.py: the method is selected on validation (or CV), never test; a method that learned
nothing is never selected; the columns say which threshold they use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastclip.evaluation import evaluate_predictions
from breastclip.evaluation.leaderboard import (
    build_leaderboard,
    leaderboard_for,
    method_statuses,
    selected_method,
    selected_summary,
    selection_text,
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


def _seeded(cv: dict[str, float], seps: dict[str, float]):
    """Methods A and B over seeds 0, 1, 2: ``cv[label]`` its CV figure, ``seps[label]`` its test separation."""
    pred = pd.concat([_method(label, {"val": 1.5, "test": seps[label]}, 10 + i) for i, label in enumerate(seps)])
    evs = _evaluate(pred)
    sel = {k: SelectionScore("cv_roc_auc", v, source="cv", sd=0.02, n_folds=5) for k, v in cv.items()}
    return pred, evs, sel


SEPS = {"A.seed0": 0.6, "A.seed1": 4.0, "A.seed2": 0.6, "B.seed0": 1.2, "B.seed1": 1.3, "B.seed2": 1.1}


def test_seeds_select_the_method_by_mean_cv_and_deploy_its_master_seed_never_a_lucky_seed_row():
    # A.seed1 has the best single CV and by far the best test figure; B has the better mean CV over seeds
    cv = {"A.seed0": 0.70, "A.seed1": 0.95, "A.seed2": 0.70, "B.seed0": 0.84, "B.seed1": 0.86, "B.seed2": 0.85}
    pred, evs, sel = _seeded(cv, SEPS)
    board = leaderboard_for(evs, pred, selection=sel, seeds=[0, 1, 2], master_seed=1)
    b = board.set_index("method")
    assert b["test_roc_auc"].idxmax() == "A.seed1" and b["selection_value"].idxmax() == "A.seed1"
    # B is selected, and the selected row is its master seed's (experiment.seed = 1)
    assert selected_method(board) == board.attrs["selected"] == "B.seed1" and board["selected"].sum() == 1
    # rows of a method stay together, master seed first; ranked by the mean selection figure
    assert board["method"].tolist() == ["B.seed1", "B.seed0", "B.seed2", "A.seed1", "A.seed0", "A.seed2"]
    assert (b["base_method"] == b.index.str[0]).all() and b.loc["A.seed2", "seed"] == 2
    # every seed row carries its method's pooled columns, which are the means / sds over its seeds
    for m in "AB":
        labels = [f"{m}.seed{s}" for s in range(3)]
        for col in ("test_roc_auc", "test_accuracy@argmax", "selection_value"):
            v = b.loc[labels, col].to_numpy(dtype=float)
            assert b.loc[labels, col + "_seeds_mean"].to_numpy(dtype=float) == pytest.approx([v.mean()] * 3)
            assert b.loc[labels, col + "_seeds_sd"].to_numpy(dtype=float) == pytest.approx([np.std(v, ddof=1)] * 3)
        assert (b.loc[labels, "n_seeds"] == 3).all()
    assert b.loc["B.seed1", "selection_value_seeds_mean"] == pytest.approx(0.85)
    assert board.attrs["selection_metric"] == "cv_roc_auc" and board.attrs["master_seed"] == 1
    # the sentence every output uses names the method, its mean +- sd and the deployed seed's own figure
    text = selection_text(board)
    assert text.startswith("selected: B (best mean cv_roc_auc over seeds [0, 1, 2] = 0.850 ± 0.010 over 3 seeds")
    assert "deployed model: B.seed1" in text and f"roc_auc {b.loc['B.seed1', 'test_roc_auc_seeds_mean']:.3f}" in text
    assert "(seed 1: " in text and "accuracy@argmax" in text
    summary = selected_summary(board)
    assert summary["method"] == "B" and summary["row"] == "B.seed1" and summary["deployed_seed"] == 1
    assert summary["pooled_over_seeds"]["test_roc_auc"]["mean"] == pytest.approx(
        b.loc[["B.seed0", "B.seed1", "B.seed2"], "test_roc_auc"].mean())
    # read back from CSV, the same row is selected
    assert selected_method(pd.read_csv(pd.io.common.StringIO(board.to_csv(index=False)))) == "B.seed1"


def test_a_method_flagged_or_missing_on_one_seed_only_is_never_selected():
    cv = {"A.seed0": 0.95, "A.seed1": 0.95, "A.seed2": 0.95, "B.seed0": 0.80, "B.seed1": 0.80, "B.seed2": 0.80}
    pred, evs, sel = _seeded(cv, SEPS)
    statuses = dict.fromkeys(cv, "ok") | {"A.seed2": "near-constant probabilities"}
    board = build_leaderboard(evs, selection=sel, statuses=statuses, seeds=[0, 1, 2], master_seed=0)
    assert board.attrs["selected"] == "B.seed0"
    b = board.set_index("method")
    assert (b.loc[["A.seed0", "A.seed1", "A.seed2"], "status"] == "seed 2 flagged: near-constant probabilities").all()
    assert b.loc["A.seed0", "seed_status"] == "ok" and b.loc["A.seed2", "seed_status"] != "ok"
    assert board["method"].tolist()[-3:] == ["A.seed0", "A.seed1", "A.seed2"]  # flagged: visible, never first
    # a seed with no result at all (failed, skipped) also keeps the method from being selected
    evs.pop("B.seed2")
    board = build_leaderboard(evs, selection=sel, statuses=dict.fromkeys(cv, "ok"), seeds=[0, 1, 2], master_seed=0)
    assert board.attrs["selected"] == "A.seed0"
    assert "seed 2: no result" in board.set_index("method").loc["B.seed0", "status"]
    # every method flagged: nothing selected
    board = build_leaderboard(evs, selection=sel, statuses=statuses, seeds=[0, 1, 2], master_seed=0)
    assert board.attrs["selected"] is None and "no method is ok" in selection_text(board)


def test_seed_labels_round_trip_and_only_a_fully_seeded_table_is_pooled():
    from breastclip.evaluation.leaderboard import (
        master_seed_of,
        seed_label,
        seeds_of_labels,
        split_seed_label,
    )

    assert split_seed_label(seed_label("svm@tiny.seed", 12)) == ("svm@tiny.seed", 12)
    assert split_seed_label("svm") == ("svm", None)
    assert seeds_of_labels(["a.seed0", "b.seed0", "a.seed2", "b.seed2"]) == [0, 2]
    assert seeds_of_labels(["a.seed0", "b"]) == [] and seeds_of_labels(["a.seed0", "b.seed0"]) == []
    assert master_seed_of([3, 1, 2], 2) == 2 and master_seed_of([3, 1, 2], 0) == 3 and master_seed_of([], 0) is None
