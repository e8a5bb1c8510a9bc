"""`breastclip run` with evaluation.level = breast / exam: image predictions are kept, metrics are per unit."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from rich.console import Console

from breastclip.config import ConfigError, load_config
from breastclip.pipeline import run_experiment

QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def mammo_csv(tmp_path_factory):
    """The synthetic set as a CSV with the mammography columns (laterality from its side, one exam per patient)."""
    from breastclip.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("synthetic_levels")
    make_synthetic(root, n_patients=24, images_per_patient=2, size=64, seed=0)
    table = pd.read_csv(root / "labels.csv")
    table["laterality"] = table["side"]
    table["exam_id"] = table["patient_id"] + "-exam1"
    table.to_csv(root / "labels.csv", index=False)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("level", ["breast"])
def test_run_evaluates_per_breast_and_exam(tmp_path, mammo_csv, level):
    raw = {
        "backbones": ["tiny-test"],
        "experiment": {"name": "levels", "seed": 0, "output": str(tmp_path / "out")},
        "data": {"source": str(mammo_csv), "format": "csv"},
        "embed": {"cache_dir": str(tmp_path / "cache")},
        "methods": [{"name": "linear_probe", "head": "linear_probe", "params": {"Cs": [1.0], "refine": 0}}],
        "evaluation": {"n_bootstrap": 20, "level": level, "aggregate": "max"},
        "report": {"enabled": False},
    }
    res = run_experiment(load_config(raw=raw), progress=False, console=QUIET)
    out = res.out_dir
    pred = pd.read_csv(out / "predictions.csv")
    n_test_images = int((pred["split"] == "test").sum())
    ev = json.loads((out / "metrics.json").read_text())["methods"]["linear_probe"]
    # two views per patient, one breast per patient: units are half the images, patients as many as units
    assert ev["n"]["test"]["images"] * 2 == n_test_images
    assert ev["n"]["test"]["patients"] == ev["n"]["test"]["images"]
    assert ev["bootstrap"]["patient_ids"] is True  # one unit per patient here: resampling units = patients
    assert ev["per_class"] and ev["headline"]["roc_auc"]["estimate"] is not None
    assert f"evaluated per {level}" in (out / "run.log").read_text() + json.dumps(res.notes if hasattr(res, "notes")
                                                                                else [])


def test_bad_level_and_aggregate_are_config_errors():
    with pytest.raises(ConfigError, match="evaluation.level must be 'image', 'breast' or 'exam', got 'study'"):
        load_config(raw={"data": {"source": "x"}, "evaluation": {"level": "study"}})
    with pytest.raises(ConfigError, match="evaluation.aggregate must be"):
        load_config(raw={"data": {"source": "x"}, "evaluation": {"aggregate": "median"}})


def test_attention_mil_on_bags_needs_its_tile_width():
    raw = {"data": {"source": "x"}, "embed": {"options": {"tiles": {"size": 224, "pool": "bag"}}},
           "methods": [{"name": "mil", "head": "attention_mil"}]}
    with pytest.raises(ConfigError, match="set methods.mil.params.tile_dim to the backbone's embedding width"):
        load_config(raw=raw)
    raw["methods"][0]["params"] = {"tile_dim": 1280}
    assert load_config(raw=raw).active_methods()[0].params == {"tile_dim": 1280}
