"""`predict` embeds new images with the run's pixel preprocessing (embed.options.breast_crop ...), not the plain one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from PIL import Image

from breastclip.backbones import embed_manifest
from breastclip.config import load_config
from breastclip.data.manifest import Manifest
from breastclip.predict import _embed


def test_predict_uses_the_runs_breast_crop(tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    img = np.zeros((300, 240), np.uint8)
    img[40:260, :110] = rng.integers(80, 220, (220, 110))  # a 'breast' at the left edge of a black frame
    img[10:30, 190:230] = 255  # a burned-in label
    Image.fromarray(img).save(tmp_path / "m.png")
    opts = {"breast_crop": True, "flip_to": "R", "pad_square": True}
    cfg = load_config(raw={"backbones": ["tiny-test"], "data": {"source": str(tmp_path)}, "embed": {"options": opts},
                           "methods": [{"name": "lp", "head": "linear_probe"}]})
    run = SimpleNamespace(config=cfg)
    table = pd.DataFrame({"status": ["ok"], "error": [""]})
    X, ok = _embed([tmp_path / "m.png"], run, "tiny-test", table)
    assert ok.tolist() == [True]
    m = Manifest.from_records([{"id": "a", "image": "m.png", "label": "x"}], tmp_path, name="t", source="t")
    cropped = embed_manifest(m, "tiny-test", cache_dir=tmp_path / "c2", progress=False, num_workers=0, **opts)
    plain = embed_manifest(m, "tiny-test", cache_dir=tmp_path / "c2", progress=False, num_workers=0)
    np.testing.assert_allclose(X, cropped.X, atol=1e-6)
    assert not np.allclose(X, plain.X, atol=1e-4)
