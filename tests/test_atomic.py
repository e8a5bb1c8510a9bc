"""breastclip.atomic: the one atomic-write helper (unique temp file, umask permissions) and its users."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from breastclip.atomic import atomic_path, atomic_write_bytes, atomic_write_text

SRC = Path(__file__).resolve().parents[1] / "src" / "breastclip"


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_written_files_follow_the_umask_not_0600(tmp_path, umask_027):
    a = atomic_write_text(tmp_path / "a.json", "{}")
    assert stat.S_IMODE(a.stat().st_mode) == 0o640
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o640


def test_results_state_and_checkpoints_follow_the_umask(tmp_path, umask_027):
    import torch

    from breastclip.finetune.checkpoint import save_checkpoint
    from breastclip.pipeline.results import write_json

    write_json(tmp_path / "metrics.json", {"a": 1})
    w = save_checkpoint(tmp_path / "ckpt", torch.nn.Linear(2, 2), {"epoch": 1})
    for p in (tmp_path / "metrics.json", w, tmp_path / "ckpt.json"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p


def test_concurrent_writers_of_one_file_never_collide(tmp_path):
    target = tmp_path / "shared.json"
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                atomic_write_bytes(target, f"{n}-{i}".encode() * 100)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not [p for p in tmp_path.iterdir() if p.name != "shared.json"]  # no temp file left behind
    text = target.read_text()
    unit = text[: len(text) // 100]
    assert unit and text == unit * 100  # one writer's whole content, never a mix


def test_failed_write_keeps_the_old_file(tmp_path):
    target = atomic_write_text(tmp_path / "t.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_leak_fingerprints_do_not_use_a_fixed_temp_name(tmp_path):
    """Two runs sharing a cache failed on '.../leak_fingerprints.json.tmp' (a fixed name): any fixed name is gone."""
    from breastclip.data.leaks import _save_cache

    cache = tmp_path / "leak_fingerprints.json"
    (tmp_path / "leak_fingerprints.json.tmp").mkdir()  # what another run's temp file would block
    _save_cache(cache, {"k": 1})
    assert cache.read_text() == '{"k": 1}'


def test_synthetic_and_medmnist_exports_have_no_fixed_temp_name(tmp_path):
    from breastclip.data.synthetic import make_synthetic

    root = tmp_path / "s"
    (root).mkdir()
    (root / "labels.csv.tmp").mkdir()  # blocks the old fixed temp name
    make_synthetic(root, n_patients=2, images_per_patient=1, size=16)
    assert (root / "labels.csv").is_file()


def test_one_atomic_write_helper_for_the_package():
    """Every temp-then-rename write goes through breastclip.atomic (no mkstemp / fixed '.tmp' names elsewhere)."""
    offenders = []
    for py in SRC.rglob("*.py"):
        if py.name == "atomic.py":
            continue
        text = py.read_text(encoding="utf-8")
        for needle in ("mkstemp(", '+ ".tmp"', 'f".{name}.tmp"', "os.replace("):
            if needle in text:
                offenders.append(f"{py.relative_to(SRC)}: {needle}")
    assert not offenders, offenders
