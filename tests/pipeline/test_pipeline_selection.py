"""The run's one verdict: the method is selected on validation (never test) and every output names the same one;
when every method learned nothing, nothing is selected and every output says so.

The heads are real (fitted, saved, loaded by ``predict``); only the predictions table they hand to the evaluation is
replaced by one with known properties, so the test controls which method validation favours and which test favours.
"""

from __future__ import annotations

import json
import re

import docx
import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from breastclip.config import load_config
from breastclip.evaluation.leaderboard import NO_METHOD_LEARNED
from breastclip.pipeline import methods, run_experiment
from breastclip.predict import PredictError, predict_images

#: label -> split -> separation of the positive class's logit (larger: better ranking on that split)
FAVOURS_VAL_A_TEST_B = {"alpha_probe": {"val": 1.6, "test": 0.6}, "beta_probe": {"val": 0.9, "test": 2.5}}


@pytest.fixture(scope="module")
def synth_binary(tmp_path_factory):
    """Where the run generates its synthetic set (200 patients, one 32-pixel image each, binary)."""
    return tmp_path_factory.mktemp("synthetic_selection") / "set"


def _raw(root, cache, out, report: bool = True) -> dict:
    return {
        "backbones": ["tiny-test"],
        "experiment": {"name": "selection", "seed": 0, "output": str(out)},
        "data": {"source": str(root), "format": "synthetic",
                 "options": {"n_patients": 200, "images_per_patient": 1, "size": 32, "seed": 1}},
        "embed": {"cache_dir": str(cache)},
        "methods": [{"name": "alpha_probe", "head": "linear_probe", "params": {"Cs": [1.0], "refine": 0}},
                    {"name": "beta_probe", "head": "linear_probe", "params": {"Cs": [0.5], "refine": 0}}],
        "evaluation": {"n_bootstrap": 100, "operating_point": "youden"},
        "report": {"enabled": report},
        "gate": {"ood": False},
    }


def _crafted(separation: dict | None):
    """A fit_predict that keeps the real head but replaces its val/test probabilities: positive-class logit
    ``separation[label][split] * (y - 0.5) + N(0, 1)`` (or 0.5 everywhere when ``separation`` is None)."""
    real = methods.fit_predict

    def fit_predict(ctx, plan, data, emb, text):
        outcome = real(ctx, plan, data, emb, text)
        pred = outcome.predictions.copy()
        y = (pred["y_true"] == "malignant").to_numpy(float)
        rng = np.random.default_rng(len(plan.label))
        p = np.full(len(pred), 0.5)
        if separation is not None:
            for split, sep in separation[plan.label].items():
                rows = (pred["split"] == split).to_numpy()
                p[rows] = 1 / (1 + np.exp(-(sep * (y[rows] - 0.5) * 2 + rng.normal(0, 1, rows.sum()))))
        pred["p_malignant"], pred["p_benign"] = p, 1 - p
        pred["y_pred"] = np.where(p >= 0.5, "malignant", "benign")
        if separation is None:
            pred["y_pred"] = "benign"
        outcome.predictions = pred
        return outcome

    return fit_predict


def _run(raw, monkeypatch, separation):
    monkeypatch.setattr(methods, "fit_predict", _crafted(separation))
    console = Console(record=True, width=220)
    res = run_experiment(load_config(raw=raw), progress=False, console=console)
    return res, console.export_text()


def _docx_text(path) -> str:
    d = docx.Document(str(path))
    cells = [c.text for t in d.tables for r in t.rows for c in r.cells]
    return "\n".join([p.text for p in d.paragraphs] + cells)


