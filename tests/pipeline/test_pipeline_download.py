"""`data download`: Kaggle through kagglehub and BreastMNIST through medmnist, with a clear offline error.

No test reaches the network: BREASTCLIP_OFFLINE=1 declares the machine offline, and the one test that goes past
the network check replaces ``kagglehub.dataset_download`` to record the call it would make.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from breastclip.cli import app
from breastclip.data import download as dl


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("BREASTCLIP_OFFLINE", "1")


def test_known_sets_have_slugs_or_say_why():
    assert dl.DATASETS["cbis-ddsm"].slug == "awsaf49/cbis-ddsm-breast-cancer-image-dataset"
    assert dl.DATASETS["breakhis"].slug == "ambarish/breakhis"
    assert dl.DATASETS["mediclip"].slug.startswith("tiwariar273/")
    assert dl.DATASETS["breastmnist"].kind == "medmnist"
    with pytest.raises(dl.DownloadError, match="--slug"):
        dl.download_dataset("dbt")
    with pytest.raises(dl.DownloadError, match="unknown data set 'nope'"):
        dl.download_dataset("nope")


def test_kaggle_offline_error_is_clear(offline, tmp_path):
    with pytest.raises(dl.DownloadError) as e:
        dl.download_dataset("cbis-ddsm", cache_dir=tmp_path)
    msg = str(e.value)
    assert "no network" in msg and "awsaf49/cbis-ddsm-breast-cancer-image-dataset" in msg and str(tmp_path) in msg
    assert not (tmp_path / "cbis-ddsm" / dl.PROVENANCE).exists()


def test_medmnist_offline_error_names_the_file_and_where(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "mm"))
    with pytest.raises(dl.DownloadError) as e:
        dl.download_dataset("breastmnist", cache_dir=tmp_path)
    assert "breastmnist.npz" in str(e.value) and str(tmp_path / "mm") in str(e.value)


def test_kaggle_download_call_and_provenance(monkeypatch, tmp_path):
    import kagglehub

    calls = []

    def fake(handle, path=None, *, force_download=False, output_dir=None):
        calls.append((handle, output_dir, force_download))
        (tmp_path / "sets" / "breakhis" / "BreaKHis_v1").mkdir(parents=True, exist_ok=True)
        return output_dir

    monkeypatch.setattr(kagglehub, "dataset_download", fake)
    monkeypatch.setattr(dl, "is_offline", lambda host, **kw: False)
    path = dl.download_dataset("breakhis", cache_dir=tmp_path / "sets")
    assert calls == [("ambarish/breakhis", str(tmp_path / "sets" / "breakhis"), False)]
    assert path == tmp_path / "sets" / "breakhis"
    info = json.loads((path / dl.PROVENANCE).read_text())
    assert info["slug"] == "ambarish/breakhis" and info["reader"] == "breakhis"
    dl.download_dataset("breakhis", cache_dir=tmp_path / "sets")  # finished copy: no second download
    assert len(calls) == 1


def test_kaggle_auth_failure_explains_credentials(monkeypatch, tmp_path):
    import kagglehub

    def refuse(*a, **k):
        raise RuntimeError("401 Client Error: Unauthorized")

    monkeypatch.setattr(kagglehub, "dataset_download", refuse)
    monkeypatch.setattr(dl, "is_offline", lambda host, **kw: False)
    with pytest.raises(dl.DownloadError, match="kaggle.json"):
        dl.download_dataset("busi", cache_dir=tmp_path)


@pytest.mark.realdata
def test_local_breastmnist_is_found_and_copied(shared_data, tmp_path, monkeypatch):
    root = tmp_path / "mm"
    root.mkdir()
    shutil.copy(shared_data / "breastmnist" / "original" / "breastmnist.npz", root / "breastmnist.npz")
    monkeypatch.setenv("MEDMNIST_ROOT", str(root))
    monkeypatch.setenv("BREASTCLIP_OFFLINE", "1")
    assert dl.find_medmnist("breastmnist") == root / "breastmnist.npz"
    out = dl.download_dataset("breastmnist", cache_dir=tmp_path / "sets")  # offline, but found locally
    assert out.is_file() and out.stat().st_size == (root / "breastmnist.npz").stat().st_size


def test_cli_download_list_and_offline_exit(offline, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["data", "download", "--list"])
    assert res.exit_code == 0 and "cbis-ddsm" in res.output and "breastmnist" in res.output
    res = runner.invoke(app, ["data", "download", "breakhis", "--dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "no network" in res.output and "ambarish/breakhis" in res.output
