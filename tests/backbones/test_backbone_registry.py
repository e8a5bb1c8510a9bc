"""Registry contract: every entry is complete and consistent; names resolve or fail with a useful message."""

from __future__ import annotations

import pytest

from breastclip.backbones import DEFAULT_BACKBONE, BackboneEntry, get_entry, list_backbones, register_backbone

ALL = [e.name for e in list_backbones()]
REQUIRED = {"clip-vit-b32", "clip-rn50", "clip-vit-b16", "clip-vit-l14", "biomedclip", "plip", "efficientnet-lite0",
            "efficientnet-lite1", "efficientnet-lite2", "efficientnet-lite0+minilm", "tiny-test"}


def test_required_entries_present_and_default():
    assert REQUIRED <= set(ALL)
    assert DEFAULT_BACKBONE == "clip-vit-b32"
    assert get_entry("clip-vit-b32").weights == "openai"


@pytest.mark.parametrize("name", ALL)
def test_entry_is_complete(name):
    e = get_entry(name)
    assert isinstance(e, BackboneEntry) and e.name == name
    assert e.family in {"open_clip", "hf_clip", "efficientnet_lite", "tiny"}
    assert len(e.mean) == 3 and len(e.std) == 3 and all(0 < s < 1 for s in e.std)
    assert e.image_size >= 16 and e.embed_dim >= 8
    assert e.interpolation in {"bicubic", "bilinear"}
    assert e.licence and e.description
    if e.text_aligned:
        assert e.has_text, "aligned text needs a text tower"
    with pytest.raises(AttributeError):
        e.name = "x"  # frozen


def test_minilm_pair_is_not_aligned():
    e = get_entry("efficientnet-lite0+minilm")
    assert e.has_text and not e.text_aligned and e.text_embed_dim == 384 and e.embed_dim == 1280
    assert not get_entry("efficientnet-lite0").has_text


def test_preprocessing_key_differs_with_preprocessing():
    a = get_entry("tiny-test")
    assert a.preprocessing_key() != get_entry("tiny-test", image_size=64).preprocessing_key()
    assert a.preprocessing_key() != get_entry("tiny-test", mean=(0.5, 0.5, 0.5)).preprocessing_key()


def test_unknown_name_suggests_close_match():
    with pytest.raises(KeyError, match="clip-vit-b32"):
        get_entry("clip-vit-b23")


def test_hf_scheme_and_local_errors(tmp_path):
    e = get_entry("hf:vinid/plip")
    assert e.family == "hf_clip" and e.weights == "vinid/plip"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        get_entry(f"local:{tmp_path}/nowhere.safetensors")
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match="architecture"):
        get_entry(f"local:{f}")
    e = get_entry(f"local:{f}", architecture="ViT-B-32")
    assert e.family == "open_clip" and e.architecture == "ViT-B-32" and e.embed_dim == 512


def test_register_refuses_silent_overwrite():
    e = get_entry("tiny-test")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(e)
