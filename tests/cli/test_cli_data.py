"""`breastclip data inspect` and `breastclip data split` through typer's CliRunner."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from breastclip import RESEARCH_ONLY
from breastclip.cli import app
from breastclip.data.manifest import Manifest

runner = CliRunner()


@pytest.mark.realdata
def test_inspect_busi_reports_the_class_counts(shared_data):
    result = runner.invoke(app, ["data", "inspect", str(shared_data / "busi" / "Dataset_BUSI_with_GT")])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    for cls, n in (("benign", 437), ("malignant", 210), ("normal", 133)):
        assert f"{cls} │ {n} │ {n}" in out
    assert "(folders)" in out and "every image is its own group" in out and "no problems found" in out
    assert RESEARCH_ONLY in out
    js = runner.invoke(app, ["data", "inspect", str(shared_data / "busi" / "Dataset_BUSI_with_GT"), "--json"])
    assert json.loads(js.output)["classes"] == {"benign": 437, "malignant": 210, "normal": 133}


@pytest.mark.realdata
def test_inspect_with_format_and_reader_options(shared_data):
    result = runner.invoke(app, ["data", "inspect", str(shared_data / "breakhis_samples"), "--format", "breakhis",
                                 "-O", "labels=subtype", "-O", "magnification=40,100", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["format"] == "breakhis" and summary["images"] == 10 and len(summary["classes"]) == 8
    assert summary["metadata"]["magnification"]["top"] == {"40X": 9, "100X": 1}
    assert summary["patients"] == 9 and summary["patient_ids_from_source"] is True


@pytest.mark.realdata
def test_inspect_cbis_metadata_without_images_lists_the_missing_files(shared_data):
    result = runner.invoke(app, ["data", "inspect", str(shared_data / "cbis_ddsm_metadata")])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "3103 of 3103 image files missing" in out and "... and" in out
    ok = runner.invoke(app, ["data", "inspect", str(shared_data / "cbis_ddsm_metadata"), "--no-check-files",
                             "--no-audit", "--json"])
    assert json.loads(ok.output)["classes"] == {"benign": 1728, "malignant": 1375}


def test_inspect_unknown_layout_and_bad_option(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing")
    result = runner.invoke(app, ["data", "inspect", str(tmp_path)])
    assert result.exit_code == 2
    assert "cannot tell the layout" in result.output and "cbis_ddsm" in result.output and "folders" in result.output
    bad = runner.invoke(app, ["data", "inspect", str(tmp_path), "-O", "labels"])
    assert bad.exit_code == 2 and "not key=value" in bad.output


def _synthetic(tmp_path):
    from breastclip.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "syn", n_patients=12, images_per_patient=2, size=32)
    return tmp_path / "syn"


def test_split_writes_manifest_sidecar_and_audit_and_refuses_to_overwrite(tmp_path):
    src = _synthetic(tmp_path)
    out = tmp_path / "out" / "manifest.csv"
    result = runner.invoke(app, ["data", "split", str(src), "-o", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "leak audit passed" in result.output and RESEARCH_ONLY in result.output
    m = Manifest.from_csv(out).validate()
    assert set(m.df["split"]) == {"train", "val", "test"} and m.patient_ids_from_source
    assert m.df.groupby("patient_id")["split"].nunique().max() == 1  # no patient in two parts
    shown = runner.invoke(app, ["data", "inspect", str(out), "--json", "--no-audit"])  # the written manifest reads back
    assert shown.exit_code == 0 and json.loads(shown.output)["splits"] == m.summary()["splits"]
    audit = json.loads((tmp_path / "out" / "manifest.audit.json").read_text())
    assert audit["ok"] is True and audit["seed"] == 3 and audit["notice"] == RESEARCH_ONLY
    before = out.read_bytes()
    again = runner.invoke(app, ["data", "split", str(src), "-o", str(out), "--seed", "4"])
    assert again.exit_code == 2 and "already exist" in again.output and out.read_bytes() == before
    forced = runner.invoke(app, ["data", "split", str(src), "-o", str(out), "--seed", "3", "--force"])
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() == before  # same seed, same split


def test_split_refuses_a_leaking_official_split(tmp_path):
    src = _synthetic(tmp_path)
    table = pd.read_csv(src / "labels.csv")
    table["split"] = ["train" if i % 2 else "test" for i in range(len(table))]  # each patient in both parts
    table.to_csv(src / "labels.csv", index=False)
    out = tmp_path / "leaky.csv"
    result = runner.invoke(app, ["data", "split", str(src), "-o", str(out)])
    assert result.exit_code == 1 and "leak audit FAILED" in result.output and "manifest not written" in result.output
    assert not out.exists()
    audit = json.loads((tmp_path / "leaky.audit.json").read_text())
    assert audit["ok"] is False and audit["patients_in_several_parts"]
    # the refused attempt left only its audit file: a retry may replace it without --force
    resplit = runner.invoke(app, ["data", "split", str(src), "-o", str(out), "--no-keep-official"])
    assert resplit.exit_code == 0, resplit.output
    assert out.is_file()


def test_split_rejects_bad_fractions_and_invalid_sources(tmp_path):
    src = _synthetic(tmp_path)
    bad = runner.invoke(app, ["data", "split", str(src), "-o", str(tmp_path / "m.csv"), "--fractions", "0.5,0.5"])
    assert bad.exit_code == 2 and "three fractions" in bad.output
    for f in sorted((src / "malignant").glob("*.png"))[:2]:
        f.unlink()
    broken = runner.invoke(app, ["data", "split", str(src), "-o", str(tmp_path / "m.csv")])
    assert broken.exit_code == 1 and "image files missing" in broken.output
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.realdata
def test_unknown_reader_option_is_named(shared_data):
    result = runner.invoke(app, ["data", "inspect", str(shared_data / "breakhis_samples"), "-O", "magnificaton=40"])
    assert result.exit_code == 2
    assert "reader 'breakhis' has no option ['magnificaton']" in result.output and "magnification" in result.output


def test_split_near_duplicate_policy_option(tmp_path):
    """A resized JPEG copy of a training image under another patient: warned by default (the manifest is written,
    the warning names the option), refused with --near-duplicates refuse, a bad value named."""
    from PIL import Image

    src = _synthetic(tmp_path)
    table = pd.read_csv(src / "labels.csv")
    first = table.iloc[0]
    im = Image.open(src / first["image"]).convert("RGB")
    im.resize((im.width + 16, im.height + 16)).save(src / "copy.jpg", quality=90)
    extra = {**first.to_dict(), "image": "copy.jpg", "patient_id": "someone-else"}
    pd.concat([table, pd.DataFrame([extra])], ignore_index=True).to_csv(src / "labels.csv", index=False)
    out = tmp_path / "m.csv"
    warned = runner.invoke(app, ["data", "split", str(src), "-o", str(out), "--group-duplicates"])
    assert warned.exit_code == 0, warned.output
    bad = runner.invoke(app, ["data", "split", str(src), "-o", str(tmp_path / "b.csv"), "--near-duplicates", "maybe"])
    assert bad.exit_code != 0 and "near_duplicates" in bad.output
    for seed in range(8):  # find a seed that puts the copy and its original in different parts
        o = tmp_path / f"s{seed}.csv"
        res = runner.invoke(app, ["data", "split", str(src), "-o", str(o), "--seed", str(seed)])
        audit = json.loads((tmp_path / f"s{seed}.audit.json").read_text())
        if audit["near_duplicates"]:
            assert res.exit_code == 0 and 'split.options.near_duplicates = "refuse"' in res.output
            assert audit["contact_sheet"] == f"s{seed}.pairs.png" and (tmp_path / f"s{seed}.pairs.png").is_file()
            refused = runner.invoke(app, ["data", "split", str(src), "-o", str(tmp_path / "r.csv"), "--seed",
                                          str(seed), "--near-duplicates", "refuse"])
            assert refused.exit_code == 1 and "near-duplicate" in refused.output
            break
    else:
        pytest.fail("no seed separated the copy from its original")


def test_inspect_says_it_did_not_decode_and_decode_finds_broken_files(tmp_path):
    import numpy as np
    from PIL import Image

    for cls in ("benign", "malignant"):
        for i in range(2):
            (tmp_path / cls).mkdir(exist_ok=True)
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "benign" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    r = runner.invoke(app, ["data", "inspect", str(tmp_path), "--no-audit"])
    assert r.exit_code == 0 and "images not decoded" in r.output and "--decode" in r.output
    r = runner.invoke(app, ["data", "inspect", str(tmp_path), "--decode", "--no-audit"])
    assert r.exit_code == 1, r.output
    assert "1 image(s) could not be decoded" in r.output and "benign/broken.png" in r.output
