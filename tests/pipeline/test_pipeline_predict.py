"""`breastclip predict`: medical gate first (the run's OOD check flags photos even without a text tower),
probabilities, the run's frozen threshold, CSV out, never overwriting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from breastclip.cli import app
from breastclip.config import load_config
from breastclip.pipeline import run_experiment
from breastclip.predict import PredictError, predict_images

QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def busi_run(shared_data, tmp_path_factory):
    """A finished run on a BUSI subset with the offline efficientnet-lite0 backbone (no text tower)."""
    tmp = tmp_path_factory.mktemp("busi_run")
    raw = {
        "backbones": ["efficientnet-lite0"],
        "experiment": {"name": "busi", "seed": 0, "output": str(tmp / "run")},
        "data": {"source": str(shared_data / "busi" / "Dataset_BUSI_with_GT"), "format": "folders", "subset": 72},
        "embed": {"cache_dir": str(tmp / "cache")},
        "methods": [{"name": "linear_probe", "head": "linear_probe", "params": {"class_weight": "balanced"}}],
        "evaluation": {"n_bootstrap": 20},
        "report": {"enabled": False},
    }
    return run_experiment(load_config(raw=raw), progress=False, console=QUIET)


@pytest.mark.realdata
@pytest.mark.slow
def test_gate_flags_photos_among_busi_images(busi_run, shared_data, tmp_path):
    out = busi_run.out_dir
    manifest = pd.read_csv(out / "manifest.csv")
    test_rows = manifest[manifest["split"] == "test"].head(6)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    root = json.loads((out / "manifest.json").read_text())["root"]
    for i, rel in enumerate(test_rows["image"]):
        shutil.copy(f"{root}/{rel}", mixed / f"busi_{i}.png")
    photos = sorted((shared_data / "medical_vs_nonmedical" / "non_medical").glob("*"))[:6]
    for p in photos:
        shutil.copy(p, mixed / f"photo_{p.name}")
    res = predict_images([mixed], out, output=tmp_path / "pred.csv")
    t = res.table.assign(name=lambda d: d["image"].map(lambda s: s.rsplit("/", 1)[-1]))
    is_photo = t["name"].str.startswith("photo_")
    assert (t.loc[is_photo, "status"] == "rejected").all(), t.loc[is_photo, ["name", "ood_score", "status"]]
    assert (t.loc[is_photo, "decision"] == "rejected by the medical-image gate").all()
    assert t.loc[is_photo, [c for c in t.columns if c.startswith("p_")]].isna().all().all()  # no probabilities
    busi = t[~is_photo]
    assert (busi["status"] == "ok").sum() >= 4, busi[["name", "ood_score", "ood_threshold"]]
    ok = busi[busi["status"] == "ok"]
    assert ok["decision"].isin(["benign", "malignant", "normal"]).all()
    assert (t.loc[is_photo, "ood_score"].min() > ok["ood_score"].max())
    assert (tmp_path / "pred.csv").is_file() and json.loads((tmp_path / "pred.json").read_text())["notice"]
    with pytest.raises(PredictError, match="never overwrites"):
        predict_images([mixed], out, output=tmp_path / "pred.csv")


@pytest.mark.realdata
@pytest.mark.slow
def test_predict_cli_and_errors(busi_run, shared_data, tmp_path):
    out = busi_run.out_dir
    img = next((shared_data / "busi" / "Dataset_BUSI_with_GT" / "benign").glob("*).png"))
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(img), "--run", str(out), "-o", str(tmp_path / "one.csv")])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "one.csv").iloc[0]
    board = pd.read_csv(out / "leaderboard.csv")
    assert row["method"] == "linear_probe" == board.loc[board["selected"], "method"].item()
    # 3 classes, positive class 'malignant' (the default): the run's frozen one-vs-rest threshold decides, as the
    # README says; below it, the most probable other class
    op = json.loads((out / "methods" / "linear_probe" / "operating_point.json").read_text())
    assert op["positive_class"] == "malignant" and row["threshold"] == pytest.approx(op["threshold"])
    assert row["policy"] == "youden" and row["rule"].startswith("malignant when p_malignant >= ")
    assert row["rule"].endswith("else the most probable other class")
    other = max(("benign", "normal"), key=lambda c: row[f"p_{c}"])
    assert row["decision"] == ("malignant" if row["p_malignant"] >= op["threshold"] else other)
    sidecar = json.loads((tmp_path / "one.json").read_text())
    assert sidecar["method"] == "linear_probe" and "val_roc_auc" in sidecar["method_chosen_by"]
    assert not Path(sidecar["run"]).is_absolute()  # the run as seen from the sidecar, no local absolute path
    assert (tmp_path / sidecar["run"]).resolve() == out.resolve() or sidecar["run"] == out.name
    res = runner.invoke(app, ["predict", str(img), "--run", str(out), "--method", "nope"])
    assert res.exit_code == 2 and "not in this run" in res.output
    res = runner.invoke(app, ["predict", str(tmp_path / "missing.png"), "--run", str(out)])
    assert res.exit_code == 2 and "do not exist" in res.output
    res = runner.invoke(app, ["predict", str(img), "--run", str(tmp_path)])
    assert res.exit_code == 2 and "not a breastclip results folder" in res.output


def test_decision_rule_binary_and_multiclass_as_the_readme_says(tmp_path):
    """The frozen one-vs-rest threshold decides for the positive class (binary and multi-class alike); below it the
    most probable other class; without a usable threshold (not attainable on validation) the most probable class."""
    import numpy as np

    from breastclip.predict import RunArtifacts, _decide

    classes = ["benign", "malignant", "normal"]
    proba = np.array([[0.50, 0.40, 0.10],   # p_malignant >= 0.35: malignant, though benign is the argmax
                      [0.30, 0.30, 0.40],   # below: the most probable other class (normal)
                      [0.65, 0.34, 0.01],   # below: benign
                      [np.nan] * 3])        # rejected by the gate
    table = pd.DataFrame({"status": ["ok", "ok", "ok", "rejected"]})
    keep = np.array([True, True, True, False])
    op = {"policy": "youden", "positive_class": "malignant", "threshold": 0.35}
    run = RunArtifacts(tmp_path, None, "m", {}, classes, op)
    _decide(run, proba, keep, table)
    assert table["decision"].tolist() == ["malignant", "normal", "benign", "rejected by the medical-image gate"]
    assert (table["policy"] == "youden").all() and (table["threshold"] == 0.35).all()
    assert table["rule"].iloc[0] == ("malignant when p_malignant >= 0.350 (frozen on validation), else the most "
                                     "probable other class")
    # binary: the other class below the threshold
    t2 = pd.DataFrame({"status": ["ok", "ok"]})
    _decide(RunArtifacts(tmp_path, None, "m", {}, ["benign", "malignant"], op),
            np.array([[0.62, 0.38], [0.7, 0.3]]), np.array([True, True]), t2)
    assert t2["decision"].tolist() == ["malignant", "benign"]
    # not attainable on validation: argmax, and the policy column says why
    t3 = pd.DataFrame({"status": ["ok"]})
    note = "policy 'spec>=0.90' is not attainable on the validation split"
    _decide(RunArtifacts(tmp_path, None, "m", {}, classes, {**op, "threshold": None, "note": note}),
            proba[:1], np.array([True]), t3)
    assert t3["decision"].tolist() == ["benign"] and note in t3["policy"].iloc[0] and t3["threshold"].isna().all()


def _mixed_folder(busi_run, shared_data, tmp_path, n=3):
    out = busi_run.out_dir
    manifest = pd.read_csv(out / "manifest.csv")
    root = json.loads((out / "manifest.json").read_text())["root"]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, rel in enumerate(manifest[manifest["split"] == "test"]["image"].head(n)):
        shutil.copy(f"{root}/{rel}", mixed / f"busi_{i}.png")
    for p in sorted((shared_data / "medical_vs_nonmedical" / "non_medical").glob("*"))[:n]:
        shutil.copy(p, mixed / f"photo_{p.name}")
    return mixed


@pytest.mark.realdata
@pytest.mark.slow
def test_rejections_say_which_check_the_score_the_threshold_and_what_it_means(busi_run, shared_data, tmp_path):
    from breastclip.data.images import pixel_size

    res = predict_images([_mixed_folder(busi_run, shared_data, tmp_path)], busi_run.out_dir,
                         output=tmp_path / "gate.csv")
    t = res.table
    rejected = t[t["status"] == "rejected"]
    assert len(rejected) >= 2
    for _, r in rejected.iterrows():
        assert r["gate_check"] == "out-of-distribution check"
        assert f"OOD score {r['ood_score']:.3f} > threshold {r['ood_threshold']:.3f}" in r["gate_explanation"]
        assert "the run was trained on 256x256-px Dataset_BUSI_with_GT images (benign, malignant, normal)" in r["gate_explanation"]
        w, h = pixel_size(r["image"])
        assert (f"this image is {w}x{h} px" in r["gate_explanation"]) == ((w, h) != (256, 256))
    assert (t.loc[t["status"] == "ok", "gate_explanation"] == "").all()
    assert (t["gate"] == "applied").all()


@pytest.mark.realdata
@pytest.mark.slow
def test_no_gate_overrides_knowingly_and_is_recorded(busi_run, shared_data, tmp_path):
    folder = _mixed_folder(busi_run, shared_data, tmp_path)
    gated = predict_images([folder], busi_run.out_dir, output=tmp_path / "gated.csv").table
    res = CliRunner().invoke(app, ["predict", str(folder), "--run", str(busi_run.out_dir), "--no-gate",
                                   "-o", str(tmp_path / "open.csv")])
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp_path / "open.csv", keep_default_na=False)
    assert (t["status"] == "ok").all() and (t["gate"] == "overridden (--no-gate)").all()
    would = t["gate_overridden"].astype(str) == "True"
    assert would.tolist() == (gated["status"] == "rejected").tolist()
    assert t.loc[would, "gate_explanation"].str.startswith("would have been rejected: OOD score").all()
    assert not t.loc[would, "decision"].str.startswith("rejected").any()  # classified, as the user asked
    side = json.loads((tmp_path / "open.json").read_text())
    assert side["gate"] is False and side["gate_would_have_rejected"] == int(would.sum()) >= 2
    assert "--no-gate" in side["gate_overridden"] and "would have rejected" in res.output


@pytest.mark.realdata
@pytest.mark.slow
def test_predict_lists_the_most_similar_training_images(busi_run, shared_data, tmp_path):
    folder = _mixed_folder(busi_run, shared_data, tmp_path, n=2)
    res = predict_images([folder], busi_run.out_dir, output=tmp_path / "nn.csv", neighbours=3)
    manifest = pd.read_csv(busi_run.out_dir / "manifest.csv").set_index("id")
    t = res.table
    for r in (1, 2, 3):
        ids = t[f"neighbour_{r}_id"]
        assert (manifest.loc[ids, "split"] == "train").all()
        assert (manifest.loc[ids, "label"].to_numpy() == t[f"neighbour_{r}_label"].to_numpy()).all()
    assert (t["neighbour_1_similarity"] >= t["neighbour_2_similarity"]).all()
    long = pd.read_csv(tmp_path / "nn_neighbours.csv")
    assert len(long) == 3 * len(t) and set(long["backbone"]) == {"efficientnet-lite0"}
    # a BUSI test image's nearest training image is closer than any photo's
    is_photo = t["image"].str.contains("photo_")
    assert t.loc[~is_photo, "neighbour_1_similarity"].min() > t.loc[is_photo, "neighbour_1_similarity"].max()
