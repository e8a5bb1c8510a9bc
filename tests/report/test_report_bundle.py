"""The report bundle on synthetic predictions: every file written, the same tables in Word and HTML, the HTML
self-contained, research use only stated everywhere, nothing overwritten silently."""

from __future__ import annotations

import base64
import json
import re

import docx
import pytest
from report_synthetic import synthetic_predictions

from breastclip import RESEARCH_ONLY
from breastclip.evaluation import evaluate_predictions
from breastclip.report import write_report

CLASSES = ["benign", "malignant", "normal"]


def _docx_tables(path) -> list[list[list[str]]]:
    d = docx.Document(str(path))
    return [[[c.text for c in row.cells] for row in t.rows] for t in d.tables]


def _table_with_header(tables, first_cell: str, contains: str):
    return [t for t in tables if t[0][0] == first_cell and any(contains in h for h in t[0])]


def test_bundle_writes_every_file(synthetic_report):
    paths, pred, _ = synthetic_report
    for p in (paths.predictions_csv, paths.metrics_json, paths.docx, paths.html, paths.model_card):
        assert p.is_file() and p.stat().st_size > 0, p
    stems = {p.stem for p in paths.figures}
    for p in paths.figures:
        assert p.is_file()
    assert {p.suffix for p in paths.figures} == {".png", ".jpg"}
    assert all((paths.figures_dir / f"{s}.png").is_file() and (paths.figures_dir / f"{s}.jpg").is_file()
               for s in stems)
    expected = {"class_distribution", "participant_flow", "leaderboard", "roc_comparison", "loss_curves"} | {
        f"{m}_{k}" for m in ("linear-probe", "zero-shot")
        for k in ("confusion_matrix", "roc", "pr", "calibration", "thresholds", "subgroups")}
    assert stems == expected
    import pandas as pd

    back = pd.read_csv(paths.predictions_csv)
    assert len(back) == len(pred) and list(back.columns) == list(pred.columns)


def test_metrics_json_holds_each_evaluation(synthetic_report):
    paths, _, _ = synthetic_report
    m = json.loads(paths.metrics_json.read_text())
    assert m["disclaimer"] == RESEARCH_ONLY
    assert set(m["methods"]) == {"linear-probe", "zero-shot"}
    lp = m["methods"]["linear-probe"]
    assert lp["classes"] == CLASSES and lp["positive_class"] == "malignant"
    assert 0.5 < lp["headline"]["roc_auc"]["estimate"] <= 1.0
    assert m["selected_method"] == "linear-probe"  # the stronger synthetic method, on validation
    assert m["selection_metric"] == "val_roc_auc"
    assert [r["method"] for r in m["leaderboard"]] == ["linear-probe", "zero-shot"]
    assert [r["selected"] for r in m["leaderboard"]] == [True, False]
    assert m["comparisons"] and m["comparisons"][0]["metric"] == "roc_auc"
    assert m["leak_audit"]["ok"] is True
    assert m["dataset"]["counts"]["test"] == {"benign": 31, "malignant": 29, "normal": 30}


