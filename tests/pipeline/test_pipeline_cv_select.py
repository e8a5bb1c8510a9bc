"""evaluation.selection = "cv": grids ranked by repeated grouped k-fold on train+val, refit, test scored once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from breastclip.config import ConfigError, load_config
from breastclip.heads import HEADS, SAVEABLE, RBFSVMHead
from breastclip.heads import model_selection as ms
from breastclip.pipeline import run_experiment


def _cv_raw(tiny_raw, **extra):
    return tiny_raw(
        methods=[
            {"name": "svm", "head": "svm_rbf", "params_grid": {"C": [1.0, 10.0]}},
            {"name": "knn", "head": "knn", "params_grid": {"k": [3, 7]}},
            {"name": "simpleshot", "head": "simpleshot"},
            {"name": "ens", "head": "ensemble", "params": {"top_k": 2}},
        ],
        evaluation={"n_bootstrap": 0, "selection": "cv", "cv_splits": 3, "cv_repeats": 2, "cv_jobs": 1},
        gate={"ood": False}, **extra)


def _run(raw):
    from rich.console import Console

    return run_experiment(load_config(raw=raw), progress=False, console=Console(quiet=True))


class SpySVM(RBFSVMHead):
    """Records the first feature of every row it is fitted on or asked about."""

    head_name = "svm_rbf"
    seen: list = []

    def fit(self, X, y, X_val=None, y_val=None):
        SpySVM.seen.append(("fit", np.asarray(X)[:, 0].copy()))
        return super().fit(X, y)

    def predict_proba(self, X):
        SpySVM.seen.append(("predict", np.asarray(X)[:, 0].copy()))
        return super().predict_proba(X)


def test_cv_selection_never_reads_test_rows(tiny_raw, monkeypatch):
    """Every fit and every prediction during selection sees train+val rows only; the test split is read once,
    by the refitted model."""
    monkeypatch.setitem(HEADS, "svm_rbf", SpySVM)
    monkeypatch.setitem(SAVEABLE, "svm_rbf", SpySVM)
    SpySVM.seen = []
    real_cv = ms.cross_validate
    during_cv: list = []

    def spy_cv(*a, **kw):
        start = len(SpySVM.seen)
        out = real_cv(*a, **{**kw, "cache_dir": None})  # no cache: every fold really runs here
        during_cv.extend(SpySVM.seen[start:])
        return out

    monkeypatch.setattr("breastclip.pipeline.cv_select.cross_validate", spy_cv)
    raw = _cv_raw(tiny_raw)
    raw["methods"] = raw["methods"][:1]
    res = _run(raw)
    pred = pd.read_csv(res.out_dir / "predictions.csv", dtype={"id": str})
    emb_ids = pred["id"].tolist()
    from breastclip.pipeline.embed_step import embed_all

    cfg = load_config(raw=raw)
    from breastclip.data.manifest import Manifest

    manifest = Manifest.from_csv(res.out_dir / "manifest.csv")
    X = embed_all(cfg, manifest, progress=False)["tiny-test"].rows(emb_ids)
    split = pred["split"].to_numpy()
    test_first = set(np.round(X[split == "test", 0], 10))
    sel_first = set(np.round(X[split != "test", 0], 10))
    assert during_cv, "the spy saw no cross-validation"
    for what, col in during_cv:
        assert not set(np.round(col, 10)) & test_first, f"a CV {what} read test rows"
        assert set(np.round(col, 10)) <= sel_first
    predicted_test = [col for what, col in SpySVM.seen[len(during_cv):] if what == "predict"
                      and set(np.round(col, 10)) & test_first]
    assert len(predicted_test) == 1, "the test split is scored once, by the refitted model"


def test_cv_run_ranks_grids_refits_and_caches(tiny_raw):
    raw = _cv_raw(tiny_raw)
    res = _run(raw)
    out = res.out_dir
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["selection_metric"]) == {"cv_roc_auc"}
    assert board["selection_n_folds"].eq(6).all()
    svm = json.loads((out / "methods" / "svm" / "method.json").read_text())
    assert svm["selection"]["source"] == "cv" and svm["params"]["C"] in (1.0, 10.0)
    table = pd.read_csv(out / "methods" / "svm" / "cv_results.csv")
    assert len(table) == 2 and table["cv_mean"].is_monotonic_decreasing
    assert svm["selection"]["value"] == pytest.approx(table["cv_mean"].iloc[0], abs=1e-6)
    ens = json.loads((out / "methods" / "ens" / "method.json").read_text())
    assert len(ens["params"]["members"]) == 2
    pred = pd.read_csv(out / "predictions.csv")
    assert set(pred["method"]) == {"svm", "knn", "simpleshot", "ens"}
    # a rerun reads every fold from the cache and gives the same figures
    raw2 = _cv_raw(tiny_raw)
    raw2["experiment"]["output"] = str(out) + "_again"
    out2 = _run(raw2).out_dir
    again = pd.read_csv(out2 / "leaderboard.csv")
    pd.testing.assert_series_equal(board.set_index("method")["selection_value"].sort_index(),
                                   again.set_index("method")["selection_value"].sort_index())
    # ... and the refits too (loaded, not fitted): every prediction is the same
    log = (out2 / "run.log").read_text()
    assert all(f"{m}: the refit on train+val comes from the cache" in log for m in ("svm", "knn", "simpleshot"))
    pd.testing.assert_frame_equal(pred, pd.read_csv(out2 / "predictions.csv"))


def test_grid_only_with_cv_and_named_keys(tiny_raw):
    raw = _cv_raw(tiny_raw)
    raw["evaluation"]["selection"] = "val"
    with pytest.raises(ConfigError, match="params_grid"):
        load_config(raw=raw)
    raw = _cv_raw(tiny_raw)
    raw["methods"][0]["params_grid"] = {"Cee": [1.0]}
    with pytest.raises(ConfigError, match="Cee"):
        _run(raw)


def test_folds_are_patient_grouped_and_stratified():
    y = np.array(["a"] * 30 + ["b"] * 18)
    groups = np.repeat(np.arange(24), 2)
    folds = ms.cv_folds(y, groups, ms.CVSettings(n_splits=3, n_repeats=2, seed=0))
    assert len(folds) == 6
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        assert set(y[te]) == {"a", "b"}
    assert not all(np.array_equal(folds[0][1], f[1]) for f in folds[3:])  # repeats reshuffle


def test_seeds_run_every_method_per_seed_and_summarise(tiny_raw):
    raw = _cv_raw(tiny_raw)
    raw["methods"] = raw["methods"][:3]
    raw["experiment"]["seeds"] = [0, 1]
    raw["experiment"]["seed"] = 1  # the master seed: its fit is the one deployed
    res = _run(raw)
    out = res.out_dir
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["method"]) == {f"{m}.seed{s}" for m in ("svm", "knn", "simpleshot") for s in (0, 1)}
    seeds = pd.read_csv(out / "seeds.csv").set_index("method")
    assert set(seeds.index) == {"svm", "knn", "simpleshot"} and seeds["n_seeds"].eq(2).all()
    per = board.set_index("method")["test_roc_auc"]
    assert seeds.loc["svm", "roc_auc_mean"] == pytest.approx((per["svm.seed0"] + per["svm.seed1"]) / 2)
    assert seeds.loc["svm", "roc_auc_sd"] == pytest.approx(np.std([per["svm.seed0"], per["svm.seed1"]], ddof=1))
    # seeds.csv: the pooled status and the selection, ok methods first, then by mean CV (never by test)
    assert {"status", "selected", "deployed"} <= set(seeds.columns)
    assert seeds["status"].tolist() == sorted(seeds["status"], key=lambda s: s != "ok")
    for _flag, part in seeds.groupby(seeds["status"] != "ok", sort=False):
        assert part["selection_value_mean"].is_monotonic_decreasing
    assert (seeds["deployed"] == seeds.index + ".seed1").all()  # the master seed's fit
    # a method's status is ok only when every seed is; otherwise it names each flagged seed and why
    b = board.set_index("method")
    for m in seeds.index:
        own = b.loc[[f"{m}.seed0", f"{m}.seed1"], "seed_status"]
        want = "ok" if (own == "ok").all() else "; ".join(f"seed {s} flagged: {st}" for s, st in zip(
            (0, 1), own, strict=True) if st != "ok")
        assert seeds.loc[m, "status"] == want and (b.loc[[f"{m}.seed0", f"{m}.seed1"], "status"] == want).all()
    # the selection (here, on a random tiny backbone, usually none): the best ok method by mean CV, its master
    # seed's row; seeds.csv, leaderboard.csv and the run agree
    ok = seeds[seeds["status"] == "ok"]
    assert seeds["selected"].tolist() == [True] * min(1, len(ok)) + [False] * (len(seeds) - min(1, len(ok)))
    assert res.best == (f"{ok.index[0]}.seed1" if len(ok) else None)
    assert board["selected"].sum() == len(ok[:1]) and board["selection_metric"].eq("cv_roc_auc").all()
    assert "research" in (out / "seeds.md").read_text().lower() and "master seed 1" in (out / "seeds.md").read_text()
    # different seeds give different CV folds
    a = pd.read_csv(out / "methods" / "svm.seed0" / "cv_results.csv")["fold_scores"].iloc[0]
    b = pd.read_csv(out / "methods" / "svm.seed1" / "cv_results.csv")["fold_scores"].iloc[0]
    assert a != b


def test_fold_cache_lives_under_the_one_cache_root_and_cache_clear_removes_it(tiny_raw, tmp_path, monkeypatch):
    """With BREASTCLIP_CACHE set, a CV run writes its fold results under that root (user_cache.cv_folds_dir), never
    beside it nor under HOME; `breastclip cache ls` lists them and `cache clear` removes them."""
    from typer.testing import CliRunner

    from breastclip.cli import app
    from breastclip.user_cache import cv_folds_dir

    home, root = tmp_path / "home", tmp_path / "cache" / "breastclip"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("BREASTCLIP_CACHE", str(root))
    raw = _cv_raw(tiny_raw)
    raw["methods"] = raw["methods"][:1]
    raw["embed"] = {}  # the cache root comes from the environment
    raw["evaluation"]["cv_repeats"] = 1
    _run(raw)
    entries = sorted(cv_folds_dir().glob("*.npz"))
    assert cv_folds_dir() == root / "cv_folds" and len(entries) == 2  # one per grid point
    assert not [p for p in home.rglob("*")], "the run wrote under HOME"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["breastclip"], "the run wrote beside the root"
    runner = CliRunner()
    ls = runner.invoke(app, ["cache", "ls", "--json"])
    assert ls.exit_code == 0, ls.output
    kinds = {f["kind"]: f for f in json.loads(ls.output)}
    refits = list(cv_folds_dir().glob("refit-*"))
    assert len(refits) == 1 and (refits[0] / "head.json").is_file()  # the chosen point refitted on train+val
    assert kinds["cv_folds"]["rows"] == 3 and kinds["cv_folds"]["folder"] == "cv_folds"
    assert runner.invoke(app, ["cache", "verify"]).exit_code == 0
    r = runner.invoke(app, ["cache", "clear", "--busy-minutes", "0", "--yes"])
    assert r.exit_code == 0, r.output
    assert not cv_folds_dir().exists()
    assert not list((root / "embeddings").iterdir())  # the embedding folders went too


def test_a_damaged_fold_result_is_recomputed_not_fatal(tmp_path):
    """A truncated cache entry (a full disk, a killed copy) is recomputed with a warning; it never stops the run."""
    from breastclip.heads import make_head

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), np.array(["a", "b"] * 20)
    folds = ms.cv_folds(y, None, ms.CVSettings(n_splits=2, n_repeats=1))
    cand = [ms.Candidate("nc", "simpleshot", {})]

    def make(c):
        return make_head(c.head, **c.params)

    (first,) = ms.cross_validate(cand, make, X, y, folds, n_repeats=1, n_jobs=1, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:60])
    (again,) = ms.cross_validate(cand, make, X, y, folds, n_repeats=1, n_jobs=1, cache_dir=tmp_path)
    assert not again.from_cache
    np.testing.assert_array_equal(first.fold_scores, again.fold_scores)
    (cached,) = ms.cross_validate(cand, make, X, y, folds, n_repeats=1, n_jobs=1, cache_dir=tmp_path)
    assert cached.from_cache  # rewritten whole


def test_pooling_is_a_capability_of_the_method_kind_not_a_name(tiny_raw, monkeypatch):
    """Any kind whose registry entry pools other methods (``pool``) runs after the others (even when listed first),
    pools their CV results and fitted heads, also on the label-efficiency subsets; nothing branches on the name
    "ensemble"."""
    from dataclasses import replace

    from breastclip.heads import EnsembleHead
    from breastclip.method_registry import METHOD_KINDS

    class Blend(EnsembleHead):
        head_name = "blend"

    monkeypatch.setitem(HEADS, "blend", Blend)
    monkeypatch.setitem(SAVEABLE, "blend", Blend)
    monkeypatch.setitem(METHOD_KINDS, "blend", replace(METHOD_KINDS["ensemble"], name="blend",
                                                       pool=Blend.from_fitted))
    raw = _cv_raw(tiny_raw, experiment={"label_fractions": [0.5, 1.0]})
    raw["methods"] = [{"name": "mix", "head": "blend", "params": {"top_k": 2}}] + raw["methods"][:3]
    out = _run(raw).out_dir
    mix = json.loads((out / "methods" / "mix" / "method.json").read_text())
    assert mix["complete"] and len(mix["params"]["members"]) == 2 and "top_k" not in mix["params"]
    assert mix["selection"]["source"] == "cv"
    curve = pd.read_csv(out / "label_efficiency.csv")
    assert set(curve["method"]) == {"svm", "knn", "simpleshot", "mix"}
    assert curve["error"].isna().all()


def test_a_pooling_method_outside_cv_selection_is_a_clear_error(tiny_raw):
    raw = _cv_raw(tiny_raw)
    raw["evaluation"]["selection"] = "val"
    raw["methods"] = [{"name": "svm", "head": "svm_rbf"}, {"name": "ens", "head": "ensemble", "params": {"top_k": 2}}]
    with pytest.raises(ConfigError, match=r"'ens' \(ensemble\): top_k .*selection = \"cv\""):
        _run(raw)


def test_the_ensemble_reuses_its_members_refitted_heads(tiny_raw, monkeypatch):
    """The CV ensemble is assembled from its members' refitted heads (same rows, same hyperparameters and seed), so
    the run fits no member twice; its test predictions are exactly what refitting it from its recorded members on
    train+val gives."""
    from breastclip.data.manifest import Manifest
    from breastclip.heads import EnsembleHead, load_head
    from breastclip.pipeline.embed_step import embed_all

    real_fit = EnsembleHead.fit

    def no_refit(self, *a, **kw):
        raise AssertionError("the ensemble refitted its members")

    monkeypatch.setattr(EnsembleHead, "fit", no_refit)
    raw = _cv_raw(tiny_raw)
    out = _run(raw).out_dir
    monkeypatch.setattr(EnsembleHead, "fit", real_fit)
    pred = pd.read_csv(out / "predictions.csv", dtype={"id": str})
    assert "ens" in set(pred["method"])
    model = load_head(out / "methods" / "ens" / "model")
    ens_json = json.loads((out / "methods" / "ens" / "method.json").read_text())
    assert [m[0] for m in ens_json["params"]["members"]] == [m[0] for m in model.members]
    assert all(m[1].get("random_state") == 0 for m in model.members if m[0] == "svm_rbf")  # the run's seed
    manifest = Manifest.from_csv(out / "manifest.csv")
    df = manifest.df
    X = embed_all(load_config(raw=raw), manifest, progress=False)["tiny-test"].rows(df["id"].tolist())
    split, y = df["split"].to_numpy(), df["label"].astype(str).to_numpy()
    sel, test = np.isin(split, ["train", "val"]), split == "test"
    refit = EnsembleHead(members=model.members).fit(X[sel], y[sel])
    np.testing.assert_array_equal(model.predict_proba(X[test]), refit.predict_proba(X[test]))
    rows = pred[(pred["method"] == "ens") & (pred["split"] == "test")].set_index("id").loc[df["id"][test]]
    cols = [f"p_{c}" for c in refit.classes_]
    np.testing.assert_allclose(rows[cols].to_numpy(), refit.predict_proba(X[test]), atol=1e-9)


def test_refit_is_cached_and_a_cached_refit_predicts_exactly_the_same(tmp_path, caplog):
    """The chosen point's refit on train+val is cached beside the fold results: a rerun loads it instead of fitting
    again and predicts bit for bit the same; another seed is another entry; a damaged entry is refitted."""
    from breastclip.heads import MLPHead, make_head

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 6)), np.array(["benign", "malignant"] * 30)
    Xt = rng.standard_normal((15, 6))

    def make_for(seed):
        return lambda c: make_head(c.head, **c.params, random_state=seed)

    cand = ms.Candidate("mlp", "mlp", {"epochs": 3, "hidden": (8,)})
    first, hit = ms.refit(cand, make_for(0), X, y, cache_dir=tmp_path)
    assert not hit and isinstance(first, MLPHead)
    calls = []
    real_fit = MLPHead.fit

    def spy_fit(self, *a, **kw):
        calls.append(1)
        return real_fit(self, *a, **kw)

    MLPHead.fit = spy_fit
    try:
        again, hit = ms.refit(cand, make_for(0), X, y, cache_dir=tmp_path)
        assert hit and not calls
        np.testing.assert_array_equal(again.predict_proba(Xt), first.predict_proba(Xt))
        assert list(again.classes_) == ["benign", "malignant"]
        _, hit = ms.refit(cand, make_for(1), X, y, cache_dir=tmp_path)  # another seed: another model
        assert not hit and len(calls) == 1
        _, hit = ms.refit(cand, make_for(0), X, y[::-1], cache_dir=tmp_path)  # other labels: another model
        assert not hit
    finally:
        MLPHead.fit = real_fit
    entries = sorted(tmp_path.glob(f"{ms.REFIT_PREFIX}*"))
    assert len(entries) == 3 and not list(tmp_path.glob(".*"))  # no temp folder left behind
    (entries[0] / "weights.safetensors").write_bytes(b"garbage")
    with caplog.at_level("WARNING"):
        for _ in range(3):
            ms.refit(cand, make_for(0), X, y, cache_dir=tmp_path)
            ms.refit(cand, make_for(1), X, y, cache_dir=tmp_path)
            ms.refit(cand, make_for(0), X, y[::-1], cache_dir=tmp_path)
    assert sum("unreadable" in r.message for r in caplog.records) == 1  # refitted once, then read back whole


def test_near_duplicate_groups_are_found_once_per_run_not_per_seed(tiny_raw, monkeypatch):
    """Grouping near-duplicates fingerprints every image; the CV groups do not depend on the seed, so a run with
    several seeds finds them as often as a run with one."""
    from breastclip.data import leaks

    calls: list[int] = []
    real = leaks.duplicate_groups

    def spy(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(leaks, "duplicate_groups", spy)
    counts = []
    for seeds in ([], [0, 1, 2]):
        raw = _cv_raw(tiny_raw, split={"options": {"group_duplicates": True}})
        raw["methods"] = raw["methods"][2:3]  # simpleshot: the groups are the point here
        raw["experiment"]["seeds"] = seeds
        raw["experiment"]["output"] += f"-{len(seeds)}"
        calls.clear()
        _run(raw)
        counts.append(len(calls))
    assert counts[0] >= 1 and counts[1] == counts[0]


def test_a_refit_cached_meanwhile_by_another_run_is_kept(tmp_path, monkeypatch):
    """Two runs that refit the same point at once: the second to finish keeps the first one's entry (readers may
    be loading it), and its own fit is used for its run."""
    from breastclip.heads import make_head

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), np.array(["a", "b"] * 20)
    cand = ms.Candidate("svm", "svm_rbf", {"C": 1.0})

    def make(c):
        return make_head(c.head, **c.params, random_state=0)

    first, _ = ms.refit(cand, make, X, y, cache_dir=tmp_path)
    (entry,) = tmp_path.glob(f"{ms.REFIT_PREFIX}*")
    marker = entry / "written-by-the-other-run"
    marker.write_text("")
    real_is_dir = Path.is_dir
    looked: list[Path] = []

    def is_dir(self):  # this run looks once before the other run's entry appears, then saves after it
        if self == entry and not looked:
            looked.append(self)
            return False
        return real_is_dir(self)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    second, hit = ms.refit(cand, make, X, y, cache_dir=tmp_path)
    monkeypatch.undo()
    assert not hit and marker.is_file()  # the other run's entry is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    np.testing.assert_array_equal(second.predict_proba(X), first.predict_proba(X))


def test_cached_refits_of_another_breastclip_version_are_not_reused(tmp_path, monkeypatch):
    """A cached fold result or refit was made by some version of the heads' code: another version (or another
    CV_CACHE_FORMAT) misses the cache instead of reusing what older code computed."""
    import breastclip
    from breastclip.heads import make_head

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 4)), np.array(["benign", "malignant"] * 20)
    cand = ms.Candidate("simpleshot", "simpleshot", {})

    def make(c):
        return make_head(c.head, **c.params)

    _, hit = ms.refit(cand, make, X, y, cache_dir=tmp_path)
    _, hit = ms.refit(cand, make, X, y, cache_dir=tmp_path)
    assert hit
    monkeypatch.setattr(breastclip, "__version__", breastclip.__version__ + ".post1")
    _, hit = ms.refit(cand, make, X, y, cache_dir=tmp_path)
    assert not hit
    monkeypatch.setattr(ms, "CV_CACHE_FORMAT", ms.CV_CACHE_FORMAT + 1)
    _, hit = ms.refit(cand, make, X, y, cache_dir=tmp_path)
    assert not hit
