"""A seeded run's report: the selection is stated by method (mean ± sd over seeds) beside the deployed seed's own
figure, in every output; the detailed per-method sections are drawn for the master seed's rows only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from breastclip.evaluation import evaluate_predictions
from breastclip.evaluation.leaderboard import leaderboard_for, pooled_text
from breastclip.evaluation.selection import SelectionScore
from breastclip.predictions import make_predictions
from breastclip.report import write_report

SEPS = {"A.seed0": 0.6, "A.seed1": 4.0, "B.seed0": 1.2, "B.seed1": 1.3}  # A.seed1: the luckiest test figure
CV = {"A.seed0": 0.70, "A.seed1": 0.95, "B.seed0": 0.84, "B.seed1": 0.86}  # B: the better mean CV


def _pred(label: str, sep: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for split, n in (("val", 40), ("test", 60)):
        y = np.array(["benign", "malignant"] * (n // 2))
        z = (1.5 if split == "val" else sep) * ((y == "malignant") - 0.5) * 2 + rng.normal(0, 1, n)
        p = 1 / (1 + np.exp(-z))
        ids = [f"{split}{i}" for i in range(n)]
        parts.append(make_predictions(ids=ids, y_true=y, proba=np.c_[1 - p, p], classes=["benign", "malignant"],
                                      method=label, split=split, patient_id=ids))
    return pd.concat(parts, ignore_index=True)


def test_seeded_report_states_the_method_over_seeds_and_details_the_master_seed_only(tmp_path):
    pred = pd.concat([_pred(k, v, i) for i, (k, v) in enumerate(SEPS.items())], ignore_index=True)
    evs = {m: evaluate_predictions(pred, method=m, n_boot=20, seed=0) for m in SEPS}
    sel = {k: SelectionScore("cv_roc_auc", v, source="cv", sd=0.02, n_folds=3) for k, v in CV.items()}
    board = leaderboard_for(evs, pred, selection=sel, seeds=[0, 1], master_seed=1, operating_point="youden")
    assert board.attrs["selected"] == "B.seed1"
    paths = write_report(tmp_path / "r", predictions=pred, evaluations=evs, leaderboard=board, n_boot=20)
    html = paths.html.read_text()
    row = board.set_index("method").loc["B.seed1"]
    auc_over_seeds = pooled_text(row, "test_roc_auc")
    assert "(seed 1: " in auc_over_seeds
    for text in (html, paths.model_card.read_text()):
        assert auc_over_seeds in text and "B.seed1, the master seed" in text
    assert "B was selected by its mean" in html and "A.seed1 was selected" not in html
    # metrics.json: the selection by method with the pooled means beside the deployed seed's own figures
    metrics = json.loads(paths.metrics_json.read_text())
    assert metrics["selected_method"] == "B.seed1" and metrics["selection"]["method"] == "B"
    assert metrics["selection"]["deployed_seed"] == 1 and metrics["selection"]["seeds"] == [0, 1]
    pooled = metrics["selection"]["pooled_over_seeds"]["test_roc_auc"]
    assert pooled["mean"] == np.mean([evs[f"B.seed{s}"].headline["roc_auc"]["estimate"] for s in (0, 1)])
    assert pooled["deployed_seed"] == evs["B.seed1"].headline["roc_auc"]["estimate"]
    # detailed sections (confusion matrix, curves, calibration ...) for the master seed's rows only
    figures = {p.name for p in paths.figures}
    assert sum(n.endswith("_confusion_matrix.png") and "seed1" in n for n in figures) == 2
    assert not any("seed0" in n for n in figures), sorted(n for n in figures if "seed0" in n)
    assert sum(n.endswith("_confusion_matrix.png") for n in figures) == 2
    assert "Methods over seeds: mean ± sd" in html and "for those rows only" in html


def test_a_report_of_seeded_predictions_without_a_leaderboard_ranks_methods_over_seeds(tmp_path):
    """``breastclip report`` on a seeded run's predictions.csv: the board built there pools seeds too (master seed:
    the report's ``seed``), so no seed row is crowned over another seed of its method."""
    pred = pd.concat([_pred(k, v, i) for i, (k, v) in enumerate(SEPS.items())], ignore_index=True)
    paths = write_report(tmp_path / "r", predictions=pred, n_boot=20, seed=1)
    metrics = json.loads(paths.metrics_json.read_text())
    board = pd.DataFrame(metrics["leaderboard"])
    assert set(board["n_seeds"]) == {2} and metrics["selection"]["deployed_seed"] == 1
    assert metrics["selected_method"].endswith(".seed1") and board["method"].iloc[0].endswith(".seed1")
    assert "Methods over seeds: mean ± sd" in paths.html.read_text()
