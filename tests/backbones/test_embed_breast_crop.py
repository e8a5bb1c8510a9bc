"""embed.options.breast_crop / flip_to / pad_square: applied before resizing and part of both cache keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from breastclip.backbones import create_backbone, embed_manifest, get_entry
from breastclip.backbones.preprocess import prepare_image, resize_crop, spec_key
from breastclip.data.breast import crop_breast
from breastclip.data.images import load_image
from breastclip.data.manifest import Manifest


def _full_field(path, side: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = 600, 480
    img = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    dx = xx if side == "L" else w - 1 - xx
    inside = ((yy - h / 2) / (0.42 * h)) ** 2 + (dx / (0.5 * w)) ** 2 <= 1
    img[inside] = rng.integers(80, 230, int(inside.sum()))
    img[20:45, (w - 80 if side == "L" else 20):][:, :60] = 255  # burned-in label
    Image.fromarray(img).save(path)


@pytest.fixture
def mammo_manifest(tmp_path):
    folder = tmp_path / "ff"
    folder.mkdir()
    recs = []
    for i, side in enumerate("LRLR"):
        _full_field(folder / f"m{i}.png", side, i)
        recs.append({"id": f"m{i}", "image": f"m{i}.png", "label": "benign" if i % 2 else "malignant",
                     "patient_id": f"p{i}"})
    return Manifest.from_records(recs, folder, name="ff", source="test")


def test_default_keys_unchanged_and_breast_options_change_them():
    plain = get_entry("tiny-test")
    # the plain key is what it was before breast cropping existed, plus the reduced-decode marker (issue 14)
    assert json.loads(plain.preprocessing_key()) == {
        "size": plain.image_size, "resize": plain.resize_mode, "interp": plain.interpolation,
        "mean": [round(v, 8) for v in plain.mean], "std": [round(v, 8) for v in plain.std], "decode": "reduced-2"}
    assert json.loads(spec_key(plain)) == {"size": plain.image_size, "resize": plain.resize_mode,
                                           "interp": plain.interpolation, "decode": "reduced-2"}
    keys = {get_entry("tiny-test", **kw).preprocessing_key()
            for kw in ({}, {"breast_crop": True}, {"breast_crop": True, "flip_to": "L"},
                       {"breast_crop": True, "pad_square": True})}
    assert len(keys) == 4
    assert spec_key(get_entry("tiny-test", breast_crop=True)) != spec_key(plain)


def test_embedding_with_breast_crop_uses_the_crop_and_its_own_cache(mammo_manifest, tmp_path):
    cache = tmp_path / "c"
    plain = embed_manifest(mammo_manifest, "tiny-test", cache_dir=cache, num_workers=0, progress=False)
    cropped = embed_manifest(mammo_manifest, "tiny-test", cache_dir=cache, num_workers=0, progress=False,
                             breast_crop=True, flip_to="L", pad_square=True)
    assert cropped.n_computed == 4 and cropped.n_cached == 0  # never served from the plain cache
    assert cropped.cache_dir != plain.cache_dir
    assert not np.allclose(plain.X, cropped.X, atol=1e-4)
    b = create_backbone("tiny-test", device="cpu")
    img = load_image(mammo_manifest.paths()[1])
    crop = crop_breast(img, flip_to="L", pad_square=True).image
    direct = b.encode_images(torch.from_numpy(resize_crop(crop, b.entry))[None])[0]
    np.testing.assert_allclose(cropped.X[1], direct, atol=1e-6)
    again = embed_manifest(mammo_manifest, "tiny-test", cache_dir=cache, num_workers=0, progress=False,
                           breast_crop=True, flip_to="L", pad_square=True)
    assert again.n_computed == 0 and again.n_cached == 4
    # a built backbone takes the same pixel options
    built = embed_manifest(mammo_manifest, b, cache_dir=tmp_path / "c2", num_workers=0, progress=False,
                           breast_crop=True, flip_to="L", pad_square=True)
    np.testing.assert_allclose(built.X, cropped.X, atol=1e-6)


def test_flipped_copies_embed_alike_after_flip_to(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    _full_field(folder / "a.png", "L", 3)
    Image.fromarray(np.asarray(Image.open(folder / "a.png"))[:, ::-1]).save(folder / "b.png")
    entry = get_entry("tiny-test", breast_crop=True, flip_to="L", pad_square=True)
    a = prepare_image(load_image(folder / "a.png"), entry)
    b = prepare_image(load_image(folder / "b.png"), entry)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kw, msg", [({"breast_crop": True, "flip_to": "left"}, "flip_to"),
                                     ({"flip_to": "L"}, "breast_crop = true"),
                                     ({"pad_square": True}, "breast_crop = true")])
def test_bad_breast_options_are_named(mammo_manifest, tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        embed_manifest(mammo_manifest, "tiny-test", cache_dir=tmp_path / "c", num_workers=0, progress=False, **kw)
