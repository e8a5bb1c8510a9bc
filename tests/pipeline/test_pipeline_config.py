"""Experiment config: strict keys, types, overrides, --offline, resolved round trip; results-folder policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from breastclip.config import (
    OFFLINE_BACKBONE,
    OFFLINE_CNN,
    OFFLINE_TEXT_BACKBONE,
    ConfigError,
    apply_override,
    from_dict,
    load_config,
    tomllib,
)
from breastclip.pipeline.methods import validate_methods
from breastclip.pipeline.run_folder import ResultsFolderError, RunFolder, claim_output

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))


def test_examples_exist_for_each_notebook():
    names = {p.stem for p in EXAMPLES}
    assert names >= {"cbis_ddsm_similarity_guided", "breakhis_8class", "dbt_mlp_focal", "medical_image_filter",
                     "cbis_ddsm_resnet18_gradcam"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("offline", [False, True])
def test_example_configs_validate(path, offline):
    cfg = load_config(path, offline=offline)
    validate_methods(cfg)  # every hyperparameter is one the head (or the CNN baseline) accepts
    if cfg.data.format:  # every reader option is one the named reader accepts
        from breastclip.data.sources import FORMATS
        from breastclip.pipeline.options import check_options

        check_options(FORMATS[cfg.data.format].read, dict(cfg.data.options), "data.options", fixed=("path",))
    assert Path(cfg.data.source).is_absolute()
    if offline:
        from breastclip.backbones import get_entry

        # the offline backbones, or EfficientNet-Lite feature views (already offline) which --offline keeps
        assert cfg.backbones in ((OFFLINE_BACKBONE,), (OFFLINE_TEXT_BACKBONE,)) or all(
            get_entry(b).family == "efficientnet_lite" and get_entry(b).view for b in cfg.backbones)
        assert all(m.params["arch"] == OFFLINE_CNN for m in cfg.methods if m.head == "cnn")


def test_unknown_key_names_the_key_and_the_valid_ones(tmp_path):
    p = tmp_path / "e.toml"
    p.write_text('backbones = ["tiny-test"]\n[data]\nsorce = "x"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "data.sorce" in msg and "did you mean 'source'" in msg and "format" in msg


def test_unknown_top_level_and_method_keys():
    with pytest.raises(ConfigError, match="unknown key 'backbone'.*did you mean 'backbones'"):
        from_dict({"backbone": ["x"]})
    with pytest.raises(ConfigError, match=r"methods\[0\]\.parms"):
        from_dict({"methods": [{"name": "a", "head": "mlp", "parms": {}}]})


def test_wrong_types_are_named():
    with pytest.raises(ConfigError, match="'evaluation.n_bootstrap' must be an integer"):
        from_dict({"evaluation": {"n_bootstrap": "many"}})
    with pytest.raises(ConfigError, match="'report.enabled' must be true or false"):
        from_dict({"report": {"enabled": "yes"}})


def test_cross_field_validation_lists_every_problem(tiny_raw):
    raw = tiny_raw(split={"fractions": [0.5, 0.5, 0.5]}, backbones=[])
    with pytest.raises(ConfigError) as e:
        load_config(raw=raw)
    assert "split.fractions" in str(e.value) and "backbones is empty" in str(e.value)


def test_unknown_reader_option_is_named(tiny_raw, tmp_path):
    from breastclip.pipeline.data_step import load_manifest

    (tmp_path / "d").mkdir()
    raw = tiny_raw(data={"source": str(tmp_path / "d"), "format": "breakhis", "options": {"label": "subtype"}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['label'\] in data.options.*labels"):
        load_manifest(load_config(raw=raw))


def test_unknown_hyperparameter_fails_before_any_work(tiny_raw):
    raw = tiny_raw(methods=[{"name": "mlp", "head": "mlp", "params": {"epoch": 3}}])
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) \['epoch'\].*epochs"):
        validate_methods(load_config(raw=raw))
    raw = tiny_raw(methods=[{"name": "x", "head": "nope"}])
    with pytest.raises(ConfigError, match="unknown head 'nope'"):
        validate_methods(load_config(raw=raw))


def test_overrides(tiny_raw, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(raw=tiny_raw(), overrides=[
        'backbones=["efficientnet-lite0"]', "methods.mlp.params.epochs=7", "evaluation.n_bootstrap=5",
        "data.source=relative/dir", "experiment.name=renamed", "methods.1.enabled=false",
        "evaluation.thresholds=[\"youden\", \"sens>=0.90\"]"])
    assert cfg.backbones == ("efficientnet-lite0",)
    assert next(m for m in cfg.methods if m.name == "mlp").params["epochs"] == 7
    assert cfg.evaluation.n_bootstrap == 5
    assert cfg.data.source == str(tmp_path / "relative" / "dir")  # command-line paths: relative to the cwd
    assert cfg.experiment.name == "renamed"
    assert [m.name for m in cfg.active_methods()] == ["linear_probe", "mlp"]
    assert cfg.evaluation.thresholds == ("youden", "sens>=0.90")
    with pytest.raises(ConfigError, match="no method named 'nope'.*linear_probe"):
        load_config(raw=tiny_raw(), overrides=["methods.nope.params.epochs=1"])
    with pytest.raises(ConfigError, match="not of the form"):
        apply_override({}, "evaluation.n_bootstrap")


def test_file_paths_resolve_against_the_config_folder(tmp_path):
    sub = tmp_path / "cfgs"
    sub.mkdir()
    (sub / "e.toml").write_text('backbones = ["tiny-test"]\n[data]\nsource = "../data/busi"\n'
                                '[[methods]]\nname = "lp"\nhead = "linear_probe"\n')
    cfg = load_config(sub / "e.toml")
    assert cfg.data.source == str((tmp_path / "data" / "busi").resolve())


def test_prompt_bank_files_resolve_against_the_config_folder(tmp_path, monkeypatch):
    """A bank file next to the config is found from any working directory, and config.resolved.toml keeps a path
    that still resolves; shipped bank names stay names; command-line bank paths are relative to the cwd."""
    from breastclip.prompts import load_bank

    sub = tmp_path / "cfgs"
    (sub / "banks").mkdir(parents=True)
    (sub / "banks" / "mine.toml").write_text('classes = ["benign", "malignant"]\ntemplates = ["{}"]\n[prompts]\n'
                                             'benign = ["a"]\nmalignant = ["b"]\n')
    (sub / "e.toml").write_text('backbones = ["tiny-test"]\n[data]\nsource = "d"\n'
                                '[gate]\nmedical_prompts = "banks/mine.toml"\n'
                                '[[methods]]\nname = "zs"\nhead = "zeroshot"\nprompts = "banks/mine.toml"\n'
                                '[[methods]]\nname = "zs2"\nhead = "zeroshot"\nprompts = "mammography"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(sub / "e.toml")
    bank_file = str((sub / "banks" / "mine.toml").resolve())
    assert cfg.methods[0].prompts == bank_file and cfg.gate.medical_prompts == bank_file
    assert cfg.methods[1].prompts == "mammography"
    assert load_bank(cfg.methods[0].prompts).classes == ("benign", "malignant")
    resolved = tmp_path / "out" / "config.resolved.toml"
    resolved.parent.mkdir()
    resolved.write_text(cfg.to_toml())
    again = load_config(resolved)  # loading the saved file from its own folder still finds the bank
    assert again.methods[0].prompts == bank_file
    (elsewhere / "cli.toml").write_text((sub / "banks" / "mine.toml").read_text())
    cli = load_config(sub / "e.toml", overrides=["methods.zs.prompts=cli.toml"])
    assert cli.methods[0].prompts == str(elsewhere / "cli.toml")


def test_offline_swaps_backbones_and_cnn(tiny_raw):
    raw = tiny_raw(backbones=["clip-vit-b32", "clip-rn50"],
                   methods=[{"name": "lp", "head": "linear_probe", "backbones": ["clip-rn50"]},
                            {"name": "cnn", "head": "cnn", "params": {"arch": "resnet18"}}])
    cfg = load_config(raw=raw, offline=True)
    assert cfg.backbones == (OFFLINE_BACKBONE,)
    assert cfg.methods[0].backbones == ()
    assert cfg.methods[1].params["arch"] == OFFLINE_CNN
    raw["methods"].append({"name": "sg", "head": "similarity_guided", "prompts": "cbis_ddsm"})
    assert load_config(raw=raw, offline=True).backbones == (OFFLINE_TEXT_BACKBONE,)


def test_offline_substitutions_are_visible_in_names_and_recorded(tiny_raw):
    """What ran is in the method's name (and so its folder, leaderboard row, report section, Grad-CAM folder);
    what the config asked for is recorded in config.resolved.toml (``substitutions``) and the run's notes."""
    raw = tiny_raw(backbones=["clip-vit-b32"],
                   methods=[{"name": "lp", "head": "linear_probe"},
                            {"name": "resnet18", "head": "cnn", "params": {"arch": "resnet18"}},
                            {"name": "cnn", "head": "cnn"},  # arch left at its default (resnet18)
                            {"name": "lite", "head": "cnn", "params": {"arch": OFFLINE_CNN}}])
    cfg = load_config(raw=raw, offline=True)
    assert [m.name for m in cfg.methods] == ["lp", OFFLINE_CNN, f"cnn@{OFFLINE_CNN}", "lite"]
    subs = "\n".join(cfg.substitutions)
    assert "backbone(s) clip-vit-b32 replaced by efficientnet-lite0" in subs
    assert f"method 'resnet18' asked for arch = resnet18; {OFFLINE_CNN} ran instead" in subs
    assert f"method 'cnn' asked for arch = resnet18; {OFFLINE_CNN} ran instead, as method 'cnn@{OFFLINE_CNN}'" in subs
    assert "'lite'" not in subs  # nothing was swapped for it
    back = load_config(raw=tomllib.loads(cfg.to_toml()))  # the resolved config keeps the record
    assert back.substitutions == cfg.substitutions and back.identity() == cfg.identity()
    # --methods names the methods as the config wrote them
    only = load_config(raw=raw, offline=True, only_methods=["resnet18"])
    assert [m.name for m in only.methods] == [OFFLINE_CNN]
    # already offline backbones stay, but a CNN that needs a download is still swapped (and says so)
    lite = load_config(raw=tiny_raw(backbones=["efficientnet-lite0"], methods=raw["methods"][1:2]), offline=True)
    assert lite.backbones == ("efficientnet-lite0",) and lite.methods[0].params["arch"] == OFFLINE_CNN
    assert len(lite.substitutions) == 1


