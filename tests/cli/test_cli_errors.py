"""Known errors end in one line naming the file, the problem and the fix, with exit code 2 (traceback: --debug).
A results folder is data: predict validates it and never uses a cache path named inside it."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastclip.cli import app
from breastclip.config import load_config
from breastclip.pipeline import run_experiment

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tiny_run")
    raw = {"backbones": ["tiny-test"], "experiment": {"name": "t", "seed": 0, "output": str(tmp / "run")},
           "data": {"source": str(tmp / "data"), "format": "synthetic"}, "embed": {"cache_dir": str(tmp / "cache")},
           "methods": [{"name": "linear_probe", "head": "linear_probe", "params": {"Cs": [1.0], "refine": 0}}],
           "evaluation": {"n_bootstrap": 10}, "report": {"enabled": False}}
    return run_experiment(load_config(raw=raw), progress=False).out_dir


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture
def image(tmp_path) -> Path:
    p = tmp_path / "new.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(p)
    return p


def _one_error_line(output: str) -> str:
    assert "Traceback" not in output
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def test_garbage_over_a_saved_head(run_copy, image, tmp_path):
    weights = run_copy / "methods" / "linear_probe" / "model" / "weights.safetensors"
    weights.write_bytes(b"this is not a safetensors file at all")
    args = ["predict", str(image), "--run", str(run_copy), "--method", "linear_probe", "--no-gate", "-o", str(tmp_path / "p.csv")]
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    line = _one_error_line(r.output)
    assert "weights.safetensors: not a valid safetensors file" in line and "breastclip run" in line
    debug = runner.invoke(app, ["--debug", *args])
    assert debug.exit_code != 0 and type(debug.exception).__name__ == "HeadFormatError"


def test_a_pickle_checkpoint_named_in_a_results_folder(run_copy, image, tmp_path):
    import collections

    import torch

    ckpt = tmp_path / "model.pt"
    torch.save({"weights": collections.Counter(a=1)}, ckpt)  # a pickled object, not tensors
    ckpt.with_suffix(".json").write_text('{"architecture": "ViT-B-32"}')
    name = f"local:{ckpt}"
    cfg = run_copy / "config.resolved.toml"
    cfg.write_text(cfg.read_text().replace('"tiny-test"', json.dumps(name)))
    mj = run_copy / "methods" / "linear_probe" / "method.json"
    mj.write_text(mj.read_text().replace('"tiny-test"', json.dumps(name)))
    r = runner.invoke(app, ["predict", str(image), "--run", str(run_copy), "--method", "linear_probe", "--no-gate", "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 2
    line = _one_error_line(r.output)
    assert str(ckpt) in line and "pickled objects are refused" in line
    assert "internet" not in line


def test_damaged_results_files_are_named(run_copy, image, tmp_path):
    (run_copy / "manifest.json").write_text('{"classes": "benign"}')
    r = runner.invoke(app, ["predict", str(image), "--run", str(run_copy), "--method", "linear_probe", "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 2 and "manifest.json has no list of classes" in _one_error_line(r.output)
    (run_copy / "methods" / "linear_probe" / "method.json").write_text("{not json")
    r = runner.invoke(app, ["predict", str(image), "--run", str(run_copy), "--method", "linear_probe", "-o", str(tmp_path / "q.csv")])
    assert r.exit_code == 2 and "method.json cannot be read as JSON" in _one_error_line(r.output)


def test_predict_uses_the_users_cache_never_one_named_in_the_results_folder(run_copy, image, tmp_path, monkeypatch):
    planted = tmp_path / "someone_elses_cache"
    cfg = run_copy / "config.resolved.toml"
    text = cfg.read_text()
    start = text.index("cache_dir = ")
    cfg.write_text(text[:start] + f"cache_dir = {json.dumps(str(planted))}" + text[text.index("\n", start):])
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "mine"))
    r = runner.invoke(app, ["predict", str(image), "--run", str(run_copy), "--method", "linear_probe", "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    assert not planted.exists()
    assert any((tmp_path / "mine" / "embeddings").iterdir())


@pytest.fixture
def read_only(monkeypatch):
    """Make folders read-only for real (chmod 0555) and, since root ignores permissions, refuse writes in them the
    way the kernel would (EACCES on creating an entry) when the tests run as root."""
    folders: list[Path] = []
    real_mkdir, real_open = os.mkdir, os.open

    def blocked(path) -> bool:
        p = Path(os.path.abspath(path))
        return any(p.parent == f or f in p.parents for f in folders)

    def mkdir(path, mode=0o777, *a, **k):
        if blocked(path) and not os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, mode, *a, **k)

    def open_(path, flags, mode=0o777, *a, **k):
        if flags & os.O_CREAT and blocked(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode, *a, **k)

    if os.geteuid() == 0:
        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "open", open_)

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        folders.append(Path(os.path.abspath(folder)))
        return folder

    yield make
    for f in folders:
        f.chmod(0o755)


def _toml(tmp_path: Path, cache: str = "") -> Path:
    toml = tmp_path / "exp.toml"
    toml.write_text('backbones = ["tiny-test"]\n[data]\nsource = "data"\nformat = "synthetic"\n'
                    + (f'[embed]\ncache_dir = "{cache}"\n' if cache else "")
                    + '[evaluation]\nn_bootstrap = 10\n[report]\nenabled = false\n'
                    '[[methods]]\nname = "lp"\nhead = "linear_probe"\n')
    return toml


def test_read_only_output_folder(tmp_path, read_only, monkeypatch):
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "cache"))
    ro = read_only(tmp_path / "ro_results")
    r = runner.invoke(app, ["run", str(_toml(tmp_path)), "-o", str(ro / "exp"), "--quiet"])
    assert r.exit_code == 2
    line = _one_error_line(r.output)
    assert "ro_results" in line and "Permission denied" in line and "--output" in line


def test_read_only_empty_cache_folder(tmp_path, read_only, monkeypatch):
    ro = read_only(tmp_path / "ro_cache")
    monkeypatch.setenv("BREASTCLIP_CACHE", str(ro))
    r = runner.invoke(app, ["run", str(_toml(tmp_path)), "-o", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 2
    line = _one_error_line(r.output)
    assert "ro_cache" in line and "Permission denied" in line and "BREASTCLIP_CACHE" in line


def test_flags_show_no_bool_type_in_help():
    for args in (["--help"], ["data", "inspect", "--help"], ["run", "--help"], ["predict", "--help"]):
        r = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert r.exit_code == 0 and "<bool>" not in r.output and "--help" in r.output


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    import breastclip.cli.errors as errors

    assert errors.describe(ZeroDivisionError("bug")) is None
    assert errors.describe(PermissionError(errno.EACCES, "Permission denied", "/x/y")).startswith("/x/y: Permission")


@pytest.mark.parametrize("command", [
    ["data", "inspect", "{missing}"],
    ["embed", "{bad_manifest}", "--backbone", "tiny-test"],
    ["zeroshot", "{empty}", "--backbone", "tiny-test", "--out", "{out}"],
    ["data", "synthetic", "{empty}", "--patients", "0"],
])
def test_data_embed_zeroshot_images_errors_are_one_line_and_debug_shows_the_traceback(command, tmp_path):
    """The commands that catch their own errors go through the same ``fail``: one line, exit 2; ``--debug``
    re-raises the original exception (before, they printed a line and exited 2 even under --debug)."""
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "manifest.csv"
    bad.write_text("path,label\n")  # no rows
    paths = {"missing": str(tmp_path / "no-such-folder"), "bad_manifest": str(bad), "empty": str(tmp_path / "empty"),
             "out": str(tmp_path / "zs.csv")}
    args = [a.format(**paths) for a in command]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    _one_error_line(r.output)
    debug = runner.invoke(app, ["--debug", *args])
    assert debug.exit_code != 0 and debug.exception is not None
    assert not isinstance(debug.exception, SystemExit), debug.output
