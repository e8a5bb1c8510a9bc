"""Every example config runs here, unedited, through `breastclip run` overrides: on the real data in
../shared/data where we have the layout, on the synthetic set where we do not, on tiny subsets with small
backbones (tiny-test, or the offline efficientnet-lite0 through --offline) and few epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from breastclip.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY = ['backbones=["tiny-test"]', "evaluation.n_bootstrap=20", "report.enabled=false"]


@pytest.fixture
def run_example(embed_cache, monkeypatch, tmp_path):
    """`breastclip run examples/<file>` with one embedding cache for the session (as a user's runs share
    ~/.cache/breastclip); the --synthetic set is generated under tmp_path."""
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "user_cache"))

    def run(where: Path, example: str, *args: str) -> Path:
        out = where / "out"
        argv = ["run", str(EXAMPLES / example), "-o", str(out), "--quiet", "--set", f"embed.cache_dir={embed_cache}",
                *args]
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 0, res.output + repr(res.exception)
        assert json.loads((out / "run_state.json").read_text())["complete"] is True
        return out

    return run


def _sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def _methods(out: Path) -> set[str]:
    return set(pd.read_csv(out / "leaderboard.csv")["method"])


@pytest.mark.slow
def test_cbis_ddsm_similarity_guided_on_synthetic(tmp_path, run_example):
    out = run_example(tmp_path, "cbis_ddsm_similarity_guided.toml", "--synthetic", "--subset", "48",
               *_sets(*TINY, "methods.similarity_guided.params.epochs=2"))
    assert _methods(out) == {"zeroshot", "linear_probe", "similarity_guided"}
    ops = json.loads((out / "methods" / "similarity_guided" / "operating_point.json").read_text())
    assert ops["policy"] == "sens>=0.90" and ops["positive_class"] == "malignant"
    metrics = json.loads((out / "metrics.json").read_text())["methods"]["linear_probe"]
    assert {p["policy"] for p in metrics["operating_points"]} == {"youden", "sens>=0.90", "spec>=0.90", "cost=5"}
    assert "subgroup column(s)" in (out / "run_state.json").read_text()  # CBIS metadata absent from synthetic


@pytest.mark.slow
@pytest.mark.realdata
def test_breakhis_on_the_shared_samples(shared_data, tmp_path, run_example):
    """12 real BreakHis files (9 patients): 8 classes cannot fill a patient-grouped train/val/test split, so the
    8-class run goes on with the audit's warning and without the CNN (which needs validation rows); the binary
    run (patients split cleanly) runs every method, the ResNet50 baseline included."""
    source = f"data.source={shared_data / 'breakhis_samples' / 'images'}"
    out = run_example(tmp_path / "eight", "breakhis_8class.toml", "--methods", "zeroshot,logistic_regression,fc",
               *_sets(*TINY, source, 'split.on_leak="warn"', "methods.fc.params.epochs=2"))
    assert _methods(out) == {"zeroshot", "logistic_regression", "fc"}
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest["label"].nunique() == 8 and len(manifest) == 12
    assert json.loads((out / "leak_audit.json").read_text())["ok"] is False  # said, not hidden
    out = run_example(tmp_path / "binary", "breakhis_8class.toml", *_sets(
        *TINY, source, 'data.options.labels="binary"', 'methods.zeroshot.prompts="breakhis_binary"',
        "methods.fc.params.epochs=2", "methods.resnet50.params.epochs=1", "methods.resnet50.params.pretrained=false",
        "methods.resnet50.params.image_size=64", "methods.resnet50.params.batch_size=4"))
    assert _methods(out) == {"zeroshot", "logistic_regression", "fc", "resnet50"}
    assert set(pd.read_csv(out / "manifest.csv")["label"]) == {"benign", "malignant"}


@pytest.mark.slow
@pytest.mark.realdata
def test_dbt_mlp_on_busi_folders_offline(shared_data, tmp_path, run_example):
    out = run_example(tmp_path, "dbt_mlp_focal.toml", "--offline", "--subset", "60", *_sets(
        "evaluation.n_bootstrap=20", "report.enabled=false",
        f"data.source={shared_data / 'busi' / 'Dataset_BUSI_with_GT'}",
        "methods.mlp_focal_ens.params.epochs=2", "methods.mlp_focal_ens_smotetomek.params.epochs=2"))
    assert _methods(out) == {"mlp_focal_ens", "mlp_focal_ens_smotetomek", "linear_probe"}
    assert json.loads((out / "embeddings.json").read_text())["backbones"].keys() == {"efficientnet-lite0"}


@pytest.mark.slow
@pytest.mark.realdata
def test_medical_image_filter_on_the_shared_set(shared_data, tmp_path, run_example):
    out = run_example(tmp_path, "medical_image_filter.toml",
               *_sets(*TINY, f"data.source={shared_data / 'medical_vs_nonmedical'}"))
    assert _methods(out) == {"zeroshot", "linear_probe"}
    assert set(pd.read_csv(out / "manifest.csv")["label"]) == {"medical", "non_medical"}


@pytest.mark.slow
def test_cbis_resnet18_gradcam_on_synthetic_with_report(tmp_path, run_example):
    out = run_example(tmp_path, "cbis_ddsm_resnet18_gradcam.toml", "--synthetic", "--subset", "40", *_sets(
        'backbones=["tiny-test"]', "evaluation.n_bootstrap=20", "report.gradcam=2",
        "methods.resnet18.params.epochs=1", "methods.resnet18.params.pretrained=false",
        "methods.resnet18.params.image_size=64", "methods.resnet18.params.batch_size=8"))
    assert _methods(out) == {"resnet18", "linear_probe"}
    for name in ("report.html", "report.docx", "MODEL_CARD.md"):
        assert (out / name).is_file(), name
    assert any((out / "figures").glob("*.png"))
    overlays = list((out / "gradcam" / "resnet18").glob("*_gradcam.png"))
    assert len(overlays) == 2 and (out / "gradcam" / "resnet18" / "faithfulness.json").is_file()
    assert (out / "methods" / "resnet18" / "history.json").is_file()
    # the fine-tuned CNN serves `predict` too (gate: the run's backbone OOD check; probabilities: the CNN)
    from breastclip.predict import predict_images

    manifest = pd.read_csv(out / "manifest.csv")
    root = json.loads((out / "manifest.json").read_text())["root"]
    img = Path(root) / manifest[manifest["split"] == "test"]["image"].iloc[0]
    res = predict_images([img], out, method="resnet18", output=tmp_path / "cnn.csv")
    row = res.table.iloc[0]
    assert row["method"] == "resnet18" and row["policy"] == "youden" and row["threshold"] == row["threshold"]
    assert abs(row["p_benign"] + row["p_malignant"] - 1) < 1e-6 or row["status"] == "rejected"


@pytest.mark.slow
@pytest.mark.realdata
def test_breastmnist_benchmark_example_on_the_real_npz(shared_data, tmp_path, run_example):
    """The benchmark example unedited but for size: official split, CV selection, two seeds, on a subset with the
    tiny backbone's stage view."""
    out = run_example(tmp_path, "breastmnist.toml", "--subset", "90", "--methods", "svm_rbf,knn,simpleshot,ensemble_top3",
                      *_sets('backbones=["tiny-test@stages"]', "evaluation.n_bootstrap=20", "report.enabled=false",
                             "evaluation.cv_splits=3", "experiment.seeds=[0, 1]",
                             f"data.source={shared_data / 'breastmnist' / 'original' / 'breastmnist.npz'}"))
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["selection_metric"]) == {"cv_roc_auc"}
    assert len(board) == 8
    seeds = pd.read_csv(out / "seeds.csv")
    assert set(seeds["method"]) == {"svm_rbf", "knn", "simpleshot", "ensemble_top3"}
    # selection by method over seeds: the best ok method by mean CV, deployed as its master seed's (0) row, whose
    # pooled columns are the means over both seeds
    ok = seeds[seeds["status"] == "ok"]
    if len(ok):
        best = ok.iloc[0]
        assert best["selection_value_mean"] == ok["selection_value_mean"].max() and bool(best["selected"])
        row = board[board["selected"]].iloc[0]
        assert row["method"] == f"{best['method']}.seed0" and row["base_method"] == best["method"]
        per = board[board["base_method"] == best["method"]]
        for col in ("test_roc_auc", "test_accuracy@argmax"):
            assert row[f"{col}_seeds_mean"] == pytest.approx(per[col].mean())
    else:
        assert not board["selected"].any()