def test_resolved_toml_round_trips_and_identity(tiny_raw):
    cfg = load_config(raw=tiny_raw())
    back = from_dict(tomllib.loads(cfg.to_toml()))
    assert back == cfg
    moved = load_config(raw=tiny_raw(), overrides=["experiment.output=/elsewhere"])
    assert moved.identity() == cfg.identity()  # the output folder is not part of what the results depend on
    assert load_config(raw=tiny_raw(), overrides=["experiment.seed=1"]).identity() != cfg.identity()
    # what the report shows changes no fitted model or metric: an interrupted run may resume after such an edit
    assert load_config(raw=tiny_raw(), overrides=["report.gradcam=0", "report.neighbours=0"]).identity() == cfg.identity()


def test_only_methods(tiny_raw):
    cfg = load_config(raw=tiny_raw(), only_methods=["mlp"])
    assert [m.name for m in cfg.methods] == ["mlp"]
    with pytest.raises(ConfigError, match="unknown method"):
        load_config(raw=tiny_raw(), only_methods=["nope"])


def _claim(cfg):
    """Claim and release at once (as a run that has stopped)."""
    c = claim_output(cfg)
    c.lock.release()
    return c


def test_results_folder_policy(tiny_raw, tmp_path):
    cfg = load_config(raw=tiny_raw())
    d = _claim(cfg)
    assert not d.resume and d.path == Path(cfg.experiment.output)
    RunFolder(d.path).write_state(cfg.identity(), complete=False)
    again = _claim(cfg)
    assert again.resume and again.path == d.path  # unfinished run of the same config: resume in place
    RunFolder(d.path).write_state(cfg.identity(), complete=True)
    done = _claim(cfg)
    assert not done.resume and done.path != d.path and done.path.name.startswith(d.path.name + "-")
    other = load_config(raw=tiny_raw(), overrides=["experiment.seed=3"])
    assert _claim(other).path != d.path  # another config never writes into this folder
    with pytest.raises(ResultsFolderError, match="holds a finished run"):
        _claim(load_config(raw=tiny_raw(), overrides=["experiment.on_existing=refuse"]))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("a user's file")
    d2 = _claim(load_config(raw=tiny_raw(), overrides=[f"experiment.output={foreign}"]))
    assert d2.path != foreign and "not made by breastclip" in d2.message


