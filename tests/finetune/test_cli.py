"""`breastclip finetune` and `breastclip explain` through typer's CliRunner."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from breastclip import RESEARCH_ONLY
from breastclip.cli import app


def test_finetune_then_explain_from_the_command_line(tiny, tmp_path):
    manifest = tiny.to_csv(tmp_path / "manifest.csv")
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["finetune", str(manifest), "--out", str(run), "--arch", "resnet18",
                                 "--no-pretrained", "--epochs", "1", "--batch-size", "8", "--image-size", "64"])
    assert r.exit_code == 0, r.output
    assert "best epoch 1" in r.output and RESEARCH_ONLY in r.output
    assert len(pd.read_csv(run / "predictions.csv")) == int((tiny.df["split"] != "train").sum())
    img = tiny.resolve(tiny.df["image"].iloc[0])
    r = CliRunner().invoke(app, ["explain", str(img), "--run", str(run), "--out", str(tmp_path / "ex"),
                                 "--target", "malignant", "--no-faithfulness"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "ex" / "explanations.csv")
    assert list(table["target"]) == ["malignant"] and (tmp_path / "ex" / table["overlay"][0]).is_file()


def test_explain_needs_exactly_one_model(tmp_path):
    r = CliRunner().invoke(app, ["explain", str(tmp_path)])
    assert r.exit_code != 0 and "--run" in r.output


def test_explain_a_clip_backbone_against_prompts(tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    r = CliRunner().invoke(app, ["explain", str(folder), "--backbone", "tiny-test", "--prompt", "a benign lesion",
                                 "--prompt", "a malignant lesion", "--out", str(tmp_path / "ex"),
                                 "--no-faithfulness", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(tmp_path / "ex" / "explanations.csv")) == 2
    r = CliRunner().invoke(app, ["explain", str(folder), "--backbone", "tiny-test", "--bank", "busi",
                                 "--target", "malignant", "--out", str(tmp_path / "ex2"), "--no-faithfulness",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert set(pd.read_csv(tmp_path / "ex2" / "explanations.csv")["target"]) == {"malignant"}
