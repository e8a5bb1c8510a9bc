"""`breastclip cache ls | verify | gc | clear`: duplicate shards reclaimed, every row kept, safe during writes."""

from __future__ import annotations

import threading

import numpy as np
from typer.testing import CliRunner

from breastclip.backbones.cache import EmbeddingCache
from breastclip.backbones.cache_admin import clear_cache, gc_cache, list_cache, verify_cache
from breastclip.cli import app

runner = CliRunner()
PARTS = {"backbone": "tiny-test", "weights": "w", "preprocessing": "p", "precision": "fp32"}


def _keys(n: int, start: int = 0) -> list[str]:
    return [f"{i:032x}" for i in range(start, start + n)]


def _duplicated_cache(root):
    """What two parallel runs embedding the same images leave: two shards holding the same rows."""
    keys = _keys(8)
    X = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    a = EmbeddingCache(root, "tiny-test", PARTS)
    a.write(keys, X, rank=0)
    b = EmbeddingCache(root, "tiny-test", PARTS)
    b.write(keys, X, rank=1)
    return keys, X


def test_ls_and_gc_reclaim_duplicate_shards_keeping_every_row(tmp_path):
    keys, X = _duplicated_cache(tmp_path)
    (folder,) = list_cache(tmp_path)
    assert folder.rows == 8 and folder.shards == 2 and folder.backbone == "tiny-test"
    r = gc_cache(tmp_path)
    assert r.shards_removed == 1 and r.bytes_freed > 0
    (after,) = list_cache(tmp_path)
    assert after.shards == 1 and after.rows == 8
    np.testing.assert_array_equal(EmbeddingCache(tmp_path, "tiny-test", PARTS).read(keys), X)
    assert gc_cache(tmp_path).shards_removed == 0  # idempotent


def test_verify_reports_a_damaged_shard(tmp_path):
    _duplicated_cache(tmp_path)
    assert not verify_cache(tmp_path)[0].problems
    npy = sorted((tmp_path / "embeddings").glob("*/shards/*.npy"))[0]
    npy.write_bytes(b"garbage")
    (folder,) = verify_cache(tmp_path)
    assert folder.problems and npy.name in folder.problems[0]
    r = runner.invoke(app, ["cache", "verify", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 1 and "1 with problems" in r.output


def test_clear_spares_folders_a_run_is_writing(tmp_path):
    _duplicated_cache(tmp_path)
    r = clear_cache(tmp_path, busy_minutes=10)
    assert not r.removed and len(r.busy) == 1
    r = clear_cache(tmp_path, busy_minutes=0)
    assert len(r.removed) == 1 and not list_cache(tmp_path)


def test_gc_while_another_process_writes_and_reads(tmp_path):
    keys, X = _duplicated_cache(tmp_path)
    errors: list[BaseException] = []
    written: list[str] = []
    stop = threading.Event()

    def writer():
        try:
            cache = EmbeddingCache(tmp_path, "tiny-test", PARTS)
            for i in range(30):
                new = _keys(4, 1000 + 4 * i)
                cache.write(new, np.ones((4, 4), np.float32) * i)
                cache.write(new, np.ones((4, 4), np.float32) * i)  # and its duplicate
                written.extend(new)
                EmbeddingCache(tmp_path, "tiny-test", PARTS).read(keys + new)
        except BaseException as e:
            errors.append(e)
        finally:
            stop.set()

    t = threading.Thread(target=writer)
    t.start()
    while not stop.is_set():
        gc_cache(tmp_path)
    t.join()
    gc_cache(tmp_path)
    assert not errors, errors
    got = EmbeddingCache(tmp_path, "tiny-test", PARTS).read(keys + written)
    assert got.shape == (8 + len(written), 4)
    assert not verify_cache(tmp_path)[0].problems


def test_cli_ls_gc_clear(tmp_path):
    _duplicated_cache(tmp_path)
    r = runner.invoke(app, ["cache", "ls", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 0 and "tiny-test" in r.output and "8 rows" in r.output
    r = runner.invoke(app, ["cache", "gc", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 0 and "removed 1 duplicate shard" in r.output
    r = runner.invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path), "--yes", "--busy-minutes", "0"])
    assert r.exit_code == 0 and "removed 1 folder" in r.output


def test_verify_and_gc_know_the_cv_fold_results(tmp_path):
    """`cache verify` opens every fold result and names a damaged one; `gc` removes only old orphaned temp files."""
    import os
    import time

    from breastclip.user_cache import cv_folds_dir

    folds = cv_folds_dir(tmp_path)
    folds.mkdir(parents=True)
    np.savez(folds / "good.npz", scores=np.zeros(4), oof=np.zeros((2, 10, 2)))
    (folds / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    refit = folds / "refit-0123"
    refit.mkdir()
    (refit / "head.json").write_text("{}")
    (f,) = [f for f in verify_cache(tmp_path) if f.kind == "cv_folds"]
    assert f.rows == 3 and len(f.problems) == 2
    assert "refit-0123: weights.safetensors is missing" in f.problems
    assert any(p.startswith("bad.npz: unreadable") for p in f.problems)
    r = runner.invoke(app, ["cache", "verify", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 1 and "bad.npz" in r.output
    old, fresh = folds / ".x.npz.abc.tmp", folds / ".y.npz.def.tmp"
    old.write_bytes(b"1")
    fresh.write_bytes(b"2")
    old_dir = folds / ".refit-4567.xyz.tmp"  # a refitted head's save that never finished
    old_dir.mkdir()
    (old_dir / "head.json").write_text("{}")
    for p in (old, old_dir):
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    assert gc_cache(tmp_path).orphans_removed == 2
    assert not old.exists() and not old_dir.exists() and fresh.exists() and (folds / "good.npz").exists()
