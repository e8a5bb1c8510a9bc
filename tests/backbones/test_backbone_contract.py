"""Every backbone that builds offline meets the same contract (registry-driven, like timm's model tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from breastclip.backbones import Backbone, create_backbone, get_entry, list_backbones, offline_status
from breastclip.backbones.preprocess import resize_crop

# registry-driven: every entry whose weights are on this machine gets the contract tests
OFFLINE = [e.name for e in list_backbones() if offline_status(e)[0]]


def test_offline_set_includes_the_always_available_entries():
    assert {"tiny-test", "efficientnet-lite0", "efficientnet-lite0+minilm"} <= set(OFFLINE)
_built: dict[str, Backbone] = {}


def build(name: str) -> Backbone:
    if name not in _built:
        _built[name] = create_backbone(name, device="cpu")
    return _built[name]


def batch(name: str, n: int = 3, seed: int = 0) -> torch.Tensor:
    s = get_entry(name).image_size
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("name", OFFLINE)
def test_encode_images_contract(name):
    b = build(name)
    assert b.entry.name == name and b.device == torch.device("cpu")
    assert isinstance(b.image_model, torch.nn.Module)
    assert isinstance(b.fingerprint, str) and len(b.fingerprint) == 32
    x = batch(name)
    X = b.encode_images(x)
    assert X.shape == (3, b.entry.embed_dim) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    # batch composition does not change an image's embedding; repeated calls are deterministic
    np.testing.assert_allclose(b.encode_images(x[1:2])[0], X[1], atol=2e-5)
    np.testing.assert_array_equal(b.encode_images(x), X)
    assert not np.allclose(X[0], X[1]), "different images must give different embeddings"
    assert b.encode_images(x[:0]).shape == (0, b.entry.embed_dim)


@pytest.mark.parametrize("name", OFFLINE)
def test_encode_images_rejects_wrong_input(name):
    b = build(name)
    s = b.entry.image_size
    with pytest.raises(TypeError, match="uint8"):
        b.encode_images(torch.zeros(1, 3, s, s))
    with pytest.raises(ValueError, match=str(s)):
        b.encode_images(torch.zeros(1, 3, s + 1, s + 1, dtype=torch.uint8))


@pytest.mark.parametrize("name", OFFLINE)
def test_encode_text_contract(name):
    b = build(name)
    if not b.entry.has_text:
        assert not b.has_text
        with pytest.raises(ValueError, match="image-only"):
            b.encode_text(["a malignant mass"])
        return
    T = b.encode_text(["an ultrasound image of a benign lesion", "an ultrasound image of a malignant lesion"])
    assert T.shape == (2, b.entry.text_embed_dim) and T.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(T[0], T[1])


def test_tiny_is_seeded_and_fingerprint_stable():
    a, b = create_backbone("tiny-test", device="cpu"), build("tiny-test")
    assert a.fingerprint == b.fingerprint
    x = batch("tiny-test")
    np.testing.assert_array_equal(a.encode_images(x), b.encode_images(x))


def test_uint8_path_matches_open_clip_reference_preprocess(tmp_path):
    """resize_crop + on-device normalisation == open_clip's own PIL transform, on odd sizes and aspect ratios."""
    from open_clip.transform import image_transform
    from PIL import Image

    b = build("tiny-test")
    e = b.entry
    ref = image_transform(e.image_size, is_train=False, mean=e.mean, std=e.std, interpolation=e.interpolation)
    rng = np.random.default_rng(1)
    for h, w in [(45, 71), (100, 33), (32, 32), (17, 29)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = ref(Image.fromarray(img)).unsqueeze(0)
        ours = b.normalize(torch.from_numpy(resize_crop(img, e)).unsqueeze(0))
        torch.testing.assert_close(ours.contiguous(), expected, atol=1e-5, rtol=1e-5)
        ref_emb = b.image_model(expected).detach()
        ref_emb = (ref_emb / ref_emb.norm(dim=-1, keepdim=True)).numpy()
        np.testing.assert_allclose(b.encode_images(torch.from_numpy(resize_crop(img, e))[None]), ref_emb, atol=1e-5)


@pytest.mark.realdata
@pytest.mark.parametrize("name", [n for n in OFFLINE if n.startswith("efficientnet-lite") and "+" not in n])
def test_efficientnet_lite_weights_are_real_imagenet(name, shared_data):
    """Pretrained, not random: through our preprocessing the full classifier calls the skimage cat a cat
    (ImageNet 281 tabby, 282 tiger cat, 285 Egyptian cat) and the coffee cup an espresso (967)."""
    from breastclip.data.images import load_image

    b = build(name)
    folder = shared_data / "medical_vs_nonmedical" / "non_medical"
    for fname, ok in [("skimage_chelsea.png", {281, 282, 285}), ("skimage_coffee.png", {967})]:
        x = torch.from_numpy(resize_crop(load_image(folder / fname), b.entry))[None]
        with torch.inference_mode():
            logits = b.image_model.net(b.normalize(x))
        assert int(logits.argmax()) in ok, fname
