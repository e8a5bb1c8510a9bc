"""CLI of `run`, `predict` and `demo`: flags reach the library, errors are one clear line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from breastclip.cli import app

runner = CliRunner()


def test_help_lists_the_front_door_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("run", "predict", "demo", "data"):
        assert cmd in res.output
    res = runner.invoke(app, ["run", "--help"])
    for flag in ("--set", "--offline", "--synthetic", "--subset", "--methods", "--mlflow"):
        assert flag in res.output


def test_run_reports_config_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default results folder is ./results/<name>: never the checkout
    bad = tmp_path / "bad.toml"
    bad.write_text('backbones = ["tiny-test"]\n[evaluation]\nn_bootstraps = 10\n')
    res = runner.invoke(app, ["run", str(bad)])
    assert res.exit_code == 2
    assert "evaluation.n_bootstraps" in res.output and "n_bootstrap" in res.output
    res = runner.invoke(app, ["run", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "does not exist" in res.output
    good = tmp_path / "good.toml"
    good.write_text('backbones = ["tiny-test"]\n[data]\nsource = "x"\n[[methods]]\nname = "lp"\nhead = "linear_probe"\n')
    res = runner.invoke(app, ["run", str(good), "--set", "methods.lp.params.C=3"])
    assert res.exit_code == 2 and "unknown hyperparameter" in res.output and "Cs" in res.output
    res = runner.invoke(app, ["run", str(good), "--set", "data.format=nope"])
    assert res.exit_code == 2
    assert not (tmp_path / "results").exists()  # failed before any work: no stub folder displaces the next run


@pytest.mark.slow
def test_run_tiny_synthetic_then_predict(tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "user_cache"))  # --synthetic generates the set there
    cfg = tmp_path / "exp.toml"
    cfg.write_text(
        'backbones = ["tiny-test"]\n[experiment]\nname = "cli"\n[embed]\ncache_dir = "cache"\n'
        '[[methods]]\nname = "lp"\nhead = "linear_probe"\nparams = { Cs = [1.0], refine = 0 }\n'
        '[[methods]]\nname = "zs"\nhead = "zeroshot"\nprompts = "cbis_ddsm"\n'
        '[evaluation]\nn_bootstrap = 10\n[report]\nenabled = false\n')
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(cfg), "--synthetic", "-o", str(out), "--quiet", "--methods", "lp,zs"])
    assert res.exit_code == 0, res.output
    assert "Leaderboard" in res.output and "For research use only" in res.output
    assert json.loads((out / "run_state.json").read_text())["complete"]
    manifest = pd.read_csv(out / "manifest.csv")
    root = json.loads((out / "manifest.json").read_text())["root"]
    img = f"{root}/{manifest[manifest['split'] == 'test']['image'].iloc[0]}"
    res = runner.invoke(app, ["predict", img, "--run", str(out), "--method", "zs", "-o", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "p.csv").iloc[0]
    assert row["method"] == "zs" and row["decision"] in ("benign", "malignant", "rejected by the medical-image gate")
    assert {"ood_score", "ood_flag", "medical_score", "p_benign", "p_malignant", "threshold"} <= set(row.index)
    res = runner.invoke(app, ["predict", img, "--run", str(out), "--method", "lp", "--gradcam", "--no-gate",
                              "-o", str(tmp_path / "g.csv")])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "g.csv").iloc[0]
    assert row["gate"] == "overridden (--no-gate)" and row["decision"] in ("benign", "malignant")  # checks ran, none applied
    assert (tmp_path / "g_gradcam").is_dir() and pd.notna(row["gradcam"]) and Path(row["gradcam"]).is_file()
