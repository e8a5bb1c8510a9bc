"""MedMNIST reader: the real BreastMNIST npz, PNG export and resume, download path, bad files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from breastclip.data.sources import SourceError, detect_format, read_source


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path / "cache"))


@pytest.mark.realdata
def test_real_breastmnist_official_splits_and_labels(shared_data, tmp_path):
    src = shared_data / "breastmnist"
    assert detect_format(src) == "medmnist"
    before = sorted(src.rglob("*"))
    m = read_source(src).validate()
    assert sorted(src.rglob("*")) == before  # nothing written into the data folder
    from medmnist import INFO

    assert INFO["breastmnist"]["label"] == {"0": "malignant", "1": "normal, benign"}
    assert m.classes == ["malignant", "normal_or_benign"]
    per = m.summary()["classes_per_split"]
    assert per == {"train": {"normal_or_benign": 399, "malignant": 147}, "val": {"normal_or_benign": 57, "malignant": 21},
                   "test": {"normal_or_benign": 114, "malignant": 42}}
    assert m.root.is_relative_to(tmp_path / "cache" / "medmnist")
    # exported pixels are the npz's pixels, label ids the official ones
    data = np.load(src / "original" / "breastmnist.npz")
    row = m.df[(m.df["split"] == "test") & (m.df["index_in_split"] == 17)].iloc[0]
    assert np.array_equal(np.asarray(Image.open(m.resolve(row["image"]))), data["test_images"][17])
    assert row["label_id"] == int(data["test_labels"].reshape(-1)[17]) and row["id"] == "breastmnist:test/17"


@pytest.mark.realdata
def test_export_resumes_and_is_reused(shared_data, tmp_path):
    npz = tmp_path / "breastmnist.npz"
    shutil.copy(shared_data / "breastmnist" / "original" / "breastmnist.npz", npz)
    m = read_source(npz, cache_dir=tmp_path / "c")
    first = m.resolve("train/00003.png")
    kept = m.resolve("train/00004.png")
    stamp = kept.stat().st_mtime_ns
    first.unlink()  # as if the export had been interrupted
    (m.root / "val" / "00001.png").unlink()
    again = read_source(npz, cache_dir=tmp_path / "c").validate()
    assert again.root == m.root and first.is_file()
    assert kept.stat().st_mtime_ns == stamp  # existing files are not rewritten
    assert len(list(m.root.glob("*/*.png"))) == 780
    # a different npz (other content) gets its own folder
    data = dict(np.load(npz))
    data["train_labels"] = 1 - data["train_labels"]
    np.savez(npz, **data)
    changed = read_source(npz, cache_dir=tmp_path / "c")
    assert changed.root != m.root and changed.class_counts() != m.class_counts()


def test_synthetic_sibling_with_rgb_images_any_size(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 7, (n, 1))
    np.savez(tmp_path / "dermamnist_64.npz", **arrays)
    m = read_source(tmp_path / "dermamnist_64.npz").validate()
    assert len(m) == 10 and len(m.classes) == 7
    assert "melanoma" in m.classes  # INFO names, made identifier-safe
    assert np.array_equal(np.asarray(Image.open(m.paths()[0])), arrays["train_images"][0])


def test_missing_file_downloads_with_medmnist_url_and_md5(tmp_path, monkeypatch):
    calls = []

    def fake_download_url(url, root, filename, md5):  # stands in for the network; writes a tiny valid file
        calls.append((url, filename, md5))
        arrays = {f"{s}_{k}": np.zeros((2, 28, 28), np.uint8) if k == "images" else np.array([[0], [1]])
                  for s in ("train", "val", "test") for k in ("images", "labels")}
        np.savez(f"{root}/{filename}", **arrays)

    import torchvision.datasets.utils as tvu

    monkeypatch.setattr(tvu, "download_url", fake_download_url)
    m = read_source(tmp_path / "dl", format="medmnist", flag="breastmnist")
    from medmnist import INFO

    assert calls == [(INFO["breastmnist"]["url"], "breastmnist.npz", INFO["breastmnist"]["MD5"])]
    assert len(m) == 6 and (tmp_path / "dl" / "breastmnist.npz").is_file()
    calls.clear()
    read_source(tmp_path / "dl" / "breastmnist_128.npz", format="medmnist")
    assert calls[0][0] == INFO["breastmnist"]["url_128"] and calls[0][2] == INFO["breastmnist"]["MD5_128"]


def test_offline_download_names_the_file_and_where(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(**kw):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(tvu, "download_url", offline)
    with pytest.raises(SourceError) as e:
        read_source(tmp_path, format="medmnist", flag="breastmnist", size=224)
    text = str(e.value)
    assert "breastmnist_224.npz" in text and str(tmp_path / "breastmnist_224.npz") in text
    assert "zenodo.org" in text and "Network is unreachable" in text
    with pytest.raises(SourceError, match="is missing"):
        read_source(tmp_path, format="medmnist", flag="breastmnist", download=False)


def test_bad_npz_files(tmp_path):
    (tmp_path / "breastmnist.npz").write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="not a readable .npz"):
        read_source(tmp_path / "breastmnist.npz")
    np.savez(tmp_path / "pathmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(SourceError, match="lacks MedMNIST arrays \\['train_labels'\\]"):
        read_source(tmp_path / "pathmnist.npz")
    np.savez(tmp_path / "chestmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8),
             train_labels=np.zeros((2, 14)))
    with pytest.raises(SourceError, match="multi-label"):
        read_source(tmp_path / "chestmnist.npz")
    np.savez(tmp_path / "octmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8),
             train_labels=np.array([[0], [9]]))
    with pytest.raises(SourceError, match="label 9 in train"):
        read_source(tmp_path / "octmnist.npz")


@pytest.mark.realdata
def test_a_run_exports_medmnist_pngs_under_its_own_cache_root(shared_data, tmp_path):
    """An experiment's embed.cache_dir is its cache root: the MedMNIST PNG export goes under it (medmnist/), like its
    embeddings and fold results, not under the user's default root; an explicit data.options.cache_dir still wins."""
    from breastclip.config import load_config
    from breastclip.pipeline.data_step import load_manifest

    npz = shared_data / "breastmnist" / "original" / "breastmnist.npz"
    raw = {"backbones": ["tiny-test"], "data": {"source": str(npz)}, "embed": {"cache_dir": str(tmp_path / "root")},
           "methods": [{"name": "lp", "head": "linear_probe"}]}
    m = load_manifest(load_config(raw=raw))
    assert m.root.is_relative_to(tmp_path / "root" / "medmnist")
    assert not (tmp_path / "cache" / "medmnist").exists()  # the user's (here: the fixture's) root is untouched
    raw["data"]["options"] = {"cache_dir": str(tmp_path / "mine")}
    assert load_manifest(load_config(raw=raw)).root.is_relative_to(tmp_path / "mine")
