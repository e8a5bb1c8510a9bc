"""Shared fixtures. Real-data tests read ../shared/data; under CI=true a missing folder fails, never skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("BREASTCLIP_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; fails the test under CI=true when it is missing, skips elsewhere."""
    root = shared_data_dir()
    if not (root / "README.md").is_file():
        msg = f"real data folder {root} is missing (set BREASTCLIP_SHARED_DATA or place shared/ beside the repo)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session", autouse=True)
def _users_cache_is_never_touched(tmp_path_factory):
    """The suite uses one session cache root (BREASTCLIP_CACHE), never the user's ~/.cache/breastclip: tests that
    embed by backbone name, or run with no embed.cache_dir, would otherwise leave entries in the real cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BREASTCLIP_CACHE", str(tmp_path_factory.mktemp("breastclip-cache")))
    yield
    mp.undo()


#: Folders the tools themselves keep in a checkout (caches, the CI venv); anything else a test creates is a leak.
TOOL_ENTRIES = {".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis", "__pycache__", ".venv", ".coverage"}
#: Ignored folders where a leaking test would hide its files from `git status` (results of `breastclip run`...).
WATCHED = ("results", "runs", ".cache")


def _checkout_entries() -> set[str]:
    seen = {p.name for p in REPO.iterdir()} - TOOL_ENTRIES
    for name in WATCHED:
        if (REPO / name).is_dir():
            seen |= {f"{name}/{p.name}" for p in (REPO / name).iterdir()}
    return seen


@pytest.fixture(autouse=True)
def _checkout_stays_clean():
    """Tests write to temporary folders only: fail the test that leaves a new file or folder in the checkout."""
    before = _checkout_entries()
    yield
    new = sorted(_checkout_entries() - before)
    if new:
        pytest.fail(f"the test wrote into the checkout {REPO}: {new} (write to tmp_path instead)", pytrace=False)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: gpu tests cannot run
        has_cuda = False
    if not has_cuda:
        skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)
