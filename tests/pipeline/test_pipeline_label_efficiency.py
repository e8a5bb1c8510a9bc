"""experiment.label_fractions / experiment.shots: stratified nested subsets of train, a curve per method."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from breastclip.config import ConfigError, load_config
from breastclip.pipeline import run_experiment
from breastclip.pipeline.label_efficiency import nested_subset


def test_subsets_are_stratified_and_nested():
    y = np.array(["a"] * 40 + ["b"] * 10)
    small, big = nested_subset(y, "fraction", 0.1, 0), nested_subset(y, "fraction", 0.5, 0)
    assert (y[small] == "a").sum() == 4 and (y[small] == "b").sum() == 1
    assert set(small) <= set(big)
    shots = nested_subset(y, "shots", 3, 1)
    assert (y[shots] == "a").sum() == 3 and (y[shots] == "b").sum() == 3
    assert set(nested_subset(y, "shots", 2, 1)) <= set(shots)
    assert not np.array_equal(nested_subset(y, "shots", 3, 2), shots)  # another seed, another draw


def test_label_efficiency_curve_per_method(tiny_raw):
    raw = tiny_raw(methods=[{"name": "simpleshot", "head": "simpleshot"},
                            {"name": "lp", "head": "linear_probe", "params": {"Cs": [0.1, 1.0], "refine": 0}}],
                   gate={"ood": False}, evaluation={"n_bootstrap": 0})
    raw["experiment"]["shots"] = [1, 4]
    raw["experiment"]["label_fractions"] = [1.0]
    out = run_experiment(load_config(raw=raw), progress=False, console=Console(quiet=True)).out_dir
    table = pd.read_csv(out / "label_efficiency.csv")
    assert set(table["method"]) == {"simpleshot", "lp"}
    assert len(table) == 6
    n_train_classes = pd.read_csv(out / "manifest.csv").query("split == 'train'")["label"].nunique()
    one = table[(table["budget"] == "shots") & (table["value"] == 1)]
    assert one["n_train"].eq(n_train_classes).all()
    full = table[table["budget"] == "fraction"].set_index("method")
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    # all of train with the same hyperparameters reproduces the main fit's test AUC
    assert full.loc["simpleshot", "roc_auc"] == pytest.approx(board.loc["simpleshot", "test_roc_auc"])
    assert (out / "figures" / "label_efficiency.png").is_file()


def test_bad_budgets_are_named(tiny_raw):
    raw = tiny_raw()
    raw["experiment"]["label_fractions"] = [0.0, 2.0]
    with pytest.raises(ConfigError, match="label_fractions"):
        load_config(raw=raw)
