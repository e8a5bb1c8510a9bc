"""End-to-end fine-tuning on ~16 tiny images on CPU: predictions table, checkpoints, resume, leak-free augmentation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from breastclip.finetune import FinetuneConfig, finetune, load_finetuned
from breastclip.finetune import train as train_mod
from breastclip.finetune.dataset import decode_rows
from breastclip.predictions import classes_of, proba_of, validate_predictions

FAST = {"arch": "resnet18", "pretrained": False, "image_size": 32, "batch_size": 8}


def test_one_epoch_on_cpu_writes_predictions_and_a_loadable_checkpoint(tiny, tmp_path):
    out = tmp_path / "run"
    res = finetune(tiny, FinetuneConfig(epochs=1, **FAST), out)
    pred = validate_predictions(res.predictions)
    expected = tiny.df[tiny.df["split"].isin(["val", "test"])]
    assert sorted(pred["id"]) == sorted(expected["id"])
    assert set(pred["split"]) == {"val", "test"} and set(pred["method"]) == {"finetune-resnet18"}
    assert classes_of(pred) == tiny.classes
    assert list(res.history.columns[:3]) == ["epoch", "train_loss", "val_loss"] and len(res.history) == 1
    assert np.isfinite(res.history[["train_loss", "val_loss"]].to_numpy()).all()
    for name in ("best.safetensors", "best.json", "predictions.csv", "history.csv", "config.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "best.json").read_text())
    assert meta["architecture"] == "resnet18" and meta["classes"] == tiny.classes and meta["image_size"] == 32
    assert "research use only" in meta["research_only"].lower()
    # the saved model, rebuilt from safetensors + JSON alone, reproduces the table's probabilities
    fm = load_finetuned(out)
    rows = tiny.df.set_index("id").loc[pred["id"]]
    images = decode_rows([tiny.resolve(p) for p in rows["image"]], 32).images
    assert np.allclose(fm.predict_proba(images), proba_of(pred), atol=1e-5)
    assert pd.read_csv(out / "predictions.csv").shape == pred.shape


def test_augmentation_touches_only_training_rows(tiny, tmp_path, monkeypatch):
    decoded = decode_rows([tiny.resolve(p) for p in tiny.df["image"]], 32)
    by_split = {s: decoded.images[np.flatnonzero(tiny.df["split"].to_numpy() == s)] for s in ("train", "val", "test")}
    seen: list[torch.Tensor] = []
    real_build = train_mod.build_augment

    def spy_build(cfg):
        aug = real_build(cfg)

        def spy(x):
            seen.append(x.clone())
            return aug(x)

        return spy

    monkeypatch.setattr(train_mod, "build_augment", spy_build)
    res = finetune(tiny, FinetuneConfig(epochs=1, **FAST), tmp_path / "run")

    def member(x, bank):
        return any(torch.equal(x, b) for b in bank)

    assert len(seen) == len(by_split["train"])  # every training row once per epoch
    assert all(member(x, by_split["train"]) for x in seen)
    assert not any(member(x, by_split["val"]) or member(x, by_split["test"]) for x in seen)
    # and the val/test probabilities are those of the un-augmented images
    fm = load_finetuned(tmp_path / "run")
    ids = tiny.df["id"].to_numpy()
    for s in ("val", "test"):
        part = res.predictions[res.predictions["split"] == s].set_index("id")
        order = ids[tiny.df["split"].to_numpy() == s]
        assert np.allclose(fm.predict_proba(by_split[s]), proba_of(part.loc[order].reset_index()), atol=1e-5)


def test_minority_only_augments_only_the_minority_training_rows(make_tiny, tmp_path, monkeypatch):
    m = make_tiny(tmp_path / "img", {"benign": 12, "malignant": 6})
    labels_seen: list[int] = []
    real_cls = train_mod.ImageRows

    class Spy(real_cls):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            if not torch.equal(x, self.images[i]):
                labels_seen.append(int(y))
            return x, y

    monkeypatch.setattr(train_mod, "ImageRows", Spy)
    cfg = FinetuneConfig(epochs=1, augmentation=train_mod.AugmentConfig(minority_only=True, hflip=1.0), **FAST)
    finetune(m, cfg, tmp_path / "run")
    assert labels_seen and set(labels_seen) == {m.classes.index("malignant")}


def test_interrupted_run_resumes_exactly_and_a_different_config_is_refused(tiny, tmp_path):
    cfg = FinetuneConfig(epochs=2, **FAST)
    straight = finetune(tiny, cfg, tmp_path / "straight")

    def interrupt(stage, i, n):
        if stage.startswith("epoch 2"):
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny, cfg, out, progress=interrupt)
    again = finetune(tiny, cfg, out)
    assert again.resumed_from == 1 and list(again.history["epoch"]) == [1, 2]
    cols = ["train_loss", "val_loss"]
    assert np.allclose(again.history[cols].to_numpy(), straight.history[cols].to_numpy(), rtol=1e-4)
    assert np.allclose(proba_of(again.predictions), proba_of(straight.predictions), atol=1e-5)
    longer = finetune(tiny, FinetuneConfig(epochs=3, **FAST), out)  # same run, trained longer
    assert longer.resumed_from == 2 and len(longer.history) == 3
    with pytest.raises(FileExistsError, match="overwrite=True"):
        finetune(tiny, FinetuneConfig(epochs=1, **{**FAST, "lr": 1e-3}), out)


def test_bce_binary_head_has_one_logit_and_valid_probabilities(tiny, tmp_path):
    res = finetune(tiny, FinetuneConfig(epochs=1, loss="bce", class_weight="balanced", **FAST), tmp_path / "run")
    validate_predictions(res.predictions)
    assert json.loads((tmp_path / "run" / "best.json").read_text())["n_outputs"] == 1


def test_unsplit_manifest_and_broken_images_are_reported(tiny, tmp_path):
    unsplit = tiny.subset(tiny.df["split"] != "val")
    with pytest.raises(ValueError, match="no 'val' rows"):
        finetune(unsplit, FinetuneConfig(epochs=1, **FAST), tmp_path / "a")
    broken = tiny.resolve(tiny.df.loc[tiny.df["split"] == "train", "image"].iloc[0])
    broken.write_bytes(b"not an image")
    res = finetune(tiny, FinetuneConfig(epochs=1, **FAST), tmp_path / "b")
    assert len(res.failures) == 1 and str(broken) in res.failures[0][0]
    assert (tmp_path / "b" / "failures.csv").is_file()


def test_probabilities_and_bce_targets_for_three_classes():
    from breastclip.finetune.infer import logits_to_proba

    z = torch.tensor([[2.0, -1.0, 0.0], [0.0, 0.0, 0.0]])
    for loss in ("ce", "bce"):
        p = logits_to_proba(z, loss, 3)
        assert torch.allclose(p.sum(1), torch.ones(2)) and p[0].argmax() == 0
    one = logits_to_proba(torch.tensor([[0.0], [3.0]]), "bce", 2)
    assert torch.allclose(one[:, 1], torch.sigmoid(torch.tensor([0.0, 3.0])))
    crit = train_mod._BCE(3, 0.0, None)
    y = torch.tensor([0, 2])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.nn.functional.one_hot(y, 3).float())
    assert torch.isclose(crit(z, y), expected)
