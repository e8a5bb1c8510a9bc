"""One list of image suffixes for the package, and folder walks that survive directory symlink loops."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastclip.cli import app
from breastclip.data.images import DICOM_SUFFIXES, IMAGE_SUFFIXES, load_image
from breastclip.data.sources._files import image_files
from breastclip.data.sources.folders import read_folders

SRC = Path(__file__).resolve().parents[2] / "src" / "breastclip"


def _img(path: Path, value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((12, 12), value, dtype=np.uint8)
    arr[3:8, 3:8] = 255 - value
    Image.fromarray(arr).save(path)
    return path


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES - set(DICOM_SUFFIXES)))
def test_every_listed_suffix_decodes(tmp_path, suffix):
    path = _img(tmp_path / f"x{suffix}")
    assert load_image(path).shape[:2] == (12, 12)


def test_no_second_suffix_list_in_the_package():
    """Four lists used to disagree (predict dropped .gif/.pnm that the readers accept): only data/images.py has one."""
    hits = []
    for py in SRC.rglob("*.py"):
        text = py.read_text(encoding="utf-8")
        if re.search(r"""["']\.pgm["']""", text) and py.relative_to(SRC).as_posix() != "data/images.py":
            hits.append(py.relative_to(SRC).as_posix())
    assert not hits


def test_predict_collects_gif_and_pnm_from_a_folder(tmp_path):
    from breastclip.predict import collect_images

    for name in ("a.png", "b.gif", "c.pnm", "d.webp", "sub/e.ppm"):
        _img(tmp_path / "in" / name)
    (tmp_path / "in" / "notes.txt").write_text("x")
    got = sorted(p.name for p in collect_images([tmp_path / "in"]))
    assert got == ["a.png", "b.gif", "c.pnm", "d.webp", "e.ppm"]


@pytest.fixture
def looped_tree(tmp_path) -> Path:
    root = tmp_path / "data"
    for i in range(3):
        _img(root / "benign" / f"b{i}.png", 60)
    for i in range(2):
        _img(root / "malignant" / f"m{i}.png", 200)
    os.symlink("..", root / "benign" / "loop")  # benign/loop -> .. : the whole tree again, forever
    os.symlink("../..", root / "malignant" / "up")
    return root


def test_folder_reader_skips_symlink_loops_and_reports_each_once(looped_tree):
    m = read_folders(looped_tree)
    counts = m.df["label"].value_counts().to_dict()
    assert counts == {"benign": 3, "malignant": 2}
    assert all(p.startswith(lbl) for p, lbl in zip(m.df["image"], m.df["label"], strict=True))
    notes = [n for n in m.notes if "symlink loop" in n]
    assert len(notes) == 1 and "2 directory symlink loop(s)" in notes[0]
    assert "benign/loop -> .." in notes[0] and "malignant/up -> ../.." in notes[0]
    assert str(looped_tree) not in notes[0]  # relative to the data root


def test_image_files_and_inspect_on_a_looped_tree(looped_tree):
    loops: set[Path] = set()
    files = image_files(looped_tree, loops=loops)
    assert len(files) == 5 and len(loops) == 2
    r = CliRunner().invoke(app, ["data", "inspect", str(looped_tree)])
    assert "5 images" in r.output and "symlink loop" in r.output, r.output
