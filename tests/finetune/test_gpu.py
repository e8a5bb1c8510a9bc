"""CUDA + mixed precision path (skipped without a GPU)."""

from __future__ import annotations

import json

import pytest
import torch

from breastclip.explain import GradCAMExplainer, cam_model_for_finetuned
from breastclip.finetune import FinetuneConfig, finetune, load_finetuned
from breastclip.predictions import validate_predictions


@pytest.mark.gpu
def test_one_epoch_on_cuda_with_amp_and_gradcam(tiny, tmp_path):
    cfg = FinetuneConfig(arch="resnet18", pretrained=False, image_size=64, batch_size=8, epochs=2, device="cuda")
    res = finetune(tiny, cfg, tmp_path / "run")
    validate_predictions(res.predictions)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["world_size"] == 1
    fm = load_finetuned(tmp_path / "run", device="cuda")
    assert fm.device.type == "cuda"
    cm = cam_model_for_finetuned(fm)
    with GradCAMExplainer(cm) as cam:
        out = cam(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8), target="malignant")
    assert out.cams.shape == (2, 64, 64)
