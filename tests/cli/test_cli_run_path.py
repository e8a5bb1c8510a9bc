"""`breastclip run PATH` on a data set without a config: the default experiment, with its resolved config saved."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastclip.cli import app
from breastclip.data.synthetic import make_synthetic

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

runner = CliRunner()
FAST = ["--set", 'backbones=["tiny-test"]', "--set", "evaluation.n_bootstrap=10", "--set", "report.enabled=false",
        "--set", "methods.mlp.params.epochs=2", "--set", "methods.fc.params.epochs=2", "--quiet"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own_data")
    make_synthetic(root, n_patients=16, images_per_patient=2, size=32)
    return root


def _run(path: Path, out: Path, monkeypatch, tmp_path) -> dict:
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "cache"))
    r = runner.invoke(app, ["run", str(path), "-o", str(out), *FAST])
    assert r.exit_code == 0, r.output
    assert "config.resolved.toml" in r.output and "does not exist" not in r.output
    return tomllib.loads((out / "config.resolved.toml").read_text())


def test_run_on_a_class_folder_tree(synthetic, tmp_path, monkeypatch):
    tree = tmp_path / "my_lesions"
    for png in synthetic.rglob("*.png"):
        rel = png.relative_to(synthetic)
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, tree / rel)  # class folders only, no labels.csv
    cfg = _run(tree, tmp_path / "out", monkeypatch, tmp_path)
    assert cfg["experiment"]["name"] == "my_lesions" and cfg["data"]["format"] == ""
    assert [m["name"] for m in cfg["methods"]] == ["linear_probe", "mlp", "fc"]
    assert (tmp_path / "out" / "leaderboard.csv").is_file()


def test_run_on_a_csv_then_rerun_its_resolved_config(synthetic, tmp_path, monkeypatch):
    cfg = _run(synthetic / "labels.csv", tmp_path / "out", monkeypatch, tmp_path)
    assert cfg["data"]["source"].endswith("labels.csv") and cfg["experiment"]["name"] == "labels"
    again = runner.invoke(app, ["run", str(tmp_path / "out" / "config.resolved.toml"), "-o", str(tmp_path / "again"),
                                "--quiet"])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again" / "leaderboard.csv").is_file()


def test_a_missing_path_is_still_a_clear_error(tmp_path):
    r = runner.invoke(app, ["run", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output
