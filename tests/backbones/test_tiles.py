"""The tile view: grid geometry, tissue-ranked selection, cutting at a magnification, pooling, bounded memory, and
tile embeddings through the content-addressed cache (tiny-test backbone)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from breastclip.backbones import create_backbone, embed_manifest, embed_tiles
from breastclip.backbones.tiles import (
    TileSpec,
    bag_matrix,
    cut_tiles,
    pool_bags,
    select_tiles,
    tile_grid,
    tissue_fraction,
    tissue_mask,
)
from breastclip.data.manifest import Manifest


def _breast(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A bright half-ellipse 'breast' against the left edge of a black frame, with texture (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (xx / (0.45 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2 <= 1
    grey = np.where(inside, 90 + rng.integers(0, 60, (h, w)), 0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def test_grid_covers_every_edge_and_small_images():
    g = tile_grid(100, 70, 32, 24)
    assert g[:, 0].max() == 100 - 32 and g[:, 1].max() == 70 - 32 and g.min() == 0
    covered = np.zeros((100, 70), bool)
    for r, c in g:
        covered[r:r + 32, c:c + 32] = True
    assert covered.all()
    assert tile_grid(20, 10, 32, 24).tolist() == [[0, 0]]


def test_selection_keeps_tissue_tiles_caps_and_never_returns_nothing():
    img = _breast(400, 300)
    spec = TileSpec(size=64, overlap=0.5, max_tiles=6, min_tissue=0.5)
    tiles, boxes = cut_tiles(img, spec, out_size=32)
    assert tiles.shape == (6, 3, 32, 32) and tiles.dtype == np.uint8
    assert (boxes[:, 1] < 0.45 * 300).all()  # every kept tile starts inside the breast's columns
    mask, f = tissue_mask(img)
    frac = tissue_fraction(mask, f, boxes[:, :2], 64)
    assert (frac >= 0.5).all()
    assert select_tiles(np.zeros(5), 3, 0.5).tolist() == [0]  # blank image: the first tile, not an empty bag
    assert select_tiles(np.array([0.1, 0.9, 0.9, 0.6]), 2, 0.5).tolist() == [1, 2]


def test_magnification_maps_boxes_back_to_the_input_pixels():
    img = _breast(300, 200)
    tiles, boxes = cut_tiles(img, TileSpec(size=50, overlap=0.0, scale=0.5, max_tiles=100, min_tissue=0.0),
                             out_size=32)
    # at half resolution (150 x 100) a 50-px grid is 3 x 2 tiles of 100 x 100 input pixels
    assert len(tiles) == 6 and set(map(tuple, boxes[:, 2:] - boxes[:, :2])) == {(100, 100)}
    assert boxes[:, 2].max() == 300 and boxes[:, 3].max() == 200


def test_cutting_a_4000x3000_frame_never_makes_a_float_copy():
    img = np.zeros((4000, 3000, 3), np.uint8)
    img[500:3500, :1800] = 120
    tracemalloc.start()
    try:
        tiles, _ = cut_tiles(img, TileSpec(size=224, overlap=0.25, max_tiles=16), out_size=224)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tiles) == 16
    # a float32 copy of the frame alone would be 144 MB; the greyscale working copy is 12 MB
    assert peak < 40e6, f"peak {peak / 1e6:.1f} MB"


def test_pooling_rules_and_bag_matrix():
    rng = np.random.default_rng(0)
    bags = [rng.random((5, 4)), rng.random((2, 4))]
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    np.testing.assert_allclose(pool_bags(bags, "mean")[0], unit(bags[0].mean(0)), rtol=1e-6)
    np.testing.assert_allclose(pool_bags(bags, "max")[1], unit(bags[1].max(0)), rtol=1e-6)
    np.testing.assert_allclose(pool_bags(bags, "topk", top_k=2)[0], unit(np.sort(bags[0], 0)[-2:].mean(0)),
                               rtol=1e-6)
    M = bag_matrix(bags, 6)
    assert M.shape == (2, 24) and np.all(M[1, 8:] == 0)
    np.testing.assert_allclose(M[0].reshape(6, 4)[:5], bags[0], rtol=1e-6)
    with pytest.raises(ValueError, match="more than max_tiles=3"):
        bag_matrix(bags, 3)


def test_spec_errors_name_the_option():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['tile_size'\]; valid keys"):
        TileSpec.parse({"tile_size": 224})
    with pytest.raises(ValueError, match="embed.options.tiles.overlap must be in"):
        TileSpec(overlap=1.0)
    with pytest.raises(ValueError, match="embed.options.tiles.pool must be one of"):
        TileSpec(pool="median")
    assert TileSpec.parse(None) is None and TileSpec.parse(True) == TileSpec()
    assert TileSpec(pool="max").cache_key() == TileSpec(pool="mean").cache_key()  # pooling happens on reading
    assert TileSpec(scale=0.5).cache_key() != TileSpec().cache_key()


@pytest.fixture
def fullfield(tmp_path) -> Manifest:
    rows = []
    for i in range(3):
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(_breast(160 + 40 * i, 120, seed=i)[..., 0]).save(p)
        rows.append({"image": f"img/{i}.png", "label": "ab"[i % 2]})
    (tmp_path / "img" / "bad.png").write_bytes(b"not a png")
    rows.append({"image": "img/bad.png", "label": "a"})
    return Manifest.from_records(rows, tmp_path, name="ff", source="test")


def test_tile_embeddings_are_cached_whole_and_pooled(fullfield, tmp_path):
    model = create_backbone("tiny-test", "cpu")
    spec = TileSpec(size=32, overlap=0.25, max_tiles=8, min_tissue=0.3, pool="mean")
    r1 = embed_tiles(fullfield, model, spec, cache_dir=tmp_path / "c", num_workers=0, batch_size=5, progress=False)
    assert r1.ids == [f"test:img/{i}.png" for i in range(3)]
    assert len(r1.failures) == 1 and r1.failures[0][0] == "test:img/bad.png" and "bad.png" in r1.failures[0][1]
    assert [len(b) for b in r1.bags] == [8, 8, 8] and r1.X.shape == (3, 32) and r1.n_tiles == 24
    np.testing.assert_allclose(np.linalg.norm(r1.X, axis=1), 1.0, rtol=1e-5)
    # each tile embedding equals encoding that tile alone (batches packed across images change nothing)
    img = np.asarray(Image.open(tmp_path / "img" / "1.png").convert("RGB"))
    tiles, boxes = cut_tiles(img, spec, 32)
    np.testing.assert_allclose(r1.bags[1], model.encode_images(torch.from_numpy(tiles)), atol=1e-5)
    np.testing.assert_array_equal(r1.boxes[1], boxes)
    r2 = embed_tiles(fullfield, model, spec, cache_dir=tmp_path / "c", num_workers=0, progress=False)
    assert r2.n_computed == 0 and r2.n_cached == 3 and r2.n_tiles == 0
    np.testing.assert_array_equal(r2.X, r1.X)
    np.testing.assert_array_equal(r2.pooled("bag"), bag_matrix(r1.bags, 8))
    r3 = embed_manifest(fullfield, model, cache_dir=tmp_path / "c", num_workers=0, progress=False,
                        tiles={"size": 32, "overlap": 0.25, "max_tiles": 8, "min_tissue": 0.3, "pool": "bag"})
    assert r3.n_cached == 3 and r3.X.shape == (3, 8 * 32)  # same tiles from the cache, pooled as bags
    r4 = embed_tiles(fullfield, model, TileSpec(size=32, overlap=0.5, max_tiles=8), cache_dir=tmp_path / "c",
                     num_workers=0, progress=False)
    assert r4.n_computed == 3 and r4.cache_dir != r1.cache_dir  # other geometry, other cache folder