def test_subset_is_stratified_and_deterministic(synth_root):
    from breastclip.data.synthetic import make_synthetic
    from breastclip.pipeline.data_step import subset_manifest

    m = make_synthetic(synth_root, n_patients=24, images_per_patient=2, size=64, seed=0)
    a, b = subset_manifest(m, 16, seed=0), subset_manifest(m, 16, seed=0)
    assert a.df["id"].tolist() == b.df["id"].tolist()
    assert 14 <= len(a) <= 18
    assert set(a.df["label"]) == set(m.df["label"])
    assert subset_manifest(m, 0, seed=0) is m


def test_offline_keeps_an_efficientnet_view_and_swaps_the_rest(tmp_path):
    from breastclip.config import make_offline

    base = load_config(raw={"backbones": ["efficientnet-lite0@stages+mirror"], "data": {"source": str(tmp_path)},
                            "methods": [{"name": "svm", "head": "svm_rbf"}]})
    assert make_offline(base).backbones == ("efficientnet-lite0@stages+mirror",)
    clip = load_config(raw={"backbones": ["clip-vit-b32"], "data": {"source": str(tmp_path)},
                            "methods": [{"name": "svm", "head": "svm_rbf"}]})
    assert make_offline(clip).backbones == (OFFLINE_BACKBONE,)
    text = load_config(raw={"backbones": ["efficientnet-lite0@stages"], "data": {"source": str(tmp_path)},
                            "methods": [{"name": "sg", "head": "similarity_guided", "prompts": "busi"}]})
    assert make_offline(text).backbones == (OFFLINE_TEXT_BACKBONE,)  # a text head needs MiniLM: swapped


def test_bad_near_duplicate_policy_is_a_config_error_before_hashing(tiny_raw):
    from breastclip.pipeline.data_step import load_manifest, split_and_audit

    cfg = load_config(raw=tiny_raw(split={"options": {"near_duplicates": "sometimes"}}))
    with pytest.raises(ConfigError, match="split.options.near_duplicates must be one of refuse, warn, off"):
        split_and_audit(load_manifest(cfg), cfg)
