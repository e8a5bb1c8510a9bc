"""What a reviewer of a diagnostic-accuracy paper asks for: the participant flow (STARD 19), the 2x2 table at the
frozen operating point with CIs for sensitivity, specificity, PPV and NPV (STARD 23), and the STARD 2015 /
TRIPOD+AI / CLAIM checklist mapped to the report's sections."""

from __future__ import annotations

import re

import docx
import numpy as np
import pandas as pd
import pytest
from report_synthetic import synthetic_predictions

from breastclip.evaluation import evaluate_predictions
from breastclip.evaluation.thresholds import choose_threshold
from breastclip.pipeline.data_step import reader_flow
from breastclip.report import write_report
from breastclip.report.checklist import GUIDELINES, ITEMS, checklist_table
from breastclip.report.flow import flow_view

CLASSES = ["benign", "malignant", "normal"]


def _section(html: str, anchor: str) -> str:
    m = re.search(rf'<section id="{anchor}">(.*?)</section>', html, flags=re.S)
    assert m, f"no section #{anchor}"
    return m.group(1)


@pytest.fixture(scope="module")
def binary_report(tmp_path_factory):
    """Two binary methods; the weaker one is the leaderboard's selection, so the report must not re-rank."""
    pred, manifest = synthetic_predictions(classes=("benign", "malignant"), n_val=80, n_test=120, seed=3,
                                           images_per_patient=2)
    out = tmp_path_factory.mktemp("binary")
    paths = write_report(out, predictions=pred, metadata=manifest, n_boot=60, selected_method="zero-shot",
                         flow={"source_images": 400, "exclusions": [{"reason": "not in the subset", "images": 75}],
                               "excluded_ids": {"could not be decoded": ["img0000"]}},
                         study={"blinding": "Readers of the reference standard did not see the model output."},
                         leak_audit={"ok": True, "problems": []})
    return paths, pred, manifest


def test_contingency_table_counts_the_frozen_threshold_of_the_selected_method(binary_report):
    paths, pred, _ = binary_report
    html = paths.html.read_text()
    part = _section(html, "contingency")
    assert "zero-shot" in part and "linear-probe" not in part  # the given selection, not the best AUC
    z = pred[pred["method"] == "zero-shot"]
    val, test = z[z["split"] == "val"], z[z["split"] == "test"]
    t = choose_threshold((val["y_true"] == "malignant").to_numpy(), val["p_malignant"].to_numpy(), "youden")
    hit = test["p_malignant"].to_numpy() >= t
    pos = (test["y_true"] == "malignant").to_numpy()
    tp, fp, fn, tn = (int(np.sum(a & b)) for a, b in ((hit, pos), (hit, ~pos), (~hit, pos), (~hit, ~pos)))
    table = pd.read_html(_table_html(part, "contingency-2x2"))[0]
    assert table.iloc[0, 1:].tolist() == [tp, fp, tp + fp] and table.iloc[1, 1:].tolist() == [fn, tn, fn + tn]
    rates = pd.read_html(_table_html(part, "contingency-rates"))[0].set_index("measure")
    assert rates.loc["Positive predictive value (PPV)", "count"] == f"{tp}/{tp + fp}"
    assert rates.loc["Negative predictive value (NPV)", "count"] == f"{tn}/{tn + fn}"
    for measure in rates.index:  # every rate with its CI: "0.812 (0.700-0.900)"
        assert re.fullmatch(r"\d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\)", rates.loc[measure, "estimate (95% CI)"]), measure
    assert "resampling patients" in part


def _table_html(section: str, key: str) -> str:
    from io import StringIO

    m = re.search(rf'<h3 id="{key}">.*?(<table>.*?</table>)', section, flags=re.S)
    assert m, key
    return StringIO(m.group(1))


def test_every_method_has_its_2x2_row_in_the_appendix(binary_report):
    html = binary_report[0].html.read_text()
    rows = pd.read_html(_table_html(_section(html, "contingency-all"), "contingency-methods"))[0]
    assert sorted(rows["method"]) == ["linear-probe", "zero-shot"]
    assert {"PPV (95% CI)", "NPV (95% CI)", "TP", "FP", "FN", "TN"} <= set(rows.columns)


