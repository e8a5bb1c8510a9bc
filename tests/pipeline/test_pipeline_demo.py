"""`breastclip demo`: which data and backbone it picks (and says), and a full offline run on the synthetic set."""

from __future__ import annotations

import shutil

import pytest
from rich.console import Console

from breastclip import RESEARCH_ONLY
from breastclip.demo import (
    OFFLINE_BACKBONE,
    ONLINE_BACKBONE,
    choose_backbone,
    choose_data,
    demo_config,
    run_demo,
)


@pytest.fixture
def empty_medmnist_root(tmp_path, monkeypatch):
    root = tmp_path / "medmnist_root"
    root.mkdir()
    monkeypatch.setenv("MEDMNIST_ROOT", str(root))
    monkeypatch.setenv("BREASTCLIP_OFFLINE", "1")
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "user_cache"))  # the synthetic set goes there
    return root


@pytest.mark.realdata
def test_breastmnist_found_in_the_medmnist_root_or_via_data(shared_data, empty_medmnist_root, tmp_path):
    npz = shared_data / "breastmnist" / "original" / "breastmnist.npz"
    kind, path, why = choose_data(npz.parent, offline=True)  # --data FOLDER
    assert (kind, path) == ("breastmnist", npz) and "--data" in why
    assert choose_data(None, offline=True)[0] == "synthetic"
    shutil.copy(npz, empty_medmnist_root / "breastmnist.npz")
    kind, path, why = choose_data(None, offline=True)
    assert kind == "breastmnist" and path == empty_medmnist_root / "breastmnist.npz" and "locally" in why


def test_missing_data_argument_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no breastmnist.npz"):
        choose_data(tmp_path, offline=True)


@pytest.mark.slow
def test_offline_backbone_and_config(empty_medmnist_root):
    name, why = choose_backbone(offline=True)
    assert name in (OFFLINE_BACKBONE, ONLINE_BACKBONE)  # CLIP only when its weights are already on disk
    kind, path, dwhy = choose_data(None, offline=True)
    from breastclip.config import load_config
    from breastclip.demo import DemoChoice, _synthetic_root

    raw = demo_config(DemoChoice(kind, path or _synthetic_root(), dwhy, OFFLINE_BACKBONE, why), None)
    cfg = load_config(raw=raw)
    assert {m.head for m in cfg.methods} >= {"linear_probe", "mlp", "fc", "similarity_guided", "tip_adapter",
                                             "zeroshot"}
    assert "synthetic" in cfg.experiment.description


@pytest.mark.slow
def test_demo_offline_on_the_synthetic_set(empty_medmnist_root, tmp_path):
    console = Console(record=True, width=120)
    res = run_demo(offline=True, output=tmp_path / "demo", progress=False, console=console,
                   cache_dir=tmp_path / "cache")
    text = console.export_text()
    assert "synthetic" in text and "efficientnet-lite0" in text and RESEARCH_ONLY in text
    assert "Leaderboard" in text and str(res.report_html) in text.replace("\n", "")
    assert res.report_html.is_file() and len(res.leaderboard) >= 4
    assert "zeroshot" in res.skipped  # no aligned text tower offline: said, not hidden
    html = res.report_html.read_text()
    assert "synthetic" in html


def test_online_paths_fall_back_and_say_why(monkeypatch, tmp_path):
    """With a network the demo downloads BreastMNIST and CLIP weights; when either fails it falls back, saying so.
    (No network is touched: the download calls are replaced by ones that fail as a refused download would.)"""
    import breastclip.backbones as bb
    import breastclip.data.download as dl

    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "empty"))
    monkeypatch.delenv("BREASTCLIP_OFFLINE", raising=False)

    def refuse_download(name, **kw):
        raise dl.DownloadError("downloading breastmnist.npz through medmnist failed: HTTP 503")

    monkeypatch.setattr(dl, "download_dataset", refuse_download)
    kind, path, why = choose_data(None, offline=False)
    assert kind == "synthetic" and path is None and "synthetic" in why

    monkeypatch.setattr(dl, "is_offline", lambda host, **kw: False)
    monkeypatch.setattr(bb, "offline_status", lambda entry: (False, "needs one download"))

    def refuse_weights(name, *a, **k):
        raise bb.BackboneUnavailable("clip-vit-b32: could not download the OpenAI weights (HTTP 403)")

    monkeypatch.setattr(bb, "create_backbone", refuse_weights)
    name, why = choose_backbone(offline=False)
    assert name == OFFLINE_BACKBONE and "could not be fetched" in why and "HTTP 403" in why
