"""`breastclip evaluate` / `breastclip compare` through typer's CliRunner."""

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from breastclip.cli import app
from breastclip.predictions import make_predictions

runner = CliRunner()


def _write(tmp_path):
    rng = np.random.default_rng(0)
    n = 160
    y = rng.integers(0, 2, n)
    ids = [f"img{i:03d}" for i in range(n)]
    split = np.where(np.arange(n) < 60, "val", "test")
    frames = []
    for m, strength in (("probe", 1.5), ("zeroshot", 0.5)):
        p = 1 / (1 + np.exp(-(rng.normal(size=n) + strength * (2 * y - 1))))
        frames.append(make_predictions(ids=ids, y_true=[["benign", "malignant"][v] for v in y],
                                       proba=np.c_[1 - p, p], classes=["benign", "malignant"], method=m,
                                       split=split))
    pred_path = tmp_path / "predictions.csv"
    pd.concat(frames).to_csv(pred_path, index=False)
    manifest = pd.DataFrame({"id": ids, "image": [f"{i}.png" for i in ids], "label": "x", "patient_id": ids,
                             "split": split, "source": "t", "view": rng.choice(["CC", "MLO", ""], n)})
    man_path = tmp_path / "manifest.csv"
    manifest.to_csv(man_path, index=False)
    return pred_path, man_path


def test_evaluate_writes_json_and_refuses_to_overwrite(tmp_path):
    pred_path, man_path = _write(tmp_path)
    out = tmp_path / "ev.json"
    args = ["evaluate", str(pred_path), "--manifest", str(man_path), "--method", "probe", "--n-boot", "50",
            "--min-group-size", "10", "--policy", "youden", "--policy", "spec>=0.8", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["method"] == "probe" and [r["policy"] for r in d["operating_points"]] == ["youden", "spec>=0.8"]
    assert {r["value"] for r in d["subgroups"]} == {"CC", "MLO", "(missing)"}
    assert "research use only" in res.output.lower() and "roc_auc" in res.output
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_evaluate_reports_bad_input_clearly(tmp_path):
    pred_path, _ = _write(tmp_path)
    res = runner.invoke(app, ["evaluate", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "a.json")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["evaluate", str(pred_path), "--out", str(tmp_path / "b.json"), "--n-boot", "10"])
    assert res.exit_code == 2 and "pass method=" in res.output and not (tmp_path / "b.json").exists()


def test_compare_writes_the_paired_table(tmp_path):
    pred_path, _ = _write(tmp_path)
    out = tmp_path / "cmp.csv"
    res = runner.invoke(app, ["compare", str(pred_path), "--n-boot", "50", "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert set(table["baseline"]) == {"probe"} and "zeroshot vs probe: AUC difference" in res.output
    assert table.loc[table["metric"] == "roc_auc", "test"].item() == "DeLong"