def test_multiclass_contingency_gives_the_confusion_counts_and_the_one_vs_rest_2x2(synthetic_report):
    paths, pred, _ = synthetic_report
    part = _section(paths.html.read_text(), "contingency")
    cm = pd.read_html(_table_html(part, "confusion-counts"))[0]
    assert cm["total"].sum() == pred.loc[pred["split"] == "test", "id"].nunique()
    assert "malignant vs not malignant" in part or "reference: not malignant" in part


def test_an_unknown_selected_method_is_refused(tmp_path):
    pred, manifest = synthetic_predictions(n_val=30, n_test=30)
    with pytest.raises(ValueError, match="selected_method 'nope'"):
        write_report(tmp_path, predictions=pred, metadata=manifest, n_boot=0, selected_method="nope")


def test_flow_counts_exclusions_and_each_partition(binary_report):
    paths, pred, manifest = binary_report
    part = _section(paths.html.read_text(), "flow")
    assert part.count("<img ") == 1 and "data:image/png;base64," in part
    fv = flow_view(manifest, pred, ["benign", "malignant"],
                   {"source_images": 400, "exclusions": [{"reason": "not in the subset", "images": 75}],
                    "excluded_ids": {"could not be decoded": ["img0000"]}})
    assert fv.source_images == 400 and fv.exclusions == [("not in the subset", 75), ("could not be decoded", 1)]
    split_of_img0 = manifest.set_index("id").loc["img0000", "split"]
    assert fv.parts.loc[split_of_img0, "images"] == (manifest["split"] == split_of_img0).sum() - 1
    assert fv.analysed == len(manifest) - 1
    assert fv.parts.loc["train", "patients"] == manifest[manifest["split"] == "train"]["patient_id"].nunique()
    table = pd.read_html(_table_html(part, "flow-table"))[0]
    assert table["detail"].str.contains("not in the subset").any()


def test_flow_without_a_record_lists_evaluated_images_that_got_no_prediction():
    pred, manifest = synthetic_predictions(n_val=30, n_test=30)
    dropped = pred[pred["split"] == "test"]["id"].iloc[0]
    fv = flow_view(manifest, pred[pred["id"] != dropped], CLASSES)
    assert fv.exclusions == [("no prediction from any method (e.g. not decodable)", 1)]
    assert fv.source_images == len(manifest) and fv.analysed == len(manifest) - 1


def test_reader_notes_with_a_count_become_exclusions():
    from breastclip.data.manifest import Manifest

    m = Manifest.from_records([{"image": "a.png", "label": "x"}, {"image": "b.png", "label": "y"}], ".", name="t",
                               source="t")
    m.notes = ["12 files not named like BreakHis were skipped, e.g. ['x']", "no patient ids in the source"]
    flow = reader_flow(m)
    assert flow["source_images"] == 14 and flow["exclusions"][0]["images"] == 12


def test_checklist_covers_the_three_guidelines_and_says_what_is_missing(binary_report):
    paths = binary_report[0]
    part = _section(paths.html.read_text(), "checklist")
    for g in GUIDELINES:
        assert f">{g}</h3>" in part
    assert len([i for i in ITEMS if i[0] == "STARD 2015"]) == 34  # items 1-30 with 10a/b, 12a/b, 13a/b, 21a/b
    assert "Readers of the reference standard did not see the model output." in part  # supplied by the user
    assert "set report.study.reference_standard in the config" in part  # not supplied: said so, with the key
    assert "report.gradcam = 0" in part  # no Grad-CAM section in this report
    stard = pd.read_html(_table_html(part, "checklist-stard"))[0].set_index("item")
    assert stard.loc["23", "status"] == "reported" and "#contingency" in stard.loc["23", "where answered"]
    assert stard.loc["19", "where answered"].startswith("section 'Participant flow' (#flow): 400 images read, 76 "
                                                          "excluded")
    assert stard.loc["25", "status"] == "not applicable"


def test_checklist_points_only_at_sections_that_exist():
    table = checklist_table({}, {}, anchors=set())
    assert not table["status"].eq("reported").any()
    assert table["where answered"].str.startswith(("not reported here, because", "not applicable")).all()


