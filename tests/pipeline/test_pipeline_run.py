"""`breastclip run` end to end on the synthetic set with the tiny-test backbone: the results folder, determinism
(same config twice: identical metrics, embeddings from the cache), resume after an interruption."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from rich.console import Console

from breastclip import RESEARCH_ONLY
from breastclip.config import load_config
from breastclip.pipeline import run_experiment
from breastclip.pipeline.run_folder import RunFolder

QUIET = Console(quiet=True)


def _run(raw, **kw):
    return run_experiment(load_config(raw=raw, **kw), progress=False, console=QUIET)


def _metrics(folder):
    m = json.loads((folder / "metrics.json").read_text())["methods"]
    return {k: {name: v["estimate"] for name, v in ev["headline"].items()} for k, ev in m.items()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synth_root, embed_cache):
    """One finished tiny run shared by the layout tests (and by the predict tests' fast cases)."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    raw = {
        "backbones": ["tiny-test"],
        "experiment": {"name": "tiny", "seed": 0, "output": str(out)},
        "data": {"source": str(synth_root), "format": "synthetic"},
        "embed": {"cache_dir": str(embed_cache)},
        "methods": [{"name": "linear_probe", "head": "linear_probe", "params": {"Cs": [0.1, 1.0, 10.0], "refine": 0}},
                    {"name": "zeroshot", "head": "zeroshot", "prompts": "cbis_ddsm"},
                    {"name": "mlp", "head": "mlp", "params": {"epochs": 2}}],
        "evaluation": {"n_bootstrap": 20},
        "report": {"enabled": False},
    }
    return raw, _run(raw)


@pytest.mark.slow
def test_results_folder_layout(finished):
    raw, res = finished
    out = res.out_dir
    for name in ("config.resolved.toml", "environment.json", "manifest.csv", "manifest.json", "leak_audit.json",
                 "embeddings.json", "predictions.csv", "leaderboard.csv", "leaderboard.md", "metrics.json",
                 "run.log", "run_state.json", "gate/gate.json"):
        assert (out / name).is_file(), name
    for m in ("linear_probe", "zeroshot", "mlp"):
        d = out / "methods" / m
        assert (d / "model" / "head.json").is_file() or any((d / "model").iterdir())
        assert (d / "predictions.csv").is_file() and (d / "operating_point.json").is_file()
        assert json.loads((d / "method.json").read_text())["complete"] is True
    assert (out / "methods" / "mlp" / "history.json").is_file()
    pred = pd.read_csv(out / "predictions.csv")
    assert set(pred["method"]) == {"linear_probe", "zeroshot", "mlp"}
    assert set(pred["split"]) == {"train", "val", "test"}
    board = pd.read_csv(out / "leaderboard.csv")
    assert board["rank"].tolist() == [1, 2, 3]
    assert {"selected", "status", "selection_metric", "selection_value", "test_roc_auc", "test_roc_auc_ci_lo",
            "test_accuracy@argmax", "threshold@youden", "val_sensitivity@youden", "test_sensitivity@youden",
            "vs_selected_diff"} <= set(board.columns)
    assert set(board["selection_metric"]) == {"val_roc_auc"} and board["selected"].sum() <= 1
    ok = board[board["status"] == "ok"]
    assert ok["selection_value"].is_monotonic_decreasing and board["status"].ne("ok").is_monotonic_increasing
    if len(ok):
        assert bool(board.loc[0, "selected"]) and res.best == board.loc[0, "method"]
    assert board.loc[1:, "vs_selected_diff"].notna().all()  # every other method compared with the selected, paired
    cmp = pd.read_csv(out / "comparisons.csv")
    assert set(cmp["baseline"]) == {board.loc[0, "method"]}
    assert RESEARCH_ONLY in (out / "leaderboard.md").read_text()
    env = json.loads((out / "environment.json").read_text())
    assert env["seeds"] == {"experiment": 0, "split": 0} and env["packages"]["torch"]
    assert "commit" in env["git"]
    assert json.loads((out / "leak_audit.json").read_text())["ok"] is True
    assert RunFolder(out).is_complete()
    for _, r in board.iterrows():  # each frozen threshold is usable, or reported as not attainable (never inf)
        op = json.loads((out / "methods" / r["method"] / "operating_point.json").read_text())
        assert op["policy"] == "youden"
        if pd.isna(r["threshold@youden"]):
            assert op["threshold"] is None and "not attainable" in op["note"]
        else:
            assert 0 < op["threshold"] < 1 and op["threshold"] == pytest.approx(r["threshold@youden"])
    assert "reading" in (out / "run.log").read_text()


@pytest.mark.slow
def test_same_config_twice_identical_metrics_and_cache_reuse(finished):
    raw, first = finished
    second = _run(raw)
    assert second.out_dir != first.out_dir  # the finished run is never overwritten
    assert second.out_dir.name.startswith(first.out_dir.name + "-")
    assert _metrics(second.out_dir) == _metrics(first.out_dir)
    pd.testing.assert_frame_equal(pd.read_csv(second.out_dir / "predictions.csv"),
                                  pd.read_csv(first.out_dir / "predictions.csv"))
    emb = json.loads((second.out_dir / "embeddings.json").read_text())["backbones"]["tiny-test"]
    assert emb["n_computed"] == 0 and emb["n_cached"] == 48  # every embedding came from the cache


