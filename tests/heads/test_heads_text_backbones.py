"""Heads with real backbone text towers: tiny-test CLIP (aligned, random weights: mechanics only) and the
efficientnet-lite0 + MiniLM pair (unaligned: zero-shot refused, similarity-guided learns a projection)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from breastclip.backbones import create_backbone
from breastclip.heads import MedicalGate, SimilarityGuidedHead, UnalignedTextError, ZeroShotHead, load_head
from breastclip.prompts import class_text_embeddings, load_bank, text_aligned


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("tiny-test", device="cpu")


@pytest.fixture(scope="module")
def tiny_images(tiny):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=g)
    return tiny.encode_images(imgs)


def test_medical_gate_with_tiny_clip(tiny, tiny_images, tmp_path):
    gate = MedicalGate.from_backbone(tiny, threshold=0.5)
    assert gate.text_.shape == (2, tiny.embed_dim)
    res = gate.check(tiny_images)
    assert res.scores.shape == (24,) and np.all((res.scores >= 0) & (res.scores <= 1))
    np.testing.assert_array_equal(res.is_medical, res.scores >= 0.5)
    # thresholds move the verdict monotonically
    lo = MedicalGate.from_backbone(tiny, threshold=0.0).check(tiny_images)
    hi = MedicalGate.from_backbone(tiny, threshold=1.0 + 1e-9).check(tiny_images)
    assert lo.n_rejected == 0 and hi.n_rejected == 24
    loaded = load_head(gate.save(tmp_path / "gate"))
    np.testing.assert_array_equal(loaded.medical_score(tiny_images), res.scores)


def test_zero_shot_from_bank_with_tiny_clip(tiny, tiny_images):
    head = ZeroShotHead.from_bank(tiny, "busi", classes=["normal", "benign", "malignant"]).fit(tiny_images)
    assert head.classes_.tolist() == ["normal", "benign", "malignant"]
    p = head.predict_proba(tiny_images)
    assert p.shape == (24, 3)
    np.testing.assert_allclose(p.sum(1), 1.0)


def test_similarity_guided_aligned_with_tiny_clip(tiny, tiny_images):
    T = class_text_embeddings(tiny, load_bank("breastmnist"))
    y = np.array(["malignant", "normal_or_benign"] * 12)
    head = SimilarityGuidedHead(T, text_aligned=text_aligned(tiny), epochs=3, random_state=0).fit(tiny_images, y)
    assert head.guidance_active_ and len(head.history_) == 3


@pytest.mark.slow
def test_efficientnet_minilm_pair_is_unaligned():
    bb = create_backbone("efficientnet-lite0+minilm", device="cpu")
    assert not text_aligned(bb)
    T = class_text_embeddings(bb, load_bank("busi"))
    assert T.shape == (3, 384)
    X = np.random.default_rng(0).normal(size=(6, bb.embed_dim))
    with pytest.raises(UnalignedTextError):
        ZeroShotHead(T, text_aligned=False).fit(X, ["benign", "malignant", "normal"] * 2)
    head = SimilarityGuidedHead(T, text_aligned=False, epochs=2, random_state=0)
    head.fit(X, ["benign", "malignant", "normal"] * 2)
    assert not head.guidance_active_ and head.predict_proba(X).shape == (6, 3)