def test_docx_carries_the_flow_figure_the_2x2_table_and_the_checklist(binary_report):
    paths = binary_report[0]
    d = docx.Document(str(paths.docx))
    headings = [p.text for p in d.paragraphs if p.style.name.startswith("Heading")]
    for h in ("Participant flow", "Diagnostic accuracy at the operating point (2x2 table)",
              "Appendix: reporting-guideline checklist", "STARD 2015", "TRIPOD+AI", "CLAIM 2024"):
        assert h in headings, h
    captions = [p.text for p in d.paragraphs if p.style.name == "Caption"]
    assert any(c.startswith("Figure ") and "Participant flow" in c for c in captions)
    cells = {c.text for t in d.tables for r in t.rows for c in r.cells}
    assert "Positive predictive value (PPV)" in cells and "Negative predictive value (NPV)" in cells


def test_study_section_quotes_the_investigators(binary_report):
    part = _section(binary_report[0].html.read_text(), "study")
    assert "Readers of the reference standard did not see the model output." in part


def test_evaluation_is_reused_for_the_selected_method(tmp_path):
    pred, manifest = synthetic_predictions(classes=("benign", "malignant"), methods=("a",), n_val=40, n_test=40)
    ev = evaluate_predictions(pred, manifest, method="a", n_boot=20)
    paths = write_report(tmp_path, predictions=pred, metadata=manifest, evaluations={"a": ev}, n_boot=20,
                         selected_method="a")
    op = ev.operating_points.iloc[0]
    part = _section(paths.html.read_text(), "contingency")
    assert f"{int(op['tp'])}/{int(op['tp'] + op['fn'])}" in part


def test_fairness_section_gives_the_largest_gap_with_a_ci(tmp_path):
    pred, manifest = synthetic_predictions(classes=("benign", "malignant"), methods=("a",), n_val=80, n_test=240,
                                           seed=5)
    paths = write_report(tmp_path, predictions=pred, metadata=manifest, n_boot=50, min_group_size=10)
    part = _section(paths.html.read_text(), "fairness")
    rows = pd.read_html(_table_html(part, "fairness-gaps"))[0]
    assert set(rows["metric"]) == {"Sensitivity", "Specificity", "ROC AUC"} and set(rows["attribute"]) == {"device"}
    assert rows["95% CI of the gap"].str.fullmatch(r"-?\d\.\d{3}(-| to )-?\d\.\d{3}").all()
    assert (rows["groups compared"] >= 2).all()


def test_fairness_section_says_why_it_is_empty(tmp_path):
    pred, manifest = synthetic_predictions(classes=("benign", "malignant"), methods=("a",), n_val=40, n_test=60)
    paths = write_report(tmp_path, predictions=pred, metadata=manifest, n_boot=0, min_group_size=1000)
    part = _section(paths.html.read_text(), "fairness")
    assert "No fairness summary for a" in part and "at least 1000 positives" in part


def test_a_rate_of_one_gets_an_exact_interval_not_a_collapsed_bootstrap_one():
    from scipy.stats import binomtest

    from breastclip.report.contingency import rate_table

    op = {"tp": 2, "fp": 0, "fn": 4, "tn": 17, "sensitivity": 2 / 6, "sensitivity_ci_lo": 0.0,
          "sensitivity_ci_hi": 0.833, "specificity": 1.0, "specificity_ci_lo": 1.0, "specificity_ci_hi": 1.0,
          "ppv": 1.0, "ppv_ci_lo": 1.0, "ppv_ci_hi": 1.0, "npv": 17 / 21, "npv_ci_lo": 0.609, "npv_ci_hi": 0.952}
    t = rate_table(op).set_index("measure")
    ci = binomtest(17, 17).proportion_ci(method="exact")
    assert t.loc["Specificity", "estimate (95% CI)"] == f"1.000 ({ci.low:.3f}-1.000)"
    assert t.loc["Specificity", "interval"] == "exact (Clopper-Pearson)"
    assert t.loc["Sensitivity", "estimate (95% CI)"] == "0.333 (0.000-0.833)"
    assert t.loc["Sensitivity", "interval"] == "bootstrap"
