"""Renderers and section helpers on hand-made documents: escaping, number formatting, chart metric choice."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.report.content import Bullets, Document, Note, Section, Table, ci_text, fmt, fmt_ci, fmt_p
from breastclip.report.docx import render_docx
from breastclip.report.html import render_html
from breastclip.report.model_card import render_markdown
from breastclip.report.sections import chart_metric, op_short


def _doc() -> Document:
    t = Table("t", "Results <b>", pd.DataFrame({"method": ["<script>alert(1)</script>", "b|c"], "auc": [0.91234, math.nan]}),
              caption="cap & more", flag_rows=[1], flag_note="flagged.")
    s = Section("Results & more").add("para <i>", Bullets(["x", "y"]), Note("careful", "warn"), t)
    return Document(title="T <1>", key_facts=[("k", "v <2>")], sections=[s])


def test_html_escapes_everything_and_puts_the_banner_first():
    html = render_html(_doc())
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "T &lt;1&gt;" in html and "v &lt;2&gt;" in html and "para &lt;i&gt;" in html
    assert '<tr class="flag">' in html and "Highlighted rows: flagged." in html
    assert html.index(RESEARCH_ONLY) < html.index("<h1>")
    assert '<td class="num">0.912</td>' in html and "<td>-</td>" in html.replace('<td class="num">-</td>', "<td>-</td>")


def test_docx_and_markdown_hold_the_same_cells():
    d = render_docx(_doc())
    assert d.paragraphs[0].text.endswith(RESEARCH_ONLY)
    body = [[c.text for c in r.cells] for r in d.tables[1].rows]
    assert body == [["method", "auc"], ["<script>alert(1)</script>", "0.912"], ["b|c", "-"]]
    md = render_markdown("Card", _doc().sections)
    assert "| b\\|c | - |" in md and RESEARCH_ONLY in md


def test_number_formatting():
    assert fmt(3) == "3" and fmt(0.123456) == "0.123" and fmt(float("nan")) == "-" and fmt(np.bool_(True)) == "yes"
    assert fmt_ci(0.9, 0.8, 0.95) == "0.900 (0.800-0.950)" and fmt_ci(0.9, math.nan, 1) == "0.900"
    assert ci_text(-0.147, -0.054) == "-0.147 to -0.054"
    assert fmt_p(0.0001) == "<0.001" and fmt_p(0.0312) == "0.031"


def test_chart_metric_falls_back_when_auc_is_undefined_in_every_group():
    rows = [("site", "X", "ok", "roc_auc", np.nan), ("site", "X", "ok", "balanced_accuracy", 0.7),
            ("site", "Y", "too_small", "roc_auc", np.nan), ("site", "Y", "too_small", "balanced_accuracy", np.nan)]
    sub = pd.DataFrame(rows, columns=["column", "value", "status", "metric", "estimate"])
    assert chart_metric(sub) == "balanced_accuracy"
    sub.loc[0, "estimate"] = 0.8
    assert chart_metric(sub) == "roc_auc"
    assert chart_metric(sub.assign(estimate=np.nan)) is None


def test_operating_point_summary_states_counts():
    op = {"policy": "youden", "threshold": 0.3, "tp": 9, "fn": 1, "tn": 17, "fp": 13, "sensitivity": 0.9,
          "specificity": 17 / 30}
    assert op_short(op, "malignant") == ("malignant vs rest: sensitivity 0.90 (9/10), specificity 0.57 (17/30) on "
                                         "test at t=0.300 (youden, chosen on validation)")
    assert op_short(None, "malignant").startswith("not available")
    # enough digits to apply the threshold (never 't=1.000' for 0.99993), and an unattainable rule says so
    assert "t=0.99993 " in op_short({**op, "threshold": 0.99993}, "malignant")
    unattainable = op_short({**op, "policy": "spec>=0.90", "threshold": float("nan"), "attainable": False}, "m")
    assert unattainable == "m vs rest: spec>=0.90 not attainable on validation (not applied)"
