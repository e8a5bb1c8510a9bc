"""CLI: `breastclip backbones` and `breastclip embed` (thin wrappers over the library)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from breastclip.cli import app

runner = CliRunner()


def test_backbones_lists_entries_and_offline_state():
    r = runner.invoke(app, ["backbones", "--json"])
    assert r.exit_code == 0, r.output
    rows = {d["name"]: d for d in map(json.loads, r.output.strip().splitlines())}
    assert rows["tiny-test"]["offline"] is True and rows["efficientnet-lite0"]["offline"] is True
    assert rows["efficientnet-lite0+minilm"]["text"] == "separate space"
    assert rows["clip-vit-b32"]["default"] is True
    table = runner.invoke(app, ["backbones"])
    assert table.exit_code == 0 and "research use only" in table.output.lower()


def test_embed_writes_npz_and_refuses_overwrite(manifest, tmp_path):
    csv = tmp_path / "m.csv"
    manifest.to_csv(csv)
    out = tmp_path / "emb.npz"
    args = ["embed", str(csv), "--backbone", "tiny-test", "--cache-dir", str(tmp_path / "c"), "--num-workers", "0",
            "--out", str(out), "--no-progress"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "12 of 14 images embedded" in r.output and "research use only" in r.output.lower()
    assert "broken.png" in r.output  # failures are listed (stderr is mixed into output here)
    with np.load(out, allow_pickle=False) as z:
        assert z["X"].shape == (12, 32) and len(z["ids"]) == 12
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in again.output
    r2 = runner.invoke(app, args + ["--overwrite"])
    assert r2.exit_code == 0 and "0 computed, 12 from cache" in r2.output


def test_embed_unknown_backbone_is_a_clear_error(manifest, tmp_path):
    csv = tmp_path / "m.csv"
    manifest.to_csv(csv)
    r = runner.invoke(app, ["embed", str(csv), "--backbone", "clip-vit-b23", "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 2 and "clip-vit-b32" in r.output
