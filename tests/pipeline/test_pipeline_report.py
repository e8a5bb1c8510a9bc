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
    if res.best is not None:  # the leaderboard's selection (on validation), never re-ranked
        assert f"Selected method: {res.best}." in contingency
    else:  # every method flagged on this tiny set: the section says so instead of crowning one
        assert "No method learned this task" in contingency
    checklist = re.search(r'<section id="checklist">(.*?)</section>', html, flags=re.S).group(1)
    assert "histopathology of every lesion" in checklist


@pytest.mark.slow
def test_run_report_embeds_gradcam_cases_and_retrieval_evidence(tiny_raw):
    raw = tiny_raw(methods=tiny_raw()["methods"][:1], report={"enabled": True, "gradcam": 4, "neighbours": 3})
    res = run_experiment(load_config(raw=raw), progress=False, console=Console(quiet=True))
    cases = pd.read_csv(res.out_dir / "gradcam" / "cases.csv")
    shown = res.leaderboard.attrs["baseline"]  # the selected method; when none is, the first row (for inspection)
    assert len(cases) == 4 and set(cases["method"]) == {shown} and shown in (res.best, res.leaderboard["method"][0])
    pred = pd.read_csv(res.out_dir / "predictions.csv")
    test = pred[(pred["split"] == "test") & (pred["method"] == shown)].set_index("id")
    for _, c in cases.iterrows():  # the kind of each case agrees with its probability and the frozen threshold
        if pd.isna(c["threshold"]):  # the rule was not attainable on validation: no threshold, no kinds
            assert c["category"] == "-"
            continue
        pos = test.loc[c["id"], "y_true"] == c["positive"]
        hit = test.loc[c["id"], f"p_{c['positive']}"] >= c["threshold"]
        assert c["category"] == {(True, True): "TP", (True, False): "FN", (False, True): "FP",
                                 (False, False): "TN"}[(bool(pos), bool(hit))]
    html = res.report_html.read_text()
    gradcam = re.search(r'<section id="gradcam">(.*?)</section>', html, flags=re.S).group(1)
    assert gradcam.count("<img ") >= 1 and "ROAD" in gradcam
    neighbours = pd.read_csv(res.out_dir / "neighbours.csv")
    manifest = pd.read_csv(res.out_dir / "manifest.csv").set_index("id")
    assert (manifest.loc[neighbours["id"], "split"] == "train").all()  # neighbours come from training only
    assert (manifest.loc[neighbours["id"], "label"].to_numpy() == neighbours["label"].to_numpy()).all()
    assert neighbours.groupby("query_id")["similarity"].apply(lambda s: s.is_monotonic_decreasing).all()
    part = re.search(r'<section id="neighbours">(.*?)</section>', html, flags=re.S).group(1)
    assert part.count("<img ") == 1


@pytest.mark.slow
def test_shared_reports_carry_no_local_absolute_paths(tiny_raw, tmp_path_factory, monkeypatch):
    """report.html, MODEL_CARD.md, metrics.json and environment.json: paths relative to the results folder."""
    base = str(tmp_path_factory.getbasetemp())  # every path of this run (data, cache, output) lies under it
    monkeypatch.setenv("BREASTCLIP_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache"))
    raw = tiny_raw(methods=tiny_raw()["methods"][:1], report={"enabled": True})
    res = run_experiment(load_config(raw=raw), progress=False, console=Console(quiet=True))
    for name in ("report.html", "MODEL_CARD.md", "metrics.json", "environment.json"):
        text = (res.out_dir / name).read_text()
        assert base not in text, name
    card = (res.out_dir / "MODEL_CARD.md").read_text()
    assert "| Source | ../../../synthetic" in card  # relative to the results folder, still findable
    env = json.loads((res.out_dir / "environment.json").read_text())
    assert not env["env"]["BREASTCLIP_CACHE"].startswith("/")
