"""benchmarks/cv_views_breastmnist.py: it never holds a test row, and its relative SVM gamma is the head's own
'scale' gamma times the grid's factor (so one grid means the same for every view's width)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from breastclip.config import load_config
from breastclip.heads.svm import RBFSVMHead

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "cv_views_breastmnist.py"
_spec = importlib.util.spec_from_file_location("bench_cv_views_breastmnist", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_cv_views_breastmnist"] = bench
_spec.loader.exec_module(bench)


@pytest.mark.realdata
def test_selection_manifest_holds_train_and_val_only(shared_data):
    npz = shared_data / "breastmnist" / "original" / "breastmnist.npz"
    cfg = load_config(bench.CONFIG, offline=True, overrides=[f"data.source={npz}"])
    man = bench.selection_manifest(cfg)
    with np.load(npz) as d:
        n_train, n_val = len(d["train_labels"]), len(d["val_labels"])
    assert set(man.df["split"]) == {"train", "val"}
    assert (man.df["split"] == "train").sum() == n_train and (man.df["split"] == "val").sum() == n_val
    assert not man.df["id"].astype(str).str.contains(":test/").any()
    assert man.df["id"].astype(str).str.contains(":train/|:val/").all()


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0])
def test_gamma_scale_is_the_heads_scale_gamma_times_the_factor(factor):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 40)) * rng.uniform(0.1, 5.0, size=40)  # features of very different spread
    y = (X[:, 0] + rng.normal(size=60) > 0).astype(int)
    params = bench._svm_params({"C": 3.0, "gamma_scale": factor}, X.shape[1])
    assert "gamma_scale" not in params and params["C"] == 3.0
    scale_gamma = RBFSVMHead(C=3.0, gamma="scale").fit(X, y).gamma_
    got = RBFSVMHead(**params).fit(X, y).gamma_
    assert got == pytest.approx(factor * scale_gamma, rel=1e-9)
