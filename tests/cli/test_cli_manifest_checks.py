"""One validation path for every command: image paths leaving the data root are refused (or allowed and reported)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastclip.cli import app
from breastclip.config import load_config
from breastclip.data.manifest import ManifestError
from breastclip.pipeline.data_step import load_manifest

runner = CliRunner()


@pytest.fixture
def escaping_csv(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(data / f"{i}.png")
    (tmp_path / "outside").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "outside" / "secret.png")
    rows = [f"{i}.png,{'benign' if i % 2 else 'malignant'}" for i in range(6)]
    rows += ["../outside/secret.png,benign", "../../../../../../etc/passwd,malignant"]
    (data / "labels.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    return data / "labels.csv"


def _cfg(csv: Path, **data) -> object:
    return load_config(raw={"backbones": ["tiny-test"], "methods": [{"name": "lp", "head": "linear_probe"}],
                            "data": {"source": str(csv), **data}})


def test_run_refuses_paths_that_escape_the_data_root(escaping_csv):
    with pytest.raises(ManifestError, match=r"2 paths escape the data root.*allow_outside_root"):
        load_manifest(_cfg(escaping_csv))


def test_run_allows_them_only_when_asked_and_reports_them(escaping_csv):
    m = load_manifest(_cfg(escaping_csv, allow_outside_root=True))
    assert len(m) == 8
    assert any("2 image paths lie outside the data root" in n for n in m.notes)


def test_absolute_paths_outside_the_root_are_escapes_too(tmp_path):
    from breastclip.data.manifest import Manifest

    m = Manifest.from_records([{"image": "/etc/passwd", "label": "a"}, {"image": "x.png", "label": "b"}],
                              tmp_path, name="t", source="csv")
    with pytest.raises(ManifestError, match="1 paths escape"):
        m.validate(check_files=False)
    inside = Manifest.from_records([{"image": str(tmp_path / "x.png"), "label": "a"}], tmp_path, name="t",
                                   source="csv")
    inside.validate(check_files=False)


def test_cli_run_exits_2_naming_the_problem(escaping_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "cache"))
    toml = tmp_path / "exp.toml"
    toml.write_text('backbones = ["tiny-test"]\n[data]\nsource = "data/labels.csv"\n'
                    '[[methods]]\nname = "lp"\nhead = "linear_probe"\n')
    r = runner.invoke(app, ["run", str(toml), "-o", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 2, r.output
    assert "escape the data root" in r.output and "../outside/secret.png" in r.output
    assert not (tmp_path / "cache" / "embeddings").exists()  # refused before anything was read or embedded


def test_embed_and_inspect_use_the_same_check(escaping_csv, tmp_path):
    from breastclip.data.sources import read_source

    manifest_csv = tmp_path / "m.csv"
    read_source(escaping_csv).to_csv(manifest_csv)
    r = runner.invoke(app, ["embed", str(manifest_csv), "--backbone", "tiny-test", "--cache-dir",
                            str(tmp_path / "c"), "--no-progress"])
    assert r.exit_code == 2 and "escape the data root" in r.output
    r = runner.invoke(app, ["data", "inspect", str(escaping_csv), "--no-check-files"])
    assert r.exit_code == 1 and "escape the data root" in r.output
    r = runner.invoke(app, ["data", "inspect", str(escaping_csv), "--no-check-files", "--allow-outside-root"])
    assert r.exit_code == 0 and "outside the data root" in r.output


def test_split_hint_names_only_switches_not_given():
    from breastclip.cli.data import _leak_hint

    assert "--group-duplicates" in _leak_hint(False, True) and "--no-keep-official" in _leak_hint(False, True)
    assert "--group-duplicates" not in _leak_hint(True, True)
    assert _leak_hint(True, False) == "--allow-leaks writes it anyway"
