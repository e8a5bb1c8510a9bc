"""Fixtures for the pipeline tests: a synthetic data set and an embedding cache shared by the session, and a
builder for tiny experiment configs (tiny-test backbone, few epochs, few bootstrap resamples)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    from breastclip.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, n_patients=24, images_per_patient=2, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def embed_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embed_cache")


@pytest.fixture
def tiny_raw(synth_root, embed_cache, tmp_path):
    """A raw config dict: synthetic data, tiny-test backbone, three quick methods, no report."""
    base = {
        "backbones": ["tiny-test"],
        "experiment": {"name": "tiny", "seed": 0, "output": str(tmp_path / "results" / "tiny")},
        "data": {"source": str(synth_root), "format": "synthetic"},
        "embed": {"cache_dir": str(embed_cache)},
        "methods": [
            {"name": "linear_probe", "head": "linear_probe", "params": {"Cs": [0.1, 1.0, 10.0], "refine": 0}},
            {"name": "zeroshot", "head": "zeroshot", "prompts": "cbis_ddsm"},
            {"name": "mlp", "head": "mlp", "params": {"epochs": 2}},
        ],
        "evaluation": {"n_bootstrap": 20},
        "report": {"enabled": False},
    }

    def make(**sections):
        raw = copy.deepcopy(base)
        for k, v in sections.items():
            if isinstance(v, dict) and isinstance(raw.get(k), dict):
                raw[k].update(v)
            else:
                raw[k] = v
        return raw

    return make
