"""Breast-region cropping: constructed full-field images with known geometry, and the real mammography samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastclip.data.breast import crop_breast
from breastclip.data.images import load_image


def _mammogram(h: int = 1200, w: int = 900, side: str = "L", dtype=np.uint8, label: bool = True,
               seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A half-ellipse 'breast' against the left or right edge, textured, with a bright burned-in label."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    img = np.zeros((h, w), np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, ry, rx = h // 2, int(h * 0.4), int(w * 0.55)
    dx = xx if side == "L" else (w - 1 - xx)
    inside = ((yy - cy) / ry) ** 2 + (dx / rx) ** 2 <= 1
    img[inside] = 0.35 + 0.3 * rng.random(int(inside.sum()))  # tissue, including dark fat well above background
    if label:  # "L CC" style marker in the far corner, away from the breast
        lx = w - 120 if side == "L" else 40
        img[40:80, lx:lx + 80] = 1.0
    rows, cols = np.nonzero(inside)
    bbox = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
    return (img * top).astype(dtype), bbox


@pytest.mark.parametrize("side", ["L", "R"])
def test_crop_finds_the_breast_and_drops_the_label(side):
    img, (t, lft, b, r) = _mammogram(side=side)
    c = crop_breast(img)
    assert c.found and c.chest_wall == side and not c.flipped
    top, left, bottom, right = c.bbox
    tol = 0.02 * max(img.shape)  # margin (1 %) plus one working-copy pixel
    assert abs(top - t) <= tol and abs(bottom - b) <= tol and abs(left - lft) <= tol and abs(right - r) <= tol
    assert c.image.shape == (bottom - top, right - left) and c.image.dtype == img.dtype
    # the label lay outside the breast's box rows? it lies at rows 40..80, inside the box only if the box reaches
    # up there; either way no label pixel survives in the crop
    assert (c.image == img.max()).sum() == 0
    assert 0.2 < c.area_fraction < 0.5


def test_label_inside_the_box_is_blanked_but_dark_tissue_kept():
    img, _ = _mammogram(h=800, w=900, side="L")  # ellipse spans rows 80..720; put a label inside the box rows
    img[300:330, 700:760] = 255
    c = crop_breast(img)
    assert c.found
    assert (c.image == 255).sum() == 0
    # the breast's own darkest tissue (fat at ~0.35 of full scale) is never blanked
    t, lft, b, r = c.bbox
    tissue = img[t:b, lft:r] > 0
    assert np.array_equal(c.image[tissue & (c.image > 0)], img[t:b, lft:r][tissue & (c.image > 0)])
    assert (c.image[tissue] == 0).mean() < 0.01


def test_flip_and_pad_square_keep_chest_wall_on_its_edge():
    img, _ = _mammogram(side="R")
    c = crop_breast(img, flip_to="L", pad_square=True)
    assert c.flipped and c.chest_wall == "R"
    h, w = c.image.shape
    assert h == w
    col_fill = (c.image > 0).mean(axis=0)
    assert col_fill[:20].mean() > 0.3 and col_fill[-20:].mean() == 0  # chest wall now left, padding on the right
    same = crop_breast(img, flip_to="R")
    assert not same.flipped


def test_rgb_and_16_bit_inputs_keep_dtype_and_channels():
    grey, bbox = _mammogram(dtype=np.uint16)
    c16 = crop_breast(grey)
    assert c16.image.dtype == np.uint16 and c16.found
    rgb = np.repeat(_mammogram()[0][..., None], 3, axis=2)
    c = crop_breast(rgb, pad_square=True)
    assert c.image.ndim == 3 and c.image.shape[2] == 3 and c.image.shape[0] == c.image.shape[1]
    assert c.bbox == c16.bbox


def test_image_without_background_is_kept_whole():
    rng = np.random.default_rng(1)
    roi = (60 + 150 * rng.random((300, 280))).astype(np.uint8)  # an ROI crop: tissue everywhere
    c = crop_breast(roi, flip_to="L", pad_square=False)
    assert not c.found and c.bbox == (0, 0, 300, 280) and not c.flipped
    assert np.array_equal(c.image, roi)
    blank = np.zeros((50, 60), np.uint8)
    assert not crop_breast(blank).found


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="flip_to"):
        crop_breast(np.zeros((10, 10), np.uint8), flip_to="left")
    with pytest.raises(ValueError, match="shape"):
        crop_breast(np.zeros((10,), np.uint8))


@pytest.mark.realdata
def test_real_full_field_samples_crop_to_the_breast(shared_data):
    """Every real full-field mammogram: the crop keeps nearly all breast tissue and drops most background."""
    root = shared_data / "mammography_samples"
    table = pd.read_csv(root / "labels.csv")
    full = table[table["kind"].isin(["full_field", "full_field_raw12bit"])]
    assert len(full) >= 25
    for rel in full["path"]:
        img = load_image(root / rel)
        c = crop_breast(img)
        assert c.found, rel
        grey = img.max(axis=2)
        t, lft, b, r = c.bbox
        bright = grey > 0.3 * np.percentile(grey, 99.9)  # dense tissue: must all lie inside the box
        inside = bright[t:b, lft:r].sum() / bright.sum()
        assert inside > 0.98, (rel, inside)
        assert (b - t) * (r - lft) < 0.95 * grey.size or c.area_fraction > 0.6, rel
    roi = table[table["kind"] == "roi_crop"]["path"]
    kept_whole = [not crop_breast(load_image(root / p)).found for p in roi]
    assert sum(kept_whole) >= 2  # the ROI crops are tissue edge to edge (one reaches the skin line)