def test_docx_opens_with_the_expected_tables(synthetic_report):
    paths, _, _ = synthetic_report
    d = docx.Document(str(paths.docx))
    assert RESEARCH_ONLY in d.paragraphs[0].text
    tables = _docx_tables(paths.docx)
    summary = tables[0]
    assert summary[0] == ["Item", "Value"]
    assert any(r[0].startswith("Selected method (validation ROC AUC)") and r[1].startswith("linear-probe")
               for r in summary)
    (leaderboard,) = _table_with_header(tables, "method", "test ROC AUC (95% CI)")
    assert [r[0] for r in leaderboard[1:]] == ["linear-probe", "zero-shot"]
    per_class = _table_with_header(tables, "class", "recall (sensitivity)")
    assert len(per_class) == 2 and all([r[0] for r in t[1:]] == CLASSES for t in per_class)
    ops = _table_with_header(tables, "rule", "sensitivity (95% CI)")
    assert len(ops) == 2 and ops[0][1][0] == "youden"
    splits = _table_with_header(tables, "split", "patients")
    assert [r[0] for r in splits[0][1:]] == ["train", "val", "test", "all"]
    assert _table_with_header(tables, "attribute", "group")  # subgroups
    assert _table_with_header(tables, "rank", "P(predicted)")  # most confident errors
    sub_ops = _table_with_header(tables, "attribute", "sensitivity (95% CI)")  # frozen threshold per subgroup
    assert len(sub_ops) == 2 and {r[1] for r in sub_ops[0][1:]} == {"A", "B", "C"}
    assert any("confidence intervals are percentile bootstrap intervals from 40 replicates" in p.text
               for p in d.paragraphs)  # the evaluation's statistical-methods paragraph
    assert len(d.inline_shapes) == len(paths.figures) // 2  # every figure inserted once
    assert any("Figure 1." in p.text and "Research use only" in p.text for p in d.paragraphs)
    assert RESEARCH_ONLY in d.sections[0].footer.paragraphs[0].text


def test_html_is_self_contained_with_every_figure_embedded(synthetic_report):
    paths, _, _ = synthetic_report
    html = paths.html.read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)\s*=\s*[\"'](https?:|//|file:)", html), "external reference in the report"
    assert "url(" not in html.split("<style>")[1].split("</style>")[0]
    srcs = re.findall(r"<img [^>]*src=\"([^\"]+)\"", html)
    assert len(srcs) == len(paths.figures) // 2
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    body = html.split("<body>", 1)[1]
    assert body.index(RESEARCH_ONLY) < body.index("<h1>"), "research-only banner must open the page"
    for heading in ("Summary", "Data and splits", "Leaderboard", "Training", "Method: linear-probe",
                    "Method: zero-shot", "Model card", "Environment and reproducibility", "Limitations"):
        assert f">{heading}</h2>" in html, heading
    assert "not estimated" in html  # the small subgroup is flagged
    assert "Leak audit: passed" in html


def test_model_card_covers_data_splits_use_and_limitations(synthetic_report):
    paths, _, _ = synthetic_report
    md = paths.model_card.read_text()
    assert RESEARCH_ONLY in md
    for part in ("### Model details", "### Intended use", "out of scope", "### Data", "### Splits",
                 "Leak audit: passed", "### Evaluation on the held-out test split", "### Limitations",
                 "### Environment"):
        assert part in md, part
    assert "| test | 31 | 29 | 30 | 90 |" in md


def test_existing_report_is_not_overwritten(synthetic_report, tmp_path):
    paths, pred, manifest = synthetic_report
    with pytest.raises(FileExistsError, match="already holds a report"):
        write_report(paths.out_dir, predictions=pred, metadata=manifest, n_boot=0)


def test_binary_single_method_with_given_evaluation(tmp_path):
    pred, manifest = synthetic_predictions(classes=("benign", "malignant"), methods=("probe",), n_val=40, n_test=60,
                                           images_per_patient=2, seed=3)
    ev = evaluate_predictions(pred, manifest, n_boot=25, seed=1)
    (tmp_path / "report.html").write_text("user's file")
    with pytest.raises(FileExistsError):
        write_report(tmp_path, predictions=pred, evaluations={"probe": ev})
    paths = write_report(tmp_path, predictions=pred, metadata=manifest, evaluations={"probe": ev},
                         n_boot=999, overwrite=True)
    m = json.loads(paths.metrics_json.read_text())
    assert m["methods"]["probe"]["bootstrap"]["n_boot"] == 25  # the given evaluation is reused, not recomputed
    assert m["methods"]["probe"]["bootstrap"]["unit"] == "patient"
    html = paths.html.read_text()
    op = m["methods"]["probe"]["operating_points"][0]
    tp, fn = op["tp"], op["fn"]
    assert f"({tp}/{tp + fn})" in html  # the operating point is stated with its counts on the first screen
    assert not (paths.figures_dir / "loss_curves.png").exists()  # no histories, no loss figure


