"""The method registry: every head and the CNN baseline declared once; config validation, --offline, the pipeline
and predict read it (registry-driven: a new head is checked here without a new test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from breastclip.config import OFFLINE_CNN, ConfigError, MethodSection, load_config
from breastclip.finetune import FinetuneConfig
from breastclip.heads import HEADS
from breastclip.method_registry import METHOD_KINDS, Inputs, TextUse, method_kind
from breastclip.pipeline.methods import Plan, plan_methods, skip_reason

SRC = Path(__file__).resolve().parents[1] / "src" / "breastclip"
RAW = {"backbones": ["tiny-test"], "data": {"source": "x"}, "experiment": {"name": "t"},
       "methods": [{"name": "lp", "head": "linear_probe"}]}


def test_every_head_and_the_cnn_baseline_are_registered():
    assert set(HEADS) | {"cnn"} == set(METHOD_KINDS)
    assert {k for k, v in METHOD_KINDS.items() if v.inputs is Inputs.IMAGES} == {"cnn"}


@pytest.mark.parametrize("name", sorted(METHOD_KINDS))
def test_each_kind_builds_from_its_defaults_and_names_valid_hyperparameters(name):
    kind = METHOD_KINDS[name]
    cfg = load_config(raw=RAW)
    built = kind.build(MethodSection(name="m", head=name), cfg, None)
    if kind.inputs is Inputs.IMAGES:
        assert isinstance(built, FinetuneConfig) and built.seed == cfg.experiment.seed
    else:
        assert isinstance(built, HEADS[name])
        if "random_state" in built.get_params():
            assert built.random_state == cfg.experiment.seed  # the run's seed reaches every seeded head
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) \['nope'\].*valid: "):
        kind.build(MethodSection(name="m", head=name, params={"nope": 1}), cfg, None)


def test_text_arguments_reach_only_heads_that_take_them():
    import numpy as np

    text = {"text_embeddings": np.eye(2, 4), "text_aligned": False, "classes": ["a", "b"]}
    cfg = load_config(raw=RAW)
    for name, kind in METHOD_KINDS.items():
        if kind.inputs is not Inputs.EMBEDDINGS:
            continue
        head = kind.build(MethodSection(name="m", head=name), cfg, text)
        takes = head.get_params()
        assert ("text_embeddings" in takes) == (kind.text is not TextUse.NONE), name
        if "text_aligned" in takes:
            assert head.text_aligned is False


def test_what_a_backbone_lacks_is_said_from_the_registry():
    zs, sg, tip, lp = (METHOD_KINDS[k] for k in ("zeroshot", "similarity_guided", "tip_adapter", "linear_probe"))
    assert "aligned" in zs.unmet_need("lite", has_text=True, text_aligned=False)
    assert "no text tower" in zs.unmet_need("lite", has_text=False, text_aligned=False)
    assert sg.unmet_need("lite", has_text=True, text_aligned=False) is None
    assert "needs a text tower" in sg.unmet_need("lite", has_text=False, text_aligned=False)
    assert tip.unmet_need("lite", False, False) is None and lp.unmet_need("lite", False, False) is None
    assert tip.uses_text(has_text=True) and not tip.uses_text(has_text=False) and not lp.uses_text(True)


def test_pipeline_plans_and_offline_read_the_registry():
    raw = {**RAW, "methods": [{"name": "cnn", "head": "cnn", "params": {"arch": "resnet18", "epochs": 1}},
                              {"name": "sg", "head": "similarity_guided", "prompts": "cbis_ddsm"},
                              {"name": "zs", "head": "zeroshot", "prompts": "cbis_ddsm"}]}
    cfg = load_config(raw=raw)
    assert [(p.label, p.backbone) for p in plan_methods(cfg)] == [("cnn", None), ("sg", "tiny-test"),
                                                                   ("zs", "tiny-test")]
    assert skip_reason(Plan("cnn", cfg.methods[0], None), None) is None
    off = load_config(raw=raw, offline=True)
    assert off.methods[0].params["arch"] == OFFLINE_CNN  # the CNN kind's offline_params
    assert off.backbones == ("efficientnet-lite0+minilm",)  # similarity_guided requires a text tower
    with pytest.raises(ConfigError, match="unknown head 'svm'"):
        method_kind("svm")


def test_no_module_outside_the_registry_branches_on_a_method_kind_name():
    pattern = re.compile(r"""(==|!=|\bin)\s*\(?["'](cnn|zeroshot|similarity_guided|tip_adapter)["']""")
    hits = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if p.name != "method_registry.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []
