"""embed_manifest: aligned ids, failures reported and skipped, cache reuse, pixel cache, kill -9 and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from backbone_fixtures import make_manifest

from breastclip.backbones import EmbeddingResult, create_backbone, embed_manifest, get_entry
from breastclip.backbones.preprocess import resize_crop
from breastclip.data.images import load_image

SRC = Path(__file__).resolve().parents[2] / "src"


def test_embed_manifest_aligned_with_failures(manifest, tmp_path):
    res = embed_manifest(manifest, "tiny-test", cache_dir=tmp_path / "c", num_workers=0, batch_size=5,
                         progress=False)
    assert isinstance(res, EmbeddingResult)
    good = [i for i in manifest.df["id"] if "broken" not in i and "gone" not in i]
    assert res.ids == good and res.X.shape == (len(good), 32) and res.X.dtype == np.float32
    problems = {i: p for i, _, p in res.failures}
    assert set(problems) == {"synthetic:broken.png", "synthetic:gone.png"}
    assert "not found" in problems["synthetic:gone.png"]
    # rows equal a direct encode of the same file through the backbone
    b = create_backbone("tiny-test", device="cpu")
    path = manifest.paths()[3]
    direct = b.encode_images(torch.from_numpy(resize_crop(load_image(path), b.entry))[None])[0]
    np.testing.assert_allclose(res.X[3], direct, atol=1e-6)
    X, ids, failures = res  # the contract's tuple form
    assert ids == res.ids and len(failures) == 2


def test_rerun_uses_cache_and_duplicates_share_rows(manifest, tmp_path):
    first = embed_manifest(manifest, "tiny-test", cache_dir=tmp_path / "c", num_workers=0, progress=False)
    assert first.n_computed == len(first.ids) and first.n_cached == 0
    # a second manifest listing one file twice under another id: content-addressed, nothing recomputed
    df = manifest.df.copy()
    extra = df.iloc[[0]].assign(id="copy-of-0")
    from breastclip.data.manifest import Manifest

    m2 = Manifest(df=__import__("pandas").concat([df, extra], ignore_index=True), root=manifest.root,
                  classes=manifest.classes, name="dup")
    again = embed_manifest(m2, "tiny-test", cache_dir=tmp_path / "c", num_workers=1, progress=False)
    assert again.n_computed == 0 and again.n_cached == len(first.ids)
    np.testing.assert_array_equal(again.X[:-1], first.X)
    np.testing.assert_array_equal(again.X[-1], first.X[0])


def test_pixel_cache_skips_decoding_for_same_geometry(manifest, tmp_path, monkeypatch):
    embed_manifest(manifest, "tiny-test", cache_dir=tmp_path / "c", num_workers=0, pixel_cache="always",
                   progress=False)
    import breastclip.backbones.preprocess as preprocess

    def refuse(*a, **k):
        raise AssertionError("decoded although the resized pixels were cached")

    monkeypatch.setattr(preprocess, "load_image", refuse)
    monkeypatch.setattr(preprocess, "load_image_resized", refuse)
    other = get_entry("tiny-test", mean=(0.5, 0.5, 0.5))  # new embedding cache, same resize geometry
    res = embed_manifest(manifest, other, cache_dir=tmp_path / "c", num_workers=0, progress=False)
    assert res.n_computed == len(res.ids) == 12


def test_pixel_cache_auto_keeps_only_large_images(tmp_path):
    from PIL import Image

    from breastclip.backbones.cache import PixelCache
    from breastclip.backbones.hashing import file_hash
    from breastclip.backbones.preprocess import spec_key
    from breastclip.data.manifest import Manifest

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (300, 240, 3), dtype=np.uint8)).save(folder / "large.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "small.png")
    m = Manifest.from_records([{"image": "large.png", "label": "a"}, {"image": "small.png", "label": "a"}], folder,
                              name="px", source="t")
    embed_manifest(m, "tiny-test", cache_dir=tmp_path / "c", num_workers=0, progress=False)
    pix = PixelCache(tmp_path / "c", spec_key(get_entry("tiny-test")))
    assert pix.get(file_hash(folder / "large.png")) is not None
    assert pix.get(file_hash(folder / "small.png")) is None


_CHILD = """
import sys, time
sys.path.insert(0, {src!r})
from breastclip.backbones import base, embed_manifest
from breastclip.data.manifest import Manifest
orig = base.Backbone.encode_tensor
def slow(self, x):
    time.sleep(0.3)
    return orig(self, x)
base.Backbone.encode_tensor = slow
m = Manifest.from_csv({manifest!r})
embed_manifest(m, "tiny-test", cache_dir={cache!r}, batch_size=2, num_workers=0, progress=False)
print("finished")
"""


@pytest.mark.slow
def test_kill9_mid_run_then_resume_equals_clean_run(tmp_path):
    m = make_manifest(tmp_path / "images", n=24, bad=False)
    csv = tmp_path / "m.csv"
    m.to_csv(csv)
    cache = tmp_path / "cache"
    code = _CHILD.format(src=str(SRC), manifest=str(csv), cache=str(cache))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    committed = []
    while time.time() < deadline and proc.poll() is None:
        committed = list(cache.glob("embeddings/*/shards/*.parquet"))
        if len(committed) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"child ended before it could be killed: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= len(list(cache.glob("embeddings/*/shards/*.parquet"))) < 12, "killed mid-run"
    resumed = embed_manifest(m, "tiny-test", cache_dir=cache, num_workers=0, progress=False)
    assert 0 < resumed.n_computed < 24 and resumed.n_cached > 0
    clean = embed_manifest(m, "tiny-test", cache_dir=tmp_path / "clean", num_workers=0, progress=False)
    assert resumed.ids == clean.ids and not resumed.failures
    np.testing.assert_allclose(resumed.X, clean.X, atol=1e-6)


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_equal_single_process(tmp_path):
    m = make_manifest(tmp_path / "images", n=16, bad=True)
    csv = tmp_path / "m.csv"
    m.to_csv(csv)
    out = tmp_path / "dist.npz"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "breastclip", "embed", str(csv), "--backbone", "tiny-test", "--cache-dir", str(tmp_path / "dcache"),
           "--num-workers", "0", "--batch-size", "3", "--out", str(out), "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    shards = {p.name[:4] for p in (tmp_path / "dcache").glob("embeddings/*/shards/*.npy")}
    assert shards == {"r000", "r001"}, "each rank writes its own shards"
    assert list((tmp_path / "dcache").glob("embeddings/*/index.parquet")), "rank 0 merged the index"
    single = embed_manifest(m, "tiny-test", cache_dir=tmp_path / "scache", num_workers=0, progress=False)
    with np.load(out, allow_pickle=False) as z:
        assert z["ids"].tolist() == single.ids
        np.testing.assert_allclose(z["X"], single.X, atol=1e-6)
    assert "2 images failed" in r.stderr or "2 images failed" in r.stdout
