"""`breastclip run` with the tile view (embed.options.tiles) and the attention-MIL head, evaluated per breast, and
`predict` on the same run re-embedding new images as tiles."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from breastclip.config import load_config
from breastclip.data.synthetic_fullfield import make_synthetic_fullfield
from breastclip.pipeline import run_experiment
from breastclip.predict import predict_images

QUIET = Console(quiet=True)


@pytest.mark.slow
def test_run_with_tiles_and_attention_mil_then_predict(tmp_path):
    make_synthetic_fullfield(tmp_path / "data", n_patients=10, size=128, seed=0)
    tiles = {"size": 32, "overlap": 0.0, "max_tiles": 12, "min_tissue": 0.25, "pool": "bag"}
    raw = {
        "backbones": ["tiny-test"],
        "experiment": {"name": "tiles", "seed": 0, "output": str(tmp_path / "out")},
        "data": {"source": str(tmp_path / "data"), "format": "csv"},
        "embed": {"cache_dir": str(tmp_path / "cache"), "options": {"tiles": tiles}},
        "methods": [{"name": "mil", "head": "attention_mil", "params": {"tile_dim": 32, "epochs": 3}}],
        "evaluation": {"n_bootstrap": 10, "level": "breast", "aggregate": "max"},
        "report": {"enabled": False},
        "gate": {"ood": False},
    }
    res = run_experiment(load_config(raw=raw), progress=False, console=QUIET)
    out = res.out_dir
    emb = json.loads((out / "embeddings.json").read_text())
    assert json.dumps(emb).count("tiles") >= 1
    pred = pd.read_csv(out / "predictions.csv")
    ev = json.loads((out / "metrics.json").read_text())["methods"]["mil"]
    assert ev["n"]["test"]["images"] * 2 == int((pred["split"] == "test").sum())  # breasts = CC + MLO pairs
    manifest = pd.read_csv(out / "manifest.csv")
    row = manifest[manifest["split"] == "test"].iloc[0]
    image = tmp_path / "data" / row["image"]
    # A 3-epoch MIL head on 10 synthetic patients need not learn (the leaderboard may rightly select nothing):
    # name the method, as a user would, to check that predict re-embeds the image as the same tiles.
    again = predict_images([image], out, method="mil", output=tmp_path / "p.csv", gate=False)
    p_run = pred.loc[pred["id"] == row["id"], ["p_malignant", "p_normal"]].to_numpy(float)
    np.testing.assert_allclose(again.table[["p_malignant", "p_normal"]].to_numpy(float), p_run, atol=1e-6)
