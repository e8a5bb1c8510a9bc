"""Presentation defects a new user saw in a real report (issue 13, item 7), one test each."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from docx.enum.section import WD_ORIENT

from breastclip.pipeline import RunResult, print_summary
from breastclip.report import figures as F
from breastclip.report.content import Document, Note, Section, Table, fmt_threshold
from breastclip.report.docx import render_docx
from breastclip.report.sections import (
    FigureWriter,
    calibration_figure,
    comparison_caption,
    op_short,
    statistical_methods,
    subgroup_operating_table,
)
from breastclip.report.views import MethodView


def _view(method: str, **kw) -> MethodView:
    base = dict(method=method, classes=["benign", "malignant"], positive="malignant", n_test=10, n_test_patients=10,
                headline={}, per_class=pd.DataFrame(), confusion=np.zeros((2, 2)))
    return MethodView(**{**base, **kw})


def test_statistical_methods_paragraph_is_said_once_for_methods_evaluated_alike():
    text = ("Method '{m}' was evaluated on the held-out test split (90 images from 90 patients). 95% confidence "
            "intervals are percentile bootstrap intervals from 1000 replicates.")
    views = [_view(m, methods_text=text.format(m=m)) for m in ("a", "b", "c", "d", "e")]
    paragraphs = statistical_methods(views)
    assert len(paragraphs) == 1 and paragraphs[0].startswith("Each method was evaluated")
    views.append(_view("f", methods_text=text.format(m="f").replace("1000", "200")))
    assert len(statistical_methods(views)) == 2


def test_ranked_auc_axis_ends_at_one():
    table = pd.DataFrame({"method": ["a", "b"], "auc": [0.97, 0.99], "auc_lo": [0.93, 0.975], "auc_hi": [1.0, 1.0]})
    fig = F.leaderboard(table)
    try:
        assert fig.axes[0].get_xlim()[1] <= 1.0
    finally:
        F.plt.close(fig)


def test_figure_count_counts_figures_not_files(tmp_path):
    from breastclip.report.bundle import ReportPaths

    files = [tmp_path / f"f{i}.{ext}" for i in range(34) for ext in ("png", "jpg")]
    paths = ReportPaths(tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, figures=files)
    assert len(paths.figures) == 68 and paths.n_figures == 34


def test_wide_docx_table_gets_a_landscape_page_and_the_next_content_is_portrait_again():
    wide = pd.DataFrame([range(15)], columns=[f"column {i}" for i in range(15)])
    doc = Document(title="t", sections=[Section("S").add(Table("narrow", "Narrow", pd.DataFrame({"a": [1]})),
                                                         Table("wide", "Wide", wide), "after")])
    d = render_docx(doc)
    orientations = [s.orientation for s in d.sections]
    assert orientations == [WD_ORIENT.PORTRAIT, WD_ORIENT.LANDSCAPE, WD_ORIENT.PORTRAIT]
    land = d.sections[1]
    assert land.page_width > land.page_height
    usable = land.page_width - land.left_margin - land.right_margin
    assert usable > d.sections[0].page_width - d.sections[0].left_margin - d.sections[0].right_margin


def test_comparison_caption_names_the_test_actually_used():
    boot = pd.DataFrame({"test": ["paired bootstrap (patients)"] * 2})
    assert "DeLong" not in comparison_caption(boot) and "paired bootstrap (patients)" in comparison_caption(boot)
    mixed = pd.DataFrame({"test": ["DeLong", "paired bootstrap (images)"]})
    assert "DeLong test (AUC) and paired bootstrap (images)" in comparison_caption(mixed)


def _bins(counts):
    edges = np.linspace(0, 1, len(counts) + 1)
    return [{"bin_lo": a, "bin_hi": b, "count": c, "confidence": (a + b) / 2 if c else math.nan,
             "accuracy": 0.9 if c else math.nan} for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)]


def test_calibration_with_every_prediction_in_one_bin_is_not_a_one_bar_plot(tmp_path):
    fw = FigureWriter(tmp_path)
    v = _view("a")
    saturated = {"ece": 0.05, "bins": _bins([0] * 14 + [50]), "positive_bins": None}
    block = calibration_figure(v, saturated, "a", fw)
    assert isinstance(block, Note) and "only 1 of 15" in block.text and not fw.saved
    pos = [{"bin_lo": r["bin_lo"], "bin_hi": r["bin_hi"], "count": r["count"], "mean_predicted": r["confidence"],
            "fraction_positive": r["accuracy"]} for r in _bins([10, 5, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 20])]
    block = calibration_figure(v, {**saturated, "positive_bins": pos}, "a", fw)
    assert block.title == "Calibration" and "P(malignant)" in block.caption and len(fw.saved) == 1
    block = calibration_figure(v, {"ece": 0.05, "bins": _bins([3] * 15)}, "a", fw)
    assert "top-label" in block.caption


def test_console_summary_repeats_a_failed_leak_audit():
    from rich.console import Console

    console = Console(record=True, width=200)
    result = RunResult(out_dir="results", leaderboard=pd.DataFrame(), best="a", report_html=None, seconds=1.0,
                       leak_audit={"ok": False, "problems": ["patient overlap: 3 patients in train and test"]})
    print_summary(result, console)
    text = console.export_text()
    assert "LEAK AUDIT FAILED" in text and "patient overlap: 3 patients in train and test" in text
    console = Console(record=True, width=200)
    print_summary(RunResult("results", pd.DataFrame(), "a", None, 1.0, leak_audit={"ok": True}), console)
    assert "LEAK" not in console.export_text()


def test_operating_point_is_never_printed_as_one():
    assert fmt_threshold(0.99987) == "0.99987" and fmt_threshold(0.9999999871) == "0.9999999871"
    assert fmt_threshold(0.412) == "0.412" and fmt_threshold(1.0) == "1 (exactly)"
    assert fmt_threshold(0.00012) == "0.00012"
    op = {"policy": "youden", "threshold": 0.99987, "tp": 1, "fn": 1, "tn": 1, "fp": 1, "sensitivity": 0.5,
          "specificity": 0.5}
    assert "t=0.99987" in op_short(op, "malignant") and "t=1.000" not in op_short(op, "malignant")


def test_subgroup_counts_print_as_integers():
    ops = pd.DataFrame({"column": ["site", "site"], "value": ["A", "B"], "n": [30, 4], "n_positive": [12, 1],
                        "status": ["ok", "too_small"], "policy": ["youden"] * 2, "threshold": [0.4, 0.4],
                        "tp": [10.0, np.nan], "fp": [3.0, np.nan], "tn": [15.0, np.nan], "fn": [2.0, np.nan],
                        "sensitivity": [10 / 12, np.nan], "specificity": [15 / 18, np.nan]})
    table = subgroup_operating_table(_view("a", subgroup_ops=ops, min_group_size=10), "a", "youden")
    d = render_docx(Document(title="t", sections=[Section("S").add(table)]))
    body = [[c.text for c in r.cells] for r in d.tables[-1].rows]
    header = body[0]
    row_a = dict(zip(header, body[1], strict=True))
    row_b = dict(zip(header, body[2], strict=True))
    assert (row_a["images"], row_a["malignant"], row_a["TP"], row_a["FN"]) == ("30", "12", "10", "2")
    assert (row_b["images"], row_b["malignant"], row_b["TP"]) == ("4", "1", "-")



def test_flow_diagram_keeps_long_exclusion_reasons_inside_the_figure():
    reasons = [f"{i} files skipped by the reader because their names do not follow the layout, e.g. "
               f"['a_very_long_file_name_{i}.png', 'another_one.png']" for i in range(1, 8)]
    fig = F.participant_flow("Read\n900 images", reasons, "Analysed\n800 images", [("Training", "500"),
                                                                                   ("Test", "300")])
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        for text in fig.axes[0].texts:
            ext = text.get_bbox_patch().get_window_extent(renderer) if text.get_bbox_patch() else \
                text.get_window_extent(renderer)
            assert box.x0 <= ext.x0 and ext.x1 <= box.x1 and box.y0 <= ext.y0 and ext.y1 <= box.y1, text.get_text()
        assert any("3 more reason(s)" in t.get_text() for t in fig.axes[0].texts)
    finally:
        F.plt.close(fig)


def test_console_summary_is_not_cut_when_piped():
    """Piped or logged output (no terminal, rich's default 80 columns) gets the whole leaderboard table, not cells
    cut to an ellipsis."""
    import io

    from rich.console import Console

    board = pd.DataFrame([{"rank": 1, "method": "a_rather_long_method_name", "selected": True, "status": "ok",
                           "selection_metric": "val_roc_auc", "selection_value": 0.91, "test_roc_auc": 0.877,
                           "test_roc_auc_ci_lo": 0.81, "test_roc_auc_ci_hi": 0.93, "threshold@youden": 0.41,
                           "test_sensitivity@youden": 0.8, "test_specificity@youden": 0.7,
                           "vs_selected_diff": None, "vs_selected_p_holm": None}])
    board.attrs.update({"primary": "roc_auc", "operating_point": "youden", "selected": "a_rather_long_method_name",
                        "selection_metric": "val_roc_auc", "baseline": "a_rather_long_method_name"})
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=False)
    print_summary(RunResult("results", board, "a_rather_long_method_name", None, 1.0), console)
    text = buf.getvalue()
    assert "0.877 (0.81-0.93)" in text and "…" not in text, text
