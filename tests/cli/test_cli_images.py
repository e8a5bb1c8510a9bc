"""`breastclip data synthetic` and `breastclip data check-images` through typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from breastclip import RESEARCH_ONLY
from breastclip.cli import app
from breastclip.data.manifest import Manifest

runner = CliRunner()


def test_synthetic_writes_the_set_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "syn"
    result = runner.invoke(app, ["data", "synthetic", str(out), "--patients", "6", "--size", "32", "--normal"])
    assert result.exit_code == 0, result.output
    assert "wrote 12 images of 6 patients (normal 2, benign 2, malignant 2)" in result.output
    assert RESEARCH_ONLY in result.output
    assert (out / "labels.csv").is_file() and len(list(out.rglob("*.png"))) == 12
    again = runner.invoke(app, ["data", "synthetic", str(out), "--patients", "6", "--size", "32", "--normal"])
    assert again.exit_code == 0  # identical content: nothing to do
    other = runner.invoke(app, ["data", "synthetic", str(out), "--patients", "6", "--size", "32", "--seed", "1",
                                "--normal"])
    assert other.exit_code == 2 and "exists with different content" in other.output


def test_check_images_reports_failures(tmp_path):
    out = tmp_path / "syn"
    runner.invoke(app, ["data", "synthetic", str(out), "--patients", "4", "--size", "32"])
    (out / "benign" / "broken.png").write_bytes(b"")
    (out / "benign" / "notes.txt").write_text("ignored: not an image suffix")
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["data", "check-images", str(out), "-o", str(report)])
    assert result.exit_code == 1
    assert "checked 9 image(s): 8 decoded" in result.output and "broken.png: zero-byte" in result.output
    data = json.loads(report.read_text())
    assert data["failed"] == 1 and data["failures"][0]["path"].endswith("broken.png")
    (out / "benign" / "broken.png").unlink()
    ok = runner.invoke(app, ["data", "check-images", str(out), "--size", "16", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["failed"] == 0


def test_check_images_without_images(tmp_path):
    result = runner.invoke(app, ["data", "check-images", str(tmp_path)])
    assert result.exit_code == 2 and "no image files found" in result.output


def test_synthetic_output_reads_back_as_csv_manifest(tmp_path):
    out = tmp_path / "syn"
    runner.invoke(app, ["data", "synthetic", str(out), "--patients", "4", "--size", "32"])
    m = Manifest.from_records(__import__("pandas").read_csv(out / "labels.csv"), out, name="s", source="csv")
    m.validate()
    assert m.patient_ids_from_source and len(m) == 8