@pytest.mark.slow
def test_validation_not_test_selects_and_every_output_agrees(synth_binary, tmp_path, monkeypatch):
    res, console = _run(_raw(synth_binary, tmp_path / "cache", tmp_path / "run"), monkeypatch, FAVOURS_VAL_A_TEST_B)
    out = res.out_dir
    board = pd.read_csv(out / "leaderboard.csv")
    by = board.set_index("method")
    # the premise: test favours beta, validation favours alpha, both learned something
    assert by.loc["beta_probe", "test_roc_auc"] > by.loc["alpha_probe", "test_roc_auc"]
    assert by.loc["alpha_probe", "selection_value"] > by.loc["beta_probe", "selection_value"]
    assert (board["status"] == "ok").all(), board[["method", "status"]]
    # leaderboard.csv: alpha selected, first, by its validation figure
    assert board["selected"].tolist() == [True, False] and board["method"].tolist() == ["alpha_probe", "beta_probe"]
    assert set(board["selection_metric"]) == {"val_roc_auc"} and res.best == "alpha_probe"
    # leaderboard.md and the console summary
    assert "selected: alpha_probe (best val_roc_auc" in (out / "leaderboard.md").read_text()
    assert "selected: alpha_probe (best val_roc_auc" in console
    assert re.search(r"operating point \('malignant' vs rest, youden, frozen on validation\): threshold 0\.\d+",
                     console)
    # metrics.json, report.html, report.docx, MODEL_CARD.md
    assert json.loads((out / "metrics.json").read_text())["selected_method"] == "alpha_probe"
    html = (out / "report.html").read_text()
    assert "alpha_probe was selected by its validation ROC AUC" in html
    assert re.search(r'Selected method \(validation ROC AUC\)</div><div class="v">alpha_probe: ', html)
    assert "Selected method: alpha_probe." in html  # the 2x2 section
    text = _docx_text(out / "report.docx")
    assert "alpha_probe was selected by its validation ROC AUC" in text
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: alpha_probe on ")
    assert re.search(r"\| Selected method \(validation ROC AUC; never the test split\) \| alpha_probe \|", card)
    # predict's default is the selected method, and its sidecar says so
    manifest = pd.read_csv(out / "manifest.csv")
    root = json.loads((out / "manifest.json").read_text())["root"]
    img = f"{root}/{manifest[manifest['split'] == 'test']['image'].iloc[0]}"
    pred = predict_images([img], out, output=tmp_path / "p.csv", gate=False)
    sidecar = json.loads((tmp_path / "p.json").read_text())
    assert pred.method == sidecar["method"] == "alpha_probe" and "val_roc_auc" in sidecar["method_chosen_by"]
    # the paired comparisons are against the selected method
    assert set(pd.read_csv(out / "comparisons.csv")["baseline"]) == {"alpha_probe"}


@pytest.mark.slow
def test_when_every_method_learned_nothing_nothing_is_selected(synth_binary, tmp_path, monkeypatch):
    res, console = _run(_raw(synth_binary, tmp_path / "cache", tmp_path / "run"), monkeypatch, None)
    out = res.out_dir
    board = pd.read_csv(out / "leaderboard.csv")
    assert not board["selected"].any() and res.best is None
    assert board["status"].str.contains("near-constant probabilities").all()
    assert board["status"].str.contains("predicts 'benign' for every validation image").all()
    assert NO_METHOD_LEARNED in (out / "leaderboard.md").read_text()
    assert NO_METHOD_LEARNED in console
    assert json.loads((out / "metrics.json").read_text())["selected_method"] is None
    for text in ((out / "report.html").read_text(), _docx_text(out / "report.docx"),
                 (out / "MODEL_CARD.md").read_text()):
        assert "no method learned this task" in text.lower()
        assert "was selected" not in text
    with pytest.raises(PredictError, match="no method learned this task"):
        predict_images([str(out / "manifest.csv")], out, output=tmp_path / "p.csv", gate=False)


#: seeds: alpha's seed 1 is the luckiest row on validation and on test; beta has the better mean over seeds
SEEDED = {"alpha_probe.seed0": {"val": 0.6, "test": 0.6}, "alpha_probe.seed1": {"val": 3.0, "test": 4.0},
          "beta_probe.seed0": {"val": 1.6, "test": 1.2}, "beta_probe.seed1": {"val": 1.5, "test": 1.2}}


