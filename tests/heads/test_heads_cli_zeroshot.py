"""`breastclip zeroshot` end to end on a folder of generated images with the tiny random CLIP (mechanics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastclip import RESEARCH_ONLY
from breastclip.cli import app


def make_folder(root):
    rng = np.random.default_rng(0)
    for c in ("benign", "malignant", "normal"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / c / f"{c}_{i}.png")
    return root


@pytest.mark.slow
def test_zeroshot_cli_writes_predictions_gate_and_robustness(tmp_path):
    data = make_folder(tmp_path / "data")
    out = tmp_path / "res" / "zs.csv"
    args = ["zeroshot", str(data), "--bank", "busi", "--backbone", "tiny-test", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--num-workers", "0", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert RESEARCH_ONLY in result.output and "accuracy" in result.output
    pred = pd.read_csv(out)
    assert len(pred) == 9 and pred["method"].iloc[0] == "zeroshot:busi"
    assert {"p_benign", "p_malignant", "p_normal"} <= set(pred.columns)
    np.testing.assert_allclose(pred[["p_benign", "p_malignant", "p_normal"]].sum(axis=1), 1.0, atol=1e-6)
    gate = pd.read_csv(tmp_path / "res" / "zs_gate.csv")
    assert len(gate) == 9 and gate["medical_score"].between(0, 1).all()
    rob = pd.read_csv(tmp_path / "res" / "zs_robustness.csv")
    assert set(rob["kind"]) == {"template", "prompt", "ensemble"}
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in again.output


@pytest.mark.slow
def test_zeroshot_cli_explains_unaligned_backbone(tmp_path):
    data = make_folder(tmp_path / "data")
    result = CliRunner().invoke(app, ["zeroshot", str(data), "--backbone", "efficientnet-lite0+minilm",
                                      "--out", str(tmp_path / "p.csv"), "--cache-dir", str(tmp_path / "c"),
                                      "--device", "cpu", "--no-progress", "--no-gate", "--no-robustness"])
    assert result.exit_code == 2
    assert "unaligned" in result.output


def test_zeroshot_cli_unknown_bank(tmp_path):
    data = make_folder(tmp_path / "data")
    result = CliRunner().invoke(app, ["zeroshot", str(data), "--bank", "nope", "--backbone", "tiny-test",
                                      "--out", str(tmp_path / "p.csv"), "--no-progress"])
    assert result.exit_code == 2 and "unknown prompt bank" in result.output