@pytest.mark.slow
@pytest.mark.realdata
def test_busi_benchmark_example_with_label_efficiency(shared_data, tmp_path, run_example):
    out = run_example(tmp_path, "busi.toml", "--subset", "90", "--methods", "svm_rbf,simpleshot",
                      *_sets('backbones=["tiny-test@stages"]', "evaluation.n_bootstrap=20", "report.enabled=false",
                             "evaluation.cv_splits=3", "experiment.seeds=[0]", "experiment.shots=[1, 4]",
                             "experiment.label_fractions=[1.0]",
                             f"data.source={shared_data / 'busi' / 'Dataset_BUSI_with_GT'}"))
    curve = pd.read_csv(out / "label_efficiency.csv")
    assert set(curve["method"]) == {"svm_rbf", "simpleshot"} and len(curve) == 6
    assert (out / "figures" / "label_efficiency.png").is_file()
    assert pd.read_csv(out / "manifest.csv")["label"].nunique() == 3
    # 3 classes: macro one-vs-rest AUC; CV selection refits on train+val, so 100 % is the leaderboard's own fit
    assert set(curve["auc_definition"]) == {"macro one-vs-rest, 3 classes"} and set(curve["pool"]) == {"train+val"}
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    full = curve[curve["budget"] == "fraction"].set_index("label")
    for label, row in full.iterrows():
        assert row["roc_auc"] == pytest.approx(board.loc[label, "test_roc_auc"], abs=1e-12)
