"""Attention-MIL head on bags whose label rests on one tile: it learns, attends to that tile, ignores padding."""

from __future__ import annotations

import numpy as np
import pytest

from breastclip.heads import AttentionMILHead, LinearProbe, load_head


def _bags(n: int, n_tiles: int = 12, d: int = 16, seed: int = 0):
    """Unit-norm tiles around one background direction; positive bags hide one tile of a lesion direction
    among them, a variable number of slots is padding (zeros). Mean pooling dilutes the lesion by 1/n_real."""
    rng = np.random.default_rng(seed)
    bg, lesion = np.eye(d)[0], np.eye(d)[1]
    X = np.zeros((n, n_tiles, d))
    y = rng.integers(0, 2, n)
    where = np.full(n, -1)
    for i in range(n):
        n_real = int(rng.integers(6, n_tiles + 1))
        t = bg + 0.6 * rng.standard_normal((n_real, d))
        if y[i]:
            where[i] = int(rng.integers(n_real))
            t[where[i]] = lesion + 0.3 * rng.standard_normal(d)
        X[i, :n_real] = t / np.linalg.norm(t, axis=1, keepdims=True)
    return X.reshape(n, -1), np.where(y == 1, "malignant", "benign"), where


def _mean_of_real_tiles(X: np.ndarray) -> np.ndarray:
    bags = X.reshape(len(X), 12, 16)
    n_real = (np.abs(bags).sum(-1) > 0).sum(1, keepdims=True)
    return bags.sum(1) / n_real


@pytest.fixture(scope="module")
def fitted():
    X, y, _ = _bags(300)
    return AttentionMILHead(tile_dim=16, epochs=40, random_state=0).fit(X, y)


def test_learns_a_one_tile_signal_and_attends_to_it(fitted):
    Xt, yt, where = _bags(200, seed=1)
    acc = float(np.mean(fitted.predict(Xt) == yt))
    assert acc >= 0.85, acc
    a = fitted.attention(Xt)
    assert a.shape == (200, 12) and np.allclose(a.sum(axis=1), 1.0)
    pos = where >= 0
    assert np.mean(a[pos].argmax(axis=1) == where[pos]) >= 0.8  # the lesion tile gets the most attention
    # a linear model on mean-pooled tiles does worse: the single tile is diluted by the others
    X, y, _ = _bags(300)
    lin = LinearProbe(refine=0, random_state=0).fit(_mean_of_real_tiles(X), y)
    assert acc > float(np.mean(lin.predict(_mean_of_real_tiles(Xt)) == yt)) + 0.1


def test_padding_slots_do_not_change_predictions(fitted):
    Xt, _, _ = _bags(20, seed=2)
    bags = Xt.reshape(20, 12, 16)
    real = np.abs(bags).sum(-1) > 0
    shuffled = np.zeros_like(bags)
    for i in range(20):  # same tiles, padding moved to the front
        k = int(real[i].sum())
        shuffled[i, 12 - k:] = bags[i, :k]
    np.testing.assert_allclose(fitted.predict_proba(shuffled.reshape(20, -1)), fitted.predict_proba(Xt), atol=1e-10)
    assert np.all(fitted.attention(shuffled.reshape(20, -1))[:, :12 - int(real[0].sum())][0] == 0)


def test_save_load_round_trip_and_bad_tile_width(fitted, tmp_path):
    Xt, _, _ = _bags(10, seed=3)
    path = fitted.save(tmp_path / "mil")
    assert sorted(p.name for p in path.iterdir()) == ["head.json", "weights.safetensors"]
    back = load_head(path)
    np.testing.assert_array_equal(back.predict_proba(Xt), fitted.predict_proba(Xt))
    np.testing.assert_array_equal(back.attention(Xt), fitted.attention(Xt))
    with pytest.raises(ValueError, match="not a whole number of tiles of width tile_dim=7"):
        AttentionMILHead(tile_dim=7, epochs=1).fit(Xt, ["a", "b"] * 5)