def test_unknown_evaluation_method_is_rejected(tmp_path):
    pred, _ = synthetic_predictions(methods=("a",), n_val=30, n_test=30)
    ev = evaluate_predictions(pred, n_boot=0)
    with pytest.raises(ValueError, match="not in the predictions table"):
        write_report(tmp_path, predictions=pred, evaluations={"b": ev})


def test_report_without_validation_rows_says_why_operating_points_are_missing(tmp_path):
    pred, _ = synthetic_predictions(classes=("benign", "malignant"), methods=("probe",), n_val=30, n_test=40)
    pred = pred[pred["split"] == "test"]
    paths = write_report(tmp_path, predictions=pred, n_boot=20)
    html = paths.html.read_text()
    assert "operating points (thresholds are chosen on validation only) were not computed" in html
    # without validation rows there is no selection figure: nothing is selected, and the report says why
    assert "no selection figure" in html and "no method learned this task" in html.lower()


def test_failed_leak_audit_is_flagged_on_the_first_screen_and_in_limitations(tmp_path):
    pred, manifest = synthetic_predictions(classes=("benign", "malignant"), methods=("probe",), n_val=20, n_test=30)
    audit = {"ok": False, "problems": ["2 patient(s) in several parts: p0001 (train, test); p0002 (val, test)"]}
    paths = write_report(tmp_path, predictions=pred, metadata=manifest, leak_audit=audit, n_boot=10)
    html = paths.html.read_text()
    first_screen = html.split("<nav", 1)[0]
    assert '<div class="fact warn"><div class="k">Leak audit</div>' in first_screen
    assert "FAILED: 2 patient(s) in several parts (details under Data and splits)" in first_screen
    assert "The leak audit failed" in html
    assert "The leak audit FAILED" in paths.model_card.read_text()
    assert json.loads(paths.metrics_json.read_text())["leak_audit"]["ok"] is False


def test_leak_limitation_names_only_what_was_found_and_embeds_the_contact_sheet(tmp_path):
    """Perceptual pairs only (warned): the audit passes and the report never claims shared patients; refused
    near duplicates are named as such; the audit's contact sheet of flagged pairs is embedded."""
    from PIL import Image

    pred, manifest = synthetic_predictions(classes=("benign", "malignant"), methods=("probe",), n_val=20, n_test=30)
    pair = {"a": "x1", "b": "x2", "parts": ["train", "test"], "distance": 4, "similarity": 0.8,
            "transform": "identity"}
    Image.new("RGB", (470, 300), (200, 200, 200)).save(tmp_path / "leak_audit_pairs.png")
    warned = {"ok": True, "problems": [], "warnings": ["1 near-duplicate image pair(s) across parts ..."],
              "near_duplicates": [pair], "checked": {"near_duplicates": "warn", "n_images": 80},
              "contact_sheet": "leak_audit_pairs.png"}
    paths = write_report(tmp_path, predictions=pred, metadata=manifest, leak_audit=warned, n_boot=10)
    html = paths.html.read_text()
    assert "share patients" not in html and "leak audit FAILED" not in html
    assert "Image pairs flagged by the leak audit" in html and (paths.figures_dir / "leak_audit_pairs.png").is_file()
    refused = {**warned, "ok": False, "problems": ["1 near-duplicate image pair(s) across parts ..."],
               "checked": {"near_duplicates": "refuse"}}
    out2 = tmp_path / "r2"
    out2.mkdir()
    Image.new("RGB", (470, 300)).save(out2 / "leak_audit_pairs.png")
    html2 = write_report(out2, predictions=pred, metadata=manifest, leak_audit=refused, n_boot=10).html.read_text()
    assert "near-duplicate images sit in more than one part" in html2 and "share patients" not in html2
    leaky = {"ok": False, "problems": ["1 patient(s) in more than one part: p1 (train/test)"],
             "patients_in_several_parts": {"p1": ["train", "test"]}}
    out3 = tmp_path / "r3"
    html3 = write_report(out3, predictions=pred, metadata=manifest, leak_audit=leaky, n_boot=10).html.read_text()
    assert "test images share patients" in html3
