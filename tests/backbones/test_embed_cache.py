"""Embedding cache: commit protocol, crash leftovers, compaction, content addressing."""

from __future__ import annotations

import numpy as np
import pytest

from breastclip.backbones.cache import EmbeddingCache, PixelCache, model_key

PARTS = {"backbone": "tiny-test", "weights": "abc", "preprocessing": "p", "precision": "fp32"}


def vecs(n, d=8, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_write_read_roundtrip_and_order(tmp_path):
    c = EmbeddingCache(tmp_path, "tiny-test", PARTS)
    assert c.dim is None and c.missing(["a", "b"]) == ["a", "b"]
    X1, X2 = vecs(3), vecs(2, seed=1)
    c.write(["a", "b", "c"], X1)
    c.write(["d", "e"], X2)
    assert c.dim == 8 and c.missing(["a", "z", "e", "z"]) == ["z"]
    np.testing.assert_array_equal(c.read(["e", "a", "c"]), np.stack([X2[1], X1[0], X1[2]]))
    with pytest.raises(ValueError, match="shape"):
        c.write(["x"], vecs(2))


def test_key_covers_weights_and_preprocessing(tmp_path):
    assert model_key(PARTS) != model_key({**PARTS, "weights": "abd"})
    assert model_key(PARTS) != model_key({**PARTS, "preprocessing": "q"})
    assert model_key(PARTS) != model_key({**PARTS, "precision": "bf16"})
    a = EmbeddingCache(tmp_path, "tiny-test", PARTS)
    b = EmbeddingCache(tmp_path, "tiny-test", {**PARTS, "weights": "other"})
    a.write(["k"], vecs(1))
    assert b.missing(["k"]) == ["k"], "other weights must never reuse these embeddings"


def test_uncommitted_shard_is_invisible_and_damaged_index_ignored(tmp_path):
    c = EmbeddingCache(tmp_path, "tiny-test", PARTS)
    c.write(["a"], vecs(1))
    # what a kill -9 between the .npy and its .parquet leaves behind, plus a temp file and a damaged index
    np.save(c.shards / "r000-dead.npy", vecs(4))
    (c.shards / ".r000-x.parquet.123.tmp").write_bytes(b"half")
    (c.shards / "r000-bad.parquet").write_bytes(b"not parquet")
    assert c.missing(["a", "b"]) == ["b"]
    c.compact(min_shards=1)
    assert c.missing(["a"]) == []
    assert (c.dir / "index.parquet").is_file()


def test_compaction_merges_small_shards_and_keeps_values(tmp_path):
    c = EmbeddingCache(tmp_path, "tiny-test", PARTS)
    keys, rows = [], []
    for i in range(5):
        X = vecs(2, seed=i)
        ks = [f"k{i}a", f"k{i}b"]
        c.write(ks, X)
        keys += ks
        rows.append(X)
    expected = np.concatenate(rows)
    c.compact(min_shards=3)
    assert len(list(c.shards.glob("*.npy"))) == 1
    fresh = EmbeddingCache(tmp_path, "tiny-test", PARTS)
    np.testing.assert_array_equal(fresh.read(keys), expected)
    c.write(["new"], vecs(1, seed=9))  # shards committed after compaction are still found
    assert EmbeddingCache(tmp_path, "tiny-test", PARTS).missing(keys + ["new"]) == []


def test_pixel_cache_roundtrip_and_damage(tmp_path):
    p = PixelCache(tmp_path, '{"size": 32}')
    assert p.get("ab12") is None
    px = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    p.put("ab12", px)
    np.testing.assert_array_equal(p.get("ab12"), px)
    p.path("ab12").write_bytes(b"garbage")
    assert p.get("ab12") is None
