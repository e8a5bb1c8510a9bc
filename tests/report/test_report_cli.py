"""``breastclip report``: CSV in, bundle out; clear errors for bad input and an existing report."""

from __future__ import annotations

import json

import pytest
from report_synthetic import synthetic_predictions
from typer.testing import CliRunner

from breastclip import RESEARCH_ONLY
from breastclip.cli import app

runner = CliRunner()


def test_report_command_writes_the_bundle(tmp_path):
    pred, _ = synthetic_predictions(classes=("benign", "malignant"), methods=("probe",), n_val=30, n_test=40)
    csv = tmp_path / "pred.csv"
    pred.to_csv(csv, index=False)
    hist = tmp_path / "hist.json"
    hist.write_text(json.dumps({"probe": [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.8}]}))
    out = tmp_path / "out"
    res = runner.invoke(app, ["report", str(csv), str(out), "--n-boot", "20", "--histories", str(hist),
                              "--dataset-name", "toy"])
    assert res.exit_code == 0, res.output
    assert RESEARCH_ONLY in res.output
    assert (out / "report.html").is_file() and (out / "report.docx").is_file()
    assert (out / "figures" / "loss_curves.png").is_file()
    again = runner.invoke(app, ["report", str(csv), str(out), "--n-boot", "0"])
    assert again.exit_code == 1 and "already holds a report" in again.output


def test_report_command_names_the_bad_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\na,b\n")
    res = runner.invoke(app, ["report", str(bad), str(tmp_path / "out")])
    assert res.exit_code == 1
    assert "bad.csv" in res.output and "lacks columns" in res.output


@pytest.mark.slow
def test_report_command_with_a_manifest_runs_the_leak_audit(tmp_path):
    """A manifest written by Manifest.to_csv brings its root: the audit reads the (generated) image files."""
    import numpy as np
    from PIL import Image

    from breastclip.data.manifest import Manifest

    pred, mdf = synthetic_predictions(classes=("benign", "malignant"), methods=("probe", "weak"), n_val=24, n_test=30)
    assert (pred["y_true"] != pred["y_pred"]).any()
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in mdf["image"]:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / name)
    manifest_csv = Manifest(df=mdf, root=root, classes=["benign", "malignant"]).to_csv(tmp_path / "manifest.csv")
    csv = tmp_path / "pred.csv"
    pred.to_csv(csv, index=False)
    res = runner.invoke(app, ["report", str(csv), str(tmp_path / "out"), "--manifest", str(manifest_csv),
                              "--n-boot", "10"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["leak_audit"]["ok"] is True and m["leak_audit"]["summary"].startswith("passed on 174 images")
    assert (tmp_path / "out" / "figures" / "weak_errors.png").is_file()
