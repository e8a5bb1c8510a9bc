"""Synthetic embeddings with a known answer: class means on random directions, plus noise, L2-normalised."""

from __future__ import annotations

import numpy as np
import pytest


def make_embeddings(n_per_class=(60, 40, 30), d=32, noise=0.6, seed=0, labels=("benign", "malignant", "normal")):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(n_per_class), d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    X, y = [], []
    for k, n in enumerate(n_per_class):
        pts = centres[k] + noise * rng.normal(size=(n, d)) / np.sqrt(d)
        X.append(pts)
        y += [labels[k]] * n
    X = np.vstack(X)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    perm = rng.permutation(len(X))
    return X[perm], np.asarray(y)[perm], centres


@pytest.fixture(scope="module")
def synthetic():
    """train / val / test splits of one synthetic problem and the true class directions (as 'text')."""
    X, y, centres = make_embeddings(n_per_class=(120, 80, 60), seed=0)
    n = len(X)
    a, b = int(0.6 * n), int(0.8 * n)
    return {"X": X[:a], "y": y[:a], "X_val": X[a:b], "y_val": y[a:b], "X_test": X[b:], "y_test": y[b:],
            "text": centres}
