"""Grad-CAM overlays for a CNN and for the tiny CLIP ViT / ResNet towers, token reshape, faithfulness figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from breastclip import RESEARCH_ONLY
from breastclip.explain import (
    CamModel,
    GradCAMExplainer,
    SimilarityScores,
    cam_model_for_backbone,
    cam_model_for_finetuned,
    default_target_layers,
    explain_images,
    vit_reshape_transform,
)
from breastclip.finetune import FinetunedModel, build_model

FAST_FRACTIONS = (0.25, 0.5)


def test_vit_reshape_drops_the_class_token_and_restores_the_grid():
    n, gh, gw, d = 2, 3, 4, 5
    patches = torch.arange(n * gh * gw * d, dtype=torch.float32).reshape(n, gh, gw, d)
    cls = torch.full((n, 1, d), -1.0)
    tokens = torch.cat([cls, patches.reshape(n, gh * gw, d)], dim=1)  # (N, L, D)
    out = vit_reshape_transform((gh, gw))(tokens)
    assert out.shape == (n, d, gh, gw)
    assert torch.equal(out, patches.permute(0, 3, 1, 2))
    lnd = vit_reshape_transform((gh, gw), batch_first=False)(tokens.transpose(0, 1))  # (L, N, D) layout
    assert torch.equal(lnd, out)
    assert vit_reshape_transform()(torch.zeros(1, 1 + 16, 3)).shape == (1, 3, 4, 4)  # grid inferred


def test_tiny_clip_vit_overlays_targeted_at_a_text_prompt(two_pngs, tmp_path):
    from breastclip.backbones import create_backbone

    bb = create_backbone("tiny-test", device="cpu")
    prompts = ["an ultrasound of a benign breast lesion", "an ultrasound of a malignant breast lesion"]
    cm = cam_model_for_backbone(bb, prompts)
    assert cm.target_layers[0] is bb.image_model.transformer.resblocks[-1].ln_1
    res = explain_images(two_pngs, cm, tmp_path / "out", target=prompts[1], fractions=FAST_FRACTIONS)
    assert list(res.table["target"]) == [prompts[1]] * 2
    for name in res.table["overlay"]:
        png = Image.open(tmp_path / "out" / name)
        assert png.size == (32, 32) and png.mode == "RGB"
        assert png.text["Target"] == prompts[1] and png.text["Disclaimer"] == RESEARCH_ONLY
    # the similarity in the table is the tower's own cosine similarity to the prompt embedding
    x = torch.stack([cm.prepare(np.asarray(Image.open(p).convert("RGB"))) for p in two_pngs])
    emb = bb.encode_images(x)
    txt = bb.encode_text([prompts[1]])[0]
    assert np.allclose(res.table["cosine similarity"], emb @ txt, atol=1e-4)
    assert (tmp_path / "out" / "faithfulness.png").is_file()
    assert res.curves.cam_scores.shape == (2, 1 + len(FAST_FRACTIONS))
    assert pd.read_csv(tmp_path / "out" / "explanations.csv").shape[0] == 2
    with pytest.raises(FileExistsError):
        explain_images(two_pngs, cm, tmp_path / "out")


def test_maps_follow_the_target_and_hooks_are_released():
    from breastclip.backbones import create_backbone

    bb = create_backbone("tiny-test", device="cpu")
    cm = cam_model_for_backbone(bb, ["a benign lesion", "a malignant lesion"])
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with GradCAMExplainer(cm) as cam:
        a, b = cam(x, target=0), cam(x, target=1)
        top = cam(x)
    assert a.cams.shape == (2, 32, 32) and 0 <= a.cams.min() and a.cams.max() <= 1
    assert not np.allclose(a.cams, b.cams)  # different prompts, different evidence
    assert list(top.targets) == list(top.scores.argmax(1))
    layer = cm.target_layers[0]
    assert not layer._forward_hooks  # released on exit
    with pytest.raises(RuntimeError, match="context manager"):
        GradCAMExplainer(cm)(x)


def test_clip_modified_resnet_tower_uses_layer4():
    import open_clip

    clip = open_clip.CLIP(embed_dim=16, vision_cfg={"image_size": 64, "layers": [1, 1, 1, 1], "width": 16,
                                                    "head_width": 8},
                          text_cfg={"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1})
    visual = clip.visual.eval().requires_grad_(False)  # frozen, as breastclip backbones are
    layers, reshape = default_target_layers(visual)
    assert layers == [visual.layer4] and reshape is None
    targets = torch.randn(3, 16)
    cm = CamModel(model=SimilarityScores(visual, targets), target_layers=layers, labels=["a", "b", "c"],
                  prepare=lambda im: torch.from_numpy(im).permute(2, 0, 1), normalize=lambda u: u.float() / 255,
                  score_kind="cosine similarity")
    with GradCAMExplainer(cm) as cam:
        out = cam(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8), target="c")
    assert out.cams.shape == (1, 64, 64) and out.targets.tolist() == [2]
    assert np.isfinite(out.cams).all()


def test_cnn_overlays_with_real_efficientnet_lite_weights(two_pngs, tmp_path):
    model = build_model("efficientnet-lite0", 1000, pretrained=True)  # real ImageNet classifier
    fm = FinetunedModel.wrap(model, "efficientnet-lite0", [f"c{i}" for i in range(1000)], image_size=96)
    res = explain_images(two_pngs, cam_model_for_finetuned(fm), tmp_path / "out", fractions=FAST_FRACTIONS)
    assert len(res.table) == 2 and (res.table["target"] == res.table["top_output"]).all()
    assert all((tmp_path / "out" / n).is_file() for n in res.table["overlay"])
    assert (res.table["map_std"] > 0.01).all()
    assert np.isfinite(res.table[["deletion_auc_gradcam", "deletion_auc_random"]].to_numpy()).all()
    assert (tmp_path / "out" / "faithfulness.json").is_file()


def test_bce_checkpoint_explains_both_classes_and_bad_files_are_reported(two_pngs, tmp_path):
    model = build_model("resnet18", 1, pretrained=False)
    fm = FinetunedModel.wrap(model, "resnet18", ["benign", "malignant"], image_size=64, loss="bce")
    cm = cam_model_for_finetuned(fm)
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    res = explain_images([*two_pngs, bad], cm, tmp_path / "out", target="benign", faithfulness=False)
    assert len(res.table) == 2 and len(res.failures) == 1 and "broken.png" in res.failures[0][0]
    with torch.no_grad():
        p = cm.scores(cm.model(cm.normalize(torch.stack([cm.prepare(np.asarray(Image.open(q).convert("RGB")))
                                                          for q in two_pngs]))))
    assert np.allclose(p.sum(1).numpy(), 1) and np.allclose(res.table["probability"], p[:, 0].numpy(), atol=1e-5)


def test_prompt_targets_need_a_shared_space():
    from breastclip.backbones import create_backbone

    bb = create_backbone("tiny-test", device="cpu")
    with pytest.raises(ValueError, match="dimensions"):
        cam_model_for_backbone(bb, target_embeddings=np.ones((2, bb.embed_dim + 1)))
    with pytest.raises(ValueError, match="prompts"):
        cam_model_for_backbone(bb)


def test_hugging_face_clip_vision_tower_gets_a_token_reshape():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from breastclip.backbones.hf_clip import HFImageTower

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=16)
    hf = CLIPVisionModelWithProjection(cfg).eval()
    tower = HFImageTower(hf.vision_model, hf.visual_projection).requires_grad_(False)
    layers, reshape = default_target_layers(tower)
    assert layers == [tower.vision_model.encoder.layers[-1].layer_norm1]
    cm = CamModel(model=SimilarityScores(tower, torch.randn(2, 16)), target_layers=layers, labels=["a", "b"],
                  prepare=lambda im: torch.from_numpy(im).permute(2, 0, 1), normalize=lambda u: u.float() / 255,
                  reshape_transform=reshape, score_kind="cosine similarity")
    with GradCAMExplainer(cm) as cam:
        out = cam(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), target=1)
    assert out.cams.shape == (2, 32, 32) and np.isfinite(out.cams).all()


@pytest.mark.slow
def test_image_only_backbone_targets_an_image_space_embedding(two_pngs, tmp_path):
    """efficientnet-lite0 (real weights, no text tower): explain similarity to a reference image's embedding."""
    from breastclip.backbones import create_backbone

    bb = create_backbone("efficientnet-lite0", device="cpu", precision="fp32")
    with pytest.raises(ValueError, match="image-only"):
        cam_model_for_backbone(bb, ["a malignant lesion"])
    ref = cam_model_for_backbone(bb, target_embeddings=np.ones((1, bb.embed_dim)))  # to reach prepare()
    x = ref.prepare(np.asarray(Image.open(two_pngs[0]).convert("RGB")))[None]
    cm = cam_model_for_backbone(bb, target_embeddings=bb.encode_images(x), labels=["reference lesion"])
    assert cm.target_layers[0] is bb.image_model.net._conv_head
    res = explain_images(two_pngs, cm, tmp_path / "out", fractions=(0.5,))
    assert res.table["cosine similarity"].iloc[0] == pytest.approx(1.0, abs=1e-4)  # itself
    # The reference image sits at the maximum of its own cosine similarity, where the gradient (and so the map) is
    # zero once explain decodes it exactly as prepare() did; the other image must get a non-uniform map.
    assert res.table["cosine similarity"].iloc[1] < 0.999
    assert res.table["map_std"].iloc[1] > 0


