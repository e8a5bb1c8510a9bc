"""``breastclip report``: CSV in, bundle out; clear errors for bad input and an existing report."""

from __future__ import annotations

import json

from synthetic import synthetic_predictions
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