@pytest.mark.slow
def test_seeds_select_the_method_by_its_mean_and_every_output_names_it_with_the_deployed_seed(
        synth_binary, tmp_path, monkeypatch):
    raw = _raw(synth_binary, tmp_path / "cache", tmp_path / "run")
    raw["experiment"].update(seeds=[0, 1], seed=1)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    raw["tracking"] = {"mlflow": True, "tracking_uri": uri, "experiment": "seeds"}
    res, console = _run(raw, monkeypatch, SEEDED)
    out = res.out_dir
    board = pd.read_csv(out / "leaderboard.csv")
    by = board.set_index("method")
    # the premise: one seed row of alpha beats every other row on validation and on test
    assert by["test_roc_auc"].idxmax() == by["selection_value"].idxmax() == "alpha_probe.seed1"
    assert by.loc["beta_probe.seed1", "selection_value_seeds_mean"] > by.loc["alpha_probe.seed1",
                                                                            "selection_value_seeds_mean"]
    # beta is selected by its mean over seeds; its master seed's row (experiment.seed = 1) is the selected row
    assert res.best == "beta_probe.seed1" and board.loc[board["selected"], "method"].tolist() == ["beta_probe.seed1"]
    assert board["method"].tolist() == ["beta_probe.seed1", "beta_probe.seed0", "alpha_probe.seed1",
                                        "alpha_probe.seed0"]
    row = by.loc["beta_probe.seed1"]
    for col in ("test_roc_auc", "test_accuracy@argmax"):
        assert row[f"{col}_seeds_mean"] == pytest.approx(by.loc[["beta_probe.seed0", "beta_probe.seed1"], col].mean())
    seeds = pd.read_csv(out / "seeds.csv")
    assert seeds["method"].tolist() == ["beta_probe", "alpha_probe"] and seeds["selected"].tolist() == [True, False]
    # every output names beta, its mean over seeds, and the deployed seed's own figure
    auc = f"{row['test_roc_auc_seeds_mean']:.3f} ± {row['test_roc_auc_seeds_sd']:.3f} over 2 seeds (seed 1: " \
          f"{row['test_roc_auc']:.3f})"
    sentence = "selected: beta_probe (best mean val_roc_auc over seeds [0, 1]"
    assert sentence in (out / "leaderboard.md").read_text() and sentence in console
    assert "deployed model: beta_probe.seed1" in console and auc in console
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selected_method"] == "beta_probe.seed1" and metrics["selection"]["method"] == "beta_probe"
    html, text, card = (out / "report.html").read_text(), _docx_text(out / "report.docx"), \
        (out / "MODEL_CARD.md").read_text()
    for doc in (html, text, card):
        assert auc in doc and "beta_probe.seed1, the master seed" in doc
        assert "alpha_probe.seed1 was selected" not in doc and "alpha_probe was selected" not in doc
    assert "beta_probe was selected by its mean validation ROC AUC over seeds" in html
    # predict's default is the deployed row, and its sidecar says how it was chosen
    manifest = pd.read_csv(out / "manifest.csv")
    root = json.loads((out / "manifest.json").read_text())["root"]
    img = f"{root}/{manifest[manifest['split'] == 'test']['image'].iloc[0]}"
    pred = predict_images([img], out, output=tmp_path / "p.csv", gate=False)
    sidecar = json.loads((tmp_path / "p.json").read_text())
    assert pred.method == sidecar["method"] == "beta_probe.seed1"
    assert "beta_probe by its mean val_roc_auc over 2 seeds" in sidecar["method_chosen_by"]
    # MLflow: the method over seeds and its pooled means
    import mlflow  # in the dev extra: a missing install fails here instead of skipping

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("seeds").experiment_id])
    assert run.data.tags["breastclip.selected_method_over_seeds"] == "beta_probe"
    assert run.data.metrics["selected.test_roc_auc.seeds_mean"] == pytest.approx(row["test_roc_auc_seeds_mean"])