def test_breast_crop_backbone_explains_the_cropped_pixels_it_embedded(tmp_path):
    """A backbone embedded with ``breast_crop`` (mammography) is explained on the crop the embeddings saw, not on
    the whole canvas: Grad-CAM's input equals ``prepare_image`` (crop, then resize), in a run and in predict."""
    from breastclip.backbones import create_backbone
    from breastclip.backbones.preprocess import prepare_image, resize_crop

    canvas = np.zeros((300, 400, 3), np.uint8)
    yy, xx = np.mgrid[:300, :400]
    canvas[((yy - 150) ** 2 / 120**2 + xx**2 / 160**2) < 1] = 170  # a breast against the left edge
    canvas[20:30, 350:390] = 255  # a burned-in label on the right
    bb = create_backbone("tiny-test", device="cpu", precision="fp32", breast_crop=True)
    cm = cam_model_for_backbone(bb, target_embeddings=np.ones((1, bb.embed_dim)))
    got = cm.prepare(canvas).numpy()
    assert np.array_equal(got, prepare_image(canvas, bb.entry))
    assert not np.array_equal(got, resize_crop(canvas, bb.entry))  # the uncropped canvas differs


def test_a_runs_embedding_set_builds_its_backbone_with_the_runs_crop(tmp_path):
    from breastclip.config import load_config
    from breastclip.data.synthetic import make_synthetic
    from breastclip.pipeline.embed_step import embed_all

    m = make_synthetic(tmp_path / "d", n_patients=4, images_per_patient=1, size=48, seed=0)
    cfg = load_config(raw={"backbones": ["tiny-test"], "data": {"source": str(tmp_path / "d"), "format": "synthetic"},
                           "embed": {"cache_dir": str(tmp_path / "c"), "options": {"breast_crop": True}},
                           "methods": [{"name": "lp", "head": "linear_probe"}]})
    s = embed_all(cfg, m, progress=False)["tiny-test"]
    assert s.entry.breast_crop and s.backbone.entry.breast_crop
