"""The report of a run: the participant flow records what the data step excluded (flow.json), the 2x2 table is
the leaderboard's selected method (the report does not re-rank), and [report.study] reaches the checklist."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from rich.console import Console

from breastclip.config import load_config
from breastclip.pipeline import run_experiment


@pytest.mark.slow
def test_run_report_holds_flow_contingency_and_checklist(tiny_raw):
    raw = tiny_raw(data={"subset": 30}, methods=tiny_raw()["methods"][:2],
                   report={"enabled": True, "study": {"reference_standard": "histopathology of every lesion"}})
    res = run_experiment(load_config(raw=raw), progress=False, console=Console(quiet=True))
    flow = json.loads((res.out_dir / "flow.json").read_text())
    kept = len(pd.read_csv(res.out_dir / "manifest.csv"))
    assert flow["source_images"] == 48 and flow["exclusions"] == [
        {"reason": "not in the stratified subset (data.subset = 30)", "images": 48 - kept}]
    html = res.report_html.read_text()
    part = re.search(r'<section id="flow">(.*?)</section>', html, flags=re.S).group(1)
    assert "not in the stratified subset (data.subset = 30)" in part
    contingency = re.search(r'<section id="contingency">(.*?)</section>', html, flags=re.S).group(1)
    assert f"Selected method: {res.best}." in contingency
    checklist = re.search(r'<section id="checklist">(.*?)</section>', html, flags=re.S).group(1)
    assert "histopathology of every lesion" in checklist