@pytest.mark.slow
def test_interrupted_run_resumes_in_place(finished, tmp_path):
    raw, first = finished
    raw = {**raw, "experiment": {**raw["experiment"], "output": str(tmp_path / "resume")}}
    done = _run(raw)
    out = done.out_dir
    # simulate a crash after linear_probe: later methods and the summary files are gone, the run unfinished
    state = json.loads((out / "run_state.json").read_text())
    state["complete"] = False
    (out / "run_state.json").write_text(json.dumps(state))
    (out / "methods" / "mlp" / "method.json").unlink()
    for name in ("leaderboard.csv", "metrics.json"):
        (out / name).unlink()
    before = (out / "methods" / "linear_probe" / "predictions.csv").stat().st_mtime_ns
    # the user fills in a study fact for the report before resuming: the finished methods are still reused
    raw = {**raw, "report": {**raw.get("report", {}), "study": {"registration": "not registered"}}}
    again = _run(raw)
    assert again.out_dir == out and again.resumed
    assert (out / "methods" / "linear_probe" / "predictions.csv").stat().st_mtime_ns == before  # reused
    assert "linear_probe: reusing" in (out / "run.log").read_text()
    assert _metrics(out) == _metrics(first.out_dir)


@pytest.mark.slow
def test_skips_methods_a_backbone_cannot_run(tiny_raw):
    raw = tiny_raw(backbones=["efficientnet-lite0"],
                   methods=[{"name": "zeroshot", "head": "zeroshot", "prompts": "cbis_ddsm"},
                            {"name": "lp", "head": "linear_probe", "params": {"Cs": [1.0], "refine": 0}}],
                   data={"subset": 0})
    res = _run(raw)
    assert "zeroshot" in res.skipped and "no text tower" in res.skipped["zeroshot"]
    assert res.leaderboard["method"].tolist() == ["lp"]
    assert json.loads((res.out_dir / "methods" / "zeroshot" / "method.json").read_text())["skipped"]


def test_leaky_split_is_refused(tiny_raw, tmp_path):
    import shutil

    from breastclip.pipeline.data_step import LeakError

    src = tmp_path / "leaky"
    for label in ("benign", "malignant"):
        (src / label).mkdir(parents=True)
    synth = tiny_raw()["data"]["source"]
    from pathlib import Path

    files = sorted(Path(synth).rglob("*.png"))
    for i, f in enumerate(files):
        shutil.copy(f, src / f.parent.name / f"{i:03d}.png")
        shutil.copy(f, src / f.parent.name / f"{i:03d}_copy.png")  # every image twice, no patient ids
    raw = tiny_raw(data={"source": str(src), "format": "folders"})
    with pytest.raises(LeakError, match="byte-identical") as err:
        _run(raw)
    assert "split.options.group_duplicates = true" in str(err.value)  # the message names the option that helps
    out = tmp_path / "results" / "tiny"
    audit = json.loads((out / "leak_audit.json").read_text())
    assert audit["ok"] is False
    assert audit["contact_sheet"] == "leak_audit_pairs.png" and (out / "leak_audit_pairs.png").is_file()


@pytest.mark.slow
def test_mlflow_tracking_logs_params_metrics_and_artifacts(finished, tmp_path, monkeypatch):
    import mlflow  # in the dev extra: a missing install fails here instead of skipping
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a plain folder store keeps the test self-contained
    raw, first = finished
    uri = (tmp_path / "mlruns").as_uri()
    raw = {**raw, "experiment": {**raw["experiment"], "output": str(tmp_path / "tracked")},
           "tracking": {"mlflow": True, "tracking_uri": uri, "experiment": "breastclip-test"}}
    res = _run(raw)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("breastclip-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["experiment.seed"] == "0"
    assert run.data.metrics["linear_probe.roc_auc"] == pytest.approx(
        json.loads((res.out_dir / "metrics.json").read_text())["methods"]["linear_probe"]["headline"]["roc_auc"]
        ["estimate"])
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"leaderboard.md", "config.resolved.toml", "metrics.json"} <= arts


def test_mlflow_missing_is_a_clear_error(tiny_raw, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mlflow(name, *a, **k):
        if name == "mlflow":
            raise ImportError("No module named 'mlflow'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(RuntimeError, match="breastclip\\[tracking\\]"):
        _run(tiny_raw(tracking={"mlflow": True}))


@pytest.mark.slow
def test_several_backbones_label_methods_and_predict_picks_one(tiny_raw, tmp_path):
    from breastclip.predict import predict_images

    raw = tiny_raw(backbones=["tiny-test", "efficientnet-lite0"],
                   methods=[{"name": "lp", "head": "linear_probe", "params": {"Cs": [1.0], "refine": 0}},
                            {"name": "zs", "head": "zeroshot", "prompts": "cbis_ddsm"}])
    res = _run(raw)
    assert set(res.leaderboard["method"]) == {"lp@tiny-test", "lp@efficientnet-lite0", "zs@tiny-test"}
    assert set(res.skipped) == {"zs@efficientnet-lite0"}
    assert set(json.loads((res.out_dir / "gate" / "gate.json").read_text())["backbones"]) == {
        "tiny-test", "efficientnet-lite0"}
    manifest = pd.read_csv(res.out_dir / "manifest.csv")
    root = json.loads((res.out_dir / "manifest.json").read_text())["root"]
    img = f"{root}/{manifest[manifest['split'] == 'test']['image'].iloc[0]}"
    table = predict_images([img], res.out_dir, method="lp@efficientnet-lite0", output=tmp_path / "p.csv").table
    assert table.loc[0, "method"] == "lp@efficientnet-lite0" and "medical_score" not in table  # no text tower
