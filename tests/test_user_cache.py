"""One cache root: every cached thing derives its folder from breastclip.user_cache.cache_root()."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from breastclip.cli import app
from breastclip.config import ConfigError, load_config
from breastclip.data.synthetic import make_synthetic
from breastclip.user_cache import (
    cache_root,
    datasets_dir,
    embeddings_dir,
    leak_fingerprints_file,
    medmnist_dir,
    synthetic_dir,
)

METHODS = [{"name": "lp", "head": "linear_probe"}]


def test_cache_root_env_var_is_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "X"))
    assert cache_root() == tmp_path / "X"
    assert embeddings_dir() == tmp_path / "X" / "embeddings"
    assert leak_fingerprints_file() == tmp_path / "X" / "leak_fingerprints.json"
    assert datasets_dir() == tmp_path / "X" / "datasets"
    assert medmnist_dir() == tmp_path / "X" / "medmnist"
    assert synthetic_dir() == tmp_path / "X" / "synthetic"
    assert cache_root(tmp_path / "given") == tmp_path / "given"  # an explicit root wins
    monkeypatch.delenv("BREASTCLIP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "breastclip"


def test_every_user_derives_from_the_root(tmp_path, monkeypatch):
    from breastclip.data import download
    from breastclip.data.sources import medmnist
    from breastclip.pipeline import synthetic_overrides
    from breastclip.pipeline.embed_step import cache_dir_for

    root = tmp_path / "root"
    monkeypatch.setenv("BREASTCLIP_CACHE", str(root))
    monkeypatch.delenv("BREASTCLIP_CACHE_DIR", raising=False)
    assert not hasattr(download, "default_cache_dir") and not hasattr(medmnist, "default_cache_dir")
    assert f"data.source={root / 'synthetic'}" in synthetic_overrides()
    cfg = load_config(raw={"backbones": ["tiny-test"], "methods": METHODS, "data": {"source": str(tmp_path)}})
    assert cache_dir_for(cfg) == root  # the pipeline passes the ROOT, like `breastclip embed`
    # a MedMNIST file read with no cache argument exports its PNGs under the root's medmnist/
    rng = np.random.default_rng(0)
    arrays = {f"{s}_{k}": (rng.integers(0, 255, (4, 28, 28), dtype=np.uint8) if k == "images"
                           else np.array([[0], [1], [0], [1]])) for s in ("train", "val", "test")
              for k in ("images", "labels")}
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    m = medmnist.read_medmnist(tmp_path / "breastmnist.npz", download=False)
    assert m.root.parent == root / "medmnist"


def test_embed_and_run_share_one_embedding_cache(tmp_path, monkeypatch):
    """BREASTCLIP_CACHE=X: `breastclip embed` and the pipeline both use X/embeddings (was X/embeddings/embeddings)."""
    from breastclip.pipeline.embed_step import embed_all

    root = tmp_path / "X"
    monkeypatch.setenv("BREASTCLIP_CACHE", str(root))
    manifest = make_synthetic(tmp_path / "data", n_patients=4, images_per_patient=2, size=32)
    csv = tmp_path / "m.csv"
    manifest.to_csv(csv)
    r = CliRunner().invoke(app, ["embed", str(csv), "--backbone", "tiny-test", "--num-workers", "0",
                                 "--out", str(tmp_path / "e.npz"), "--no-progress"])
    assert r.exit_code == 0, r.output
    first = sorted(p.name for p in (root / "embeddings").iterdir())
    assert len(first) == 1
    cfg = load_config(raw={"backbones": ["tiny-test"], "methods": METHODS, "data": {"source": str(tmp_path / "data")},
                           "embed": {"options": {"num_workers": 0}}})
    sets = embed_all(cfg, manifest, progress=False)
    assert sets["tiny-test"].n_computed == 0 and sets["tiny-test"].n_cached == len(manifest)
    assert not (root / "embeddings" / "embeddings").exists()
    assert sorted(p.name for p in (root / "embeddings").iterdir()) == first


def test_split_options_fractions_seed_keep_official_are_honoured(tmp_path):
    raw = {"backbones": ["tiny-test"], "methods": METHODS, "data": {"source": str(tmp_path)},
           "split": {"options": {"fractions": [0.5, 0.25, 0.25], "seed": 7, "keep_official": False}}}
    cfg = load_config(raw=raw)
    assert tuple(cfg.split.fractions) == (0.5, 0.25, 0.25)
    assert cfg.split.seed == 7 and cfg.split_seed == 7 and cfg.split.keep_official is False
    assert "fractions" not in cfg.split.options
    same = load_config(raw=raw, overrides=["split.seed=7"])
    assert same.split.seed == 7
    with pytest.raises(ConfigError, match="split.seed"):
        load_config(raw=raw, overrides=["split.seed=3"])


def test_split_options_reach_the_splitter(tmp_path):
    from breastclip.pipeline.data_step import split_and_audit

    manifest = make_synthetic(tmp_path / "data", n_patients=20, images_per_patient=1, size=32)
    base = {"backbones": ["tiny-test"], "methods": METHODS, "data": {"source": str(tmp_path / "data")},
            "embed": {"cache_dir": str(tmp_path / "cache")}}
    cfg = load_config(raw={**base, "split": {"options": {"fractions": [0.5, 0.0, 0.5], "seed": 3}}})
    out, report = split_and_audit(manifest, cfg)
    counts = out.df["split"].value_counts().to_dict()
    assert counts.get("val", 0) == 0 and counts["train"] == counts["test"] == 10
    assert (tmp_path / "cache" / "leak_fingerprints.json").is_file()  # under the configured root, not its parent
