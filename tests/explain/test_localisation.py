"""Pointing game / energy in the lesion mask, standalone and through explain_images with synthetic masks."""

from __future__ import annotations

import numpy as np
import pytest

from breastclip.explain import cam_model_for_finetuned, explain_images, localisation_scores
from breastclip.finetune import FinetunedModel, build_model


def test_localisation_scores_known_answers():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 2:4] = True
    inside = np.zeros((10, 10), np.float32)
    inside[3, 3] = 1.0
    assert localisation_scores(inside, mask) == {"pointing_hit": 1.0, "energy_in_mask": 1.0, "mask_fraction": 0.04}
    uniform = np.ones((10, 10), np.float32)
    assert localisation_scores(uniform, mask)["energy_in_mask"] == pytest.approx(0.04)  # chance level
    outside = np.zeros((10, 10), np.float32)
    outside[8, 8] = 1.0
    s = localisation_scores(outside, mask)
    assert s["pointing_hit"] == 0.0 and s["energy_in_mask"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        localisation_scores(uniform, mask[:5])


def test_explain_images_reports_localisation_with_synthetic_masks(tmp_path):
    from breastclip.data.synthetic import make_synthetic

    m = make_synthetic(tmp_path / "syn", n_patients=2, images_per_patient=1, size=64, masks=True)
    paths = m.paths()
    masks = [p.with_name(p.stem + "_mask.png") for p in paths]
    assert all(q.is_file() for q in masks)
    fm = FinetunedModel.wrap(build_model("resnet18", 2, pretrained=False), "resnet18", m.classes, image_size=64)
    res = explain_images(paths, cam_model_for_finetuned(fm), tmp_path / "out", masks=masks, faithfulness=False)
    assert {"pointing_hit", "energy_in_mask", "mask_fraction"} <= set(res.table.columns)
    assert ((res.table["mask_fraction"] > 0) & (res.table["mask_fraction"] < 1)).all()
    with pytest.raises(ValueError, match="one \\(or None\\) per image"):
        explain_images(paths, cam_model_for_finetuned(fm), tmp_path / "o2", masks=masks[:1])
