"""Fixtures for the backbone tests."""

from __future__ import annotations

import pytest
from backbone_fixtures import make_manifest


@pytest.fixture
def manifest(tmp_path):
    return make_manifest(tmp_path / "images")
