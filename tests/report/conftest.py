"""Fixtures for the report tests: one synthetic report bundle per session (building it draws every figure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers beside the tests (report_synthetic.py, report_chromium.py)

from report_synthetic import synthetic_predictions


@pytest.fixture(scope="session")
def synthetic_report(tmp_path_factory):
    """A two-method, three-class report with histories, metadata and a small subgroup."""
    from breastclip.report import write_report

    pred, manifest = synthetic_predictions()
    histories = {"linear-probe": [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_loss": 1.1 / (i + 1) + 0.1}
                                  for i in range(12)]}
    out = tmp_path_factory.mktemp("report")
    paths = write_report(out, predictions=pred, metadata=manifest, histories=histories, n_boot=40, min_group_size=10,
                         dataset_name="synthetic-3class", run_info={"backbone": "efficientnet-lite0", "seed": 0,
                                                                    "config": {"head": {"C": 1.0}}},
                         leak_audit={"ok": True, "problems": []})
    return paths, pred, manifest
