"""The results folder as a contract: the atomic claim (two runs given one folder never share it), resume after a
killed run, no stub left by a run that failed before doing any work, and reads that name the damaged file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from breastclip.config import ConfigError, load_config
from breastclip.pipeline import run_experiment
from breastclip.pipeline.run_folder import ResultsFolderError, RunFolder, claim_output

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["BREASTCLIP_CACHE"] = str(tmp_path / "user_cache")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["COLUMNS"] = "500"  # rich wraps console lines at 80 columns without a terminal; keep paths whole
    return env


def test_a_held_folder_is_never_shared(tiny_raw):
    cfg = load_config(raw=tiny_raw())
    first = claim_output(cfg)
    try:
        assert first.message == f"writing results to {first.path}" and not first.resume
        RunFolder(first.path).write_state(cfg.identity(), complete=False)  # a run in progress looks resumable...
        second = claim_output(cfg)  # ...but its lock says it is running: never resume into it
        try:
            assert second.path != first.path and second.path.name.startswith(first.path.name + "-")
            assert "in use by another run" in second.message and str(second.path) in second.message
            assert not second.resume
        finally:
            second.release()
        with pytest.raises(ResultsFolderError, match="in use by another run"):
            claim_output(load_config(raw=tiny_raw(), overrides=["experiment.on_existing=refuse"]))
    finally:
        first.release()
    again = claim_output(cfg)  # released: the unfinished run of the same config is resumed in place
    try:
        assert again.path == first.path and again.resume
    finally:
        again.release()


def test_a_killed_run_leaves_a_resumable_folder(tiny_raw, tmp_path):
    cfg = load_config(raw=tiny_raw())
    out = Path(cfg.experiment.output)
    holder = textwrap.dedent(f"""
        import sys, time
        from breastclip.config import load_config
        from breastclip.pipeline.run_folder import RunFolder, claim_output
        cfg = load_config(raw={tiny_raw()!r})
        claim = claim_output(cfg)
        RunFolder(claim.path).write_state(cfg.identity(), complete=False)
        print(claim.path, flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=_env(tmp_path))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == str(out)
        busy = claim_output(cfg)
        busy.release()
        assert busy.path != out  # held by a live process
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    resumed = claim_output(cfg)  # the kernel dropped the dead run's lock
    try:
        assert resumed.path == out and resumed.resume
    finally:
        resumed.release()


def test_a_run_that_fails_before_any_work_leaves_no_stub(tiny_raw, tmp_path):
    raw = tiny_raw(data={"source": str(tmp_path / "nowhere"), "format": "folders"})
    cfg = load_config(raw=raw)
    out = Path(cfg.experiment.output)
    with pytest.raises(ConfigError, match="does not exist"):
        run_experiment(cfg, progress=False)
    assert not out.exists()  # the next run gets this name, not a timestamped sibling
    # a folder the user made stays, and so do the user's files in it; only the run's own setup files go
    out.mkdir(parents=True)
    with pytest.raises(ConfigError):
        run_experiment(cfg, progress=False)
    assert out.is_dir() and list(out.iterdir()) == []
    (out / "mine.txt").write_text("a user's file")
    with pytest.raises(ConfigError):
        run_experiment(load_config(raw=raw, overrides=["experiment.on_existing=new"]), progress=False)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # the sibling it tried is gone as well


def test_reads_name_the_damaged_file(tmp_path):
    folder = RunFolder(tmp_path / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / RunFolder.MANIFEST_META).write_text("{not json")
    with pytest.raises(ResultsFolderError, match="manifest.json cannot be read as JSON"):
        folder.read_classes()
    with pytest.raises(ResultsFolderError, match="leaderboard.csv is missing"):
        folder.read_leaderboard()
    (tmp_path / "run" / RunFolder.CONFIG).write_text("backbones = [")
    with pytest.raises(ResultsFolderError, match="config.resolved.toml cannot be read"):
        folder.read_config()


CONFIG = """\
backbones = ["tiny-test"]
[experiment]
name = "race"
[data]
source = "{source}"
format = "synthetic"
[embed]
cache_dir = "{cache}"
[[methods]]
name = "lp"
head = "linear_probe"
params = {{ Cs = [1.0], refine = 0 }}
[evaluation]
n_bootstrap = 10
[gate]
ood = false
[report]
enabled = false
"""


@pytest.mark.slow
def test_two_concurrent_cli_runs_with_one_output_both_survive(synth_root, embed_cache, tmp_path):
    cfg = tmp_path / "race.toml"
    cfg.write_text(CONFIG.format(source=synth_root, cache=embed_cache))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "breastclip", "run", str(cfg), "-o", str(out), "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                              env=_env(tmp_path)) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    folders = sorted(p for p in tmp_path.iterdir() if p.name.startswith("out"))
    assert len(folders) == 2 and folders[0] == out and folders[1].name.startswith("out-")
    for f in folders:  # each run finished in its own folder, nothing overwritten
        state = json.loads((f / RunFolder.STATE).read_text())
        assert state["complete"] is True
        assert (f / RunFolder.LEADERBOARD).is_file() and (f / RunFolder.PREDICTIONS).is_file()
    said = " ".join(" ".join(outputs).split())
    for f in folders:  # the messages say where each run went
        assert f"results: {f}" in said
    assert "writing results to" in said
    assert any(w in said for w in ("in use by another run", "holds a finished run", "holds an unfinished run"))


@pytest.mark.slow
def test_cli_run_beside_a_running_run_goes_elsewhere_and_says_where(synth_root, embed_cache, tmp_path):
    cfg_file = tmp_path / "race.toml"
    cfg_file.write_text(CONFIG.format(source=synth_root, cache=embed_cache))
    out = tmp_path / "out"
    cfg = load_config(cfg_file, overrides=[f"experiment.output={out}"])
    held = claim_output(cfg)  # a run of the same config in progress (its lock held, its state unfinished)
    try:
        folder = RunFolder(held.path)
        folder.write_state(cfg.identity(), complete=False, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
        before = sorted(p.name for p in out.iterdir())
        res = subprocess.run([sys.executable, "-m", "breastclip", "run", str(cfg_file), "-o", str(out), "--quiet"],
                             capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        assert sorted(p.name for p in out.iterdir()) == before  # the running run's folder was not touched
        (other,) = [p for p in tmp_path.iterdir() if p.name.startswith("out-")]
        text = " ".join(res.stdout.split())
        assert f"{out} is in use by another run" in text and f"writing to {other}" in text
        assert json.loads((other / RunFolder.STATE).read_text())["complete"] is True
    finally:
        held.release()


@pytest.mark.slow
def test_evaluate_reads_a_results_folder(tmp_path, tiny_raw):
    from typer.testing import CliRunner

    from breastclip.cli import app

    res = run_experiment(load_config(raw=tiny_raw(methods=[
        {"name": "lp", "head": "linear_probe", "params": {"Cs": [1.0], "refine": 0}}])), progress=False)
    out = tmp_path / "ev.json"
    r = CliRunner().invoke(app, ["evaluate", str(res.out_dir), "-o", str(out), "--n-boot", "0"])
    assert r.exit_code == 0, r.output
    run_metrics = json.loads((res.out_dir / RunFolder.METRICS).read_text())["methods"]["lp"]["headline"]
    assert json.loads(out.read_text())["headline"]["roc_auc"]["estimate"] == run_metrics["roc_auc"]["estimate"]
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path), "-o", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "predictions.csv is missing" in r.output
