"""Fixtures for the backbone tests."""

from __future__ import annotations

import pytest
from backbone_fixtures import make_manifest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Weight fingerprints and default caches go to a temp folder, never the user's ~/.cache."""
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path_factory.getbasetemp() / "breastclip-cache"))


@pytest.fixture
def manifest(tmp_path):
    return make_manifest(tmp_path / "images")
