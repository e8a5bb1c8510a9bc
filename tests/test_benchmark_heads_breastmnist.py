"""benchmarks/heads_breastmnist.py: medmnist's own Evaluator agrees with the leaderboard seed by seed, and the mean
of its per-seed figures equals the leaderboard's pooled mean over seeds (the figure the runner reports)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from breastclip.evaluation import evaluate_predictions
from breastclip.evaluation.leaderboard import leaderboard_for
from breastclip.evaluation.selection import SelectionScore
from breastclip.predictions import make_predictions

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "heads_breastmnist.py"
_spec = importlib.util.spec_from_file_location("bench_heads_breastmnist", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_heads_breastmnist"] = bench
_spec.loader.exec_module(bench)

CLASSES = ["malignant", "normal_or_benign"]  # BreastMNIST labels 0 and 1


@pytest.mark.realdata
def test_evaluator_agrees_per_seed_and_its_mean_is_the_pooled_mean(shared_data, tmp_path):
    npz = shared_data / "breastmnist" / "original" / "breastmnist.npz"
    with np.load(npz) as d:
        labels = {s: d[f"{s}_labels"].ravel() for s in ("val", "test")}
    parts = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        for split, y in labels.items():
            z = 1.5 * (y - 0.5) * 2 + rng.normal(0, 1, len(y))
            p1 = 1 / (1 + np.exp(-z))
            parts.append(make_predictions(ids=[f"{split}/{i}" for i in range(len(y))],
                                          y_true=np.array(CLASSES)[y], proba=np.c_[1 - p1, p1], classes=CLASSES,
                                          method=f"svm_rbf.seed{seed}", split=split))
    pred = pd.concat(parts, ignore_index=True)
    out = tmp_path / "run"
    for label, g in pred.groupby("method"):
        (out / "methods" / label).mkdir(parents=True)
        g.to_csv(out / "methods" / label / "predictions.csv", index=False)
    evs = {m: evaluate_predictions(pred, method=m, n_boot=0, seed=0) for m in pred["method"].unique()}
    sel = {m: SelectionScore("cv_roc_auc", 0.9, source="cv", sd=0.01) for m in evs}
    board = leaderboard_for(evs, pred, selection=sel, seeds=[0, 1, 2], master_seed=0)
    board = pd.read_csv(pd.io.common.StringIO(board.to_csv(index=False)))  # as the runner reads it
    checks = bench.medmnist_checks(npz, out, board, "svm_rbf")
    assert [c["seed"] for c in checks] == [0, 1, 2]
    for c in checks:
        assert c["medmnist_auc"] == pytest.approx(c["leaderboard_auc"], abs=1e-9)
        assert c["medmnist_acc"] == pytest.approx(c["leaderboard_acc"], abs=1e-9)
    row = board[board["selected"]].iloc[0]
    assert row["method"] == "svm_rbf.seed0"
    assert np.mean([c["medmnist_auc"] for c in checks]) == pytest.approx(row["test_roc_auc_seeds_mean"], abs=1e-9)
    assert np.mean([c["medmnist_acc"] for c in checks]) == pytest.approx(row["test_accuracy@argmax_seeds_mean"],
                                                                         abs=1e-9)
    assert len({round(c["medmnist_auc"], 6) for c in checks}) == 3  # three different seeds, not one copied
