"""Feature views (<backbone>@stages+mirror+x<size>): names, cache keys, block normalisation, mirror invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from breastclip.backbones import create_backbone, embed_manifest, get_entry
from breastclip.backbones.views import parse_view, stage_modules


def test_view_names_are_canonical_and_part_of_the_cache_key():
    base = get_entry("efficientnet-lite0")
    view = get_entry("efficientnet-lite0@stages+mirror+x160")
    assert view.name == "efficientnet-lite0@mirror+stages+x160"
    assert view.view == ("mirror", "stages", "x160")
    assert view.preprocessing_key() != base.preprocessing_key()
    assert get_entry("efficientnet-lite0@x160+stages+mirror").preprocessing_key() == view.preprocessing_key()
    assert '"view"' not in base.preprocessing_key()  # existing caches of plain backbones stay valid


@pytest.mark.parametrize("bad, match", [("stagez", "unknown feature view 'stagez'"), ("final", "@stages\\+final"),
                                        ("x", "unknown feature view")])
def test_bad_view_tokens_are_named(bad, match):
    with pytest.raises(KeyError, match=match):
        parse_view(bad)


def test_stage_views_only_for_families_with_stages():
    with pytest.raises(KeyError, match="no stage view"):
        get_entry("plip@stages")


def test_vit_stage_view_pools_class_and_mean_patch_token_per_block():
    """tiny-test (an open_clip ViT, 2 blocks): each block gives [CLS, mean patch] (2 x 64), L2-normalised and
    weighted 1/sqrt(2); the hooks are released after each forward."""
    bb = create_backbone("tiny-test@stages", device="cpu")
    x = torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    f = bb.encode_images(x)
    assert f.shape == (3, 2 * 128) and bb.embed_dim == 256
    plain = create_backbone("tiny-test", device="cpu")
    got = []
    blocks = stage_modules(plain)
    hs = [m.register_forward_hook(lambda _m, _i, o: got.append(o.float())) for m, _ in blocks]
    with torch.inference_mode():
        plain.image_model(plain.normalize(x))
    for h in hs:
        h.remove()
    ref = []
    for o in got:
        o = o if o.shape[0] == 3 else o.permute(1, 0, 2)
        b = torch.cat([o[:, 0], o[:, 1:].mean(1)], 1)
        ref.append(torch.nn.functional.normalize(b, dim=1) / np.sqrt(len(got)))
    np.testing.assert_allclose(f, torch.cat(ref, 1).numpy(), atol=1e-5)
    for k in range(2):
        np.testing.assert_allclose(np.linalg.norm(f[:, 128 * k:128 * (k + 1)], axis=1), 1 / np.sqrt(2), atol=1e-5)
    assert not any(m._forward_hooks for m, _ in stage_modules(bb))


def test_mirror_view_is_mirror_invariant():
    bb = create_backbone("tiny-test@mirror+stages+final", device="cpu")
    x = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(bb.encode_images(x), bb.encode_images(torch.flip(x, dims=[3])), atol=1e-5)
    plain = create_backbone("tiny-test@stages", device="cpu")
    assert not np.allclose(plain.encode_images(x), plain.encode_images(torch.flip(x, dims=[3])), atol=1e-3)


def test_multiscale_is_refused_for_a_vit():
    with pytest.raises(ValueError, match="multi-scale\\) needs a CNN"):
        create_backbone("tiny-test@x24", device="cpu")


def test_efficientnet_stage_view_with_two_scales():
    """Real ImageNet weights: 7 stages x (mean, sd) at 160 and 224 px = 2 x 2 x (16+24+40+80+112+192+320)."""
    bb = create_backbone("efficientnet-lite0@stages+x160", device="cpu")
    f = bb.encode_images(torch.full((2, 3, 224, 224), 128, dtype=torch.uint8))
    assert f.shape == (2, 2 * 2 * 784) and bb.embed_dim == 3136
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)


def test_a_view_has_its_own_embedding_cache(manifest, tmp_path):
    cache = tmp_path / "cache"
    plain = embed_manifest(manifest, "tiny-test", cache_dir=cache, num_workers=0, progress=False)
    view = embed_manifest(manifest, "tiny-test@stages", cache_dir=cache, num_workers=0, progress=False)
    assert plain.X.shape[1] == 32 and view.X.shape[1] == 256 and view.n_computed == len(view.ids)
    again = embed_manifest(manifest, "tiny-test@stages", cache_dir=cache, num_workers=0, progress=False)
    assert again.n_computed == 0 and np.array_equal(again.X, view.X)
