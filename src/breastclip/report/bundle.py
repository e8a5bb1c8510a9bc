"""The report bundle: one call turns a predictions table into a results folder a clinician-researcher can read.

``write_report(out_dir, predictions=...)`` writes::

    predictions.csv   the predictions table as given (one row per image per method)
    metrics.json      every Evaluation.to_dict(), the leaderboard, paired comparisons, data counts, environment
    figures/          300-dpi PNG + JPG of every figure
    report.docx       Word report: summary, tables, figures
    report.html       ONE self-contained HTML file (figures embedded, no script, no external URL)
    MODEL_CARD.md     data, splits, intended use, evaluation, limitations

Metrics come from :mod:`breastclip.evaluation` (computed here only for methods the caller did not evaluate).
Existing report files are never overwritten unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from breastclip import RESEARCH_ONLY, __version__
from breastclip.atomic import atomic_write_text
from breastclip.evaluation import Evaluation, compare_methods, evaluate_predictions
from breastclip.evaluation.leaderboard import (
    NO_METHOD_LEARNED,
    NO_METHOD_LEARNED_SENTENCE,
    attach_comparisons,
    deployed_rows,
    is_seeded,
    leaderboard_for,
    metric_column,
    pooled_text,
    seeds_of_labels,
    selected_summary,
    with_selection,
)
from breastclip.evaluation.summary import jsonable
from breastclip.evaluation.thresholds import is_attainable
from breastclip.predictions import classes_of, validate_predictions
from breastclip.report import sections as S
from breastclip.report.checklist import checklist_section, study_section
from breastclip.report.content import (
    Bullets,
    Document,
    FigureRef,
    Note,
    Section,
    ci_text,
    fmt,
    fmt_ci,
    fmt_p,
    fmt_threshold,
)
from breastclip.report.contingency import contingency_appendix, contingency_section
from breastclip.report.docx import write_docx
from breastclip.report.evidence import gradcam_section, neighbours_section
from breastclip.report.fairness import fairness_section
from breastclip.report.flow import FlowView, flow_section, flow_view
from breastclip.report.html import write_html
from breastclip.report.label_efficiency import label_efficiency_section
from breastclip.report.model_card import ModelCard, model_card_section, render_markdown
from breastclip.report.views import DataView, MethodView, data_view, method_view

COMPARED_METRICS = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity")
REPORT_FILES = ("predictions.csv", "metrics.json", "report.docx", "report.html", "MODEL_CARD.md")
PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "python-docx", "torch", "torchvision",
            "open_clip_torch", "transformers")


@dataclass
class ReportPaths:
    """Where :func:`write_report` put each file."""

    out_dir: Path
    predictions_csv: Path
    metrics_json: Path
    figures_dir: Path
    docx: Path
    html: Path
    model_card: Path
    figures: list[Path] = field(default_factory=list)  # every file: one PNG and one JPG per figure

    @property
    def n_figures(self) -> int:
        """Figures drawn (each saved in two formats)."""
        return len({p.with_suffix("") for p in self.figures})


def environment(run_info: Mapping | None = None) -> dict[str, str]:
    """Versions (read from package metadata, nothing imported), platform, and the run's seeds and settings."""
    env = {"breastclip": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            env[pkg] = package_metadata.version(pkg)
        except package_metadata.PackageNotFoundError:
            continue
    for key, value in dict((run_info or {}).get("environment") or {}).items():
        if value is not None and value != "":
            env[str(key)] = str(value)
    for key in ("seed", "seeds", "backbone", "device"):
        if run_info and key in run_info:
            env[key] = str(run_info[key])
    env["report generated"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return env


def leak_summary(leak_audit: Mapping[str, Any] | None) -> tuple[str, bool | None, str]:
    """``(text, ok, headline)`` of the leak audit, given as its dict (``leak_audit.json``, ``LeakAudit.to_dict()``);
    None: the audit was not run."""
    if leak_audit is None:
        text = "not run (pass leak_audit=, the audit's dict, to include it)"
        return text, None, text
    get = leak_audit.get
    ok, problems, warns = get("ok"), list(get("problems") or []), list(get("warnings") or [])
    checked = get("checked") or {}
    if ok:
        what = f" on {checked['n_images']} images" if checked.get("n_images") else ""
        dup = (" (patients, identical and near-duplicate images)"
               if checked.get("near_duplicates") not in (None, False, "off") else "")
        text = f"passed{what}{dup}" + (f"; warnings: {'; '.join(map(str, warns))}" if warns else "")
        return text, True, f"passed{what}" + (f" ({len(warns)} warning(s))" if warns else "")
    if ok is None:
        return "unknown (the audit gave no verdict)", None, "unknown"
    if not problems:
        return "FAILED", False, "FAILED"
    heads = "; ".join(dict.fromkeys(str(p).split(":", 1)[0].strip() for p in problems))
    return "FAILED: " + "; ".join(map(str, problems)), False, f"FAILED: {heads} (details under Data and splits)"


def leak_limitation(leak_audit: Mapping[str, Any]) -> str:
    """The limitation a failed audit puts first, naming only what the audit actually found."""
    a = leak_audit
    found = []
    if a.get("patients_in_several_parts"):
        found.append("images of one patient sit in more than one part (test images share patients with training "
                     "or validation images)")
    if a.get("identical_images"):
        found.append("byte-identical images sit in more than one part")
    if a.get("near_duplicates") and (a.get("checked") or {}).get("near_duplicates") == "refuse":
        found.append("near-duplicate images sit in more than one part")
    if a.get("missing_classes"):
        found.append("a part lacks a class")
    if a.get("unsplit_rows"):
        found.append("some images have no split")
    what = "; ".join(found) if found else "see the problems listed there"
    return (f"The leak audit FAILED (see Data and splits): {what}. Test estimates may be inflated or biased "
            "accordingly.")


def _with_leak_evidence(section: Section, leak_audit: Mapping[str, Any] | None, out: Path,
                        figures_dir: Path) -> Section:
    """Add the audit's contact sheet of flagged image pairs (a PNG in the results folder) to the data section."""
    sheet = leak_audit.get("contact_sheet") if leak_audit is not None else None
    if not sheet:
        return section
    src = Path(sheet) if Path(sheet).is_absolute() else out / sheet
    if not src.is_file():
        return section
    from PIL import Image

    figures_dir.mkdir(parents=True, exist_ok=True)
    png, jpg = figures_dir / "leak_audit_pairs.png", figures_dir / "leak_audit_pairs.jpg"
    with Image.open(src) as im:  # the report shows figures at print size for 300 dpi: scale to ~6 inches wide
        big = im.convert("RGB").resize((1800, round(im.height * 1800 / im.width)), Image.Resampling.LANCZOS)
    big.save(png, dpi=(300, 300))
    big.save(jpg, quality=90, dpi=(300, 300))
    assert leak_audit is not None  # a sheet was named
    n_near = len(leak_audit.get("near_duplicates") or [])
    n_same = len(leak_audit.get("identical_images") or [])
    section.add(FigureRef(key="leak_audit_pairs", title="Image pairs flagged by the leak audit",
                          caption=f"{n_same} byte-identical and {n_near} near-duplicate pair(s) across parts, each "
                                  "shown side by side with what matched (hash distance, detail similarity, flip or "
                                  "rotation). Check them by eye: true copies should share one part "
                                  "(split.options.group_duplicates = true).", png=png, jpg=jpg))
    return section


def _check_free(out_dir: Path, overwrite: bool) -> None:
    existing = [n for n in REPORT_FILES if (out_dir / n).exists()]
    if (out_dir / "figures").is_dir() and any((out_dir / "figures").iterdir()):
        existing.append("figures/")
    if existing and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a report ({', '.join(existing)}); pass overwrite=True "
                              "(--overwrite) to replace it, or choose another folder")


def _model_card(data: DataView, views: list[MethodView], leak: str, lims: list[str], env: Mapping[str, str],
                run_info: Mapping, policy: str | None, board: pd.DataFrame) -> ModelCard:
    best = S.selected_view(views, board)
    sel_label = S._selection_label(board).replace("selection: ", "")
    seeded = is_seeded(board)
    chosen = best.method if best is not None else f"none: {NO_METHOD_LEARNED}"
    if seeded and best is not None:
        r = board[board["method"] == best.method].iloc[0]
        chosen = (f"{r['base_method']} (by its mean over seeds {list(board.attrs.get('seeds') or [])}); deployed "
                  f"model {best.method}, the master seed's fit")
    model = [("Methods compared", ", ".join(dict.fromkeys(str(m) for m in board["base_method"])) if seeded else
              ", ".join(v.method for v in S.ordered(views, board))),
             (f"Selected method ({sel_label}; never the test split)", chosen)]
    for key, label in (("backbone", "Backbone (frozen)"), ("head", "Head"), ("weights", "Weights"),
                       ("model_description", "Description")):
        if run_info.get(key):
            model.append((label, str(run_info[key])))
    model += [("Classes", ", ".join(data.classes)),
              ("Positive class", str(best.positive if best is not None else views[0].positive)),
              ("Output", "class probabilities (one per class, summing to one)"),
              ("breastclip version", __version__)]
    data_rows = [("Data set", data.name), ("Images", str(data.n_images)),
                 ("Patients", str(data.n_patients) if data.patient_ids_from_source else "no patient ids in source"),
                 ("Class counts", ", ".join(f"{c} {int(data.counts[c].sum())}" for c in data.classes))]
    for key, label in (("data_source", "Source"), ("data_citation", "Citation"), ("data_licence", "Licence")):
        if run_info.get(key):
            data_rows.append((label, str(run_info[key])))
    if best is None:
        evaluation = [("Verdict", f"{NO_METHOD_LEARNED_SENTENCE}: every method is flagged "
                                  "(see the leaderboard's status column); nothing is selected or recommended.")]
    else:
        op = best.operating_point(policy)
        ece = ((best.calibration or {}).get("before") or {}).get("ece")
        sel_row = board[board["method"] == best.method].iloc[0]
        evaluation = [(f"Selection figure ({sel_label})", S._sel_cell(sel_row))]
        if is_seeded(board):  # the method was chosen by its mean over seeds; the card's model is one seed's fit
            evaluation = [
                (f"Selection figure ({sel_label}), mean ± sd over seeds",
                 f"{sel_row['base_method']}: {pooled_text(sel_row, 'selection_value', own_figure=False)}"),
                ("Deployed model", f"{best.method}, the master seed's fit (its own selection figure "
                                   f"{S._sel_cell(sel_row)}); the figures below are its own"),
                ("ROC AUC over seeds (deployed seed)", pooled_text(sel_row, "test_roc_auc")),
                ("Accuracy at argmax over seeds (deployed seed)", pooled_text(sel_row, metric_column("accuracy")))]
        evaluation += [("Test images", str(best.n_test)),
                      ("ROC AUC (95% CI)", fmt_ci(*best.metric("roc_auc"))),
                      ("Balanced accuracy at argmax (95% CI)", fmt_ci(*best.metric("balanced_accuracy"))),
                      ("Macro F1 at argmax (95% CI)", fmt_ci(*best.metric("f1_macro"))),
                      ("Operating point", S.op_text(op, best.positive)),
                      ("Expected calibration error", fmt(ece)),
                      ("Bootstrap", f"{best.bootstrap.get('n_boot', '?')} replicates, resampling "
                                    f"{best.bootstrap.get('unit', '?')}s, percentile 95% intervals")]
    env_rows = [(k, v) for k, v in env.items() if k in ("breastclip", "python", "torch", "scikit-learn", "seed",
                                                         "seeds", "backbone", "report generated")]
    return ModelCard(model=model, data=data_rows, splits=S.split_table(data), leak_audit=leak,
                     evaluation=evaluation, limitations=lims, environment=env_rows)


def write_report(
    out_dir: str | Path,
    *,
    predictions: pd.DataFrame,
    metadata: pd.DataFrame | None = None,
    image_path: Callable[[str], Path | None] | None = None,
    evaluations: Mapping[str, Evaluation] | None = None,
    histories: Mapping[str, list[dict]] | None = None,
    run_info: Mapping | None = None,
    comparisons: pd.DataFrame | None = None,
    leak_audit: Mapping[str, Any] | None = None,
    dataset_name: str | None = None,
    title: str | None = None,
    positive_class: str | None = None,
    operating_policy: str | None = "youden",
    n_boot: int = 1000,
    seed: int = 0,
    min_group_size: int = 20,
    limitations: Sequence[str] = (),
    selected_method: str | None = None,
    flow: Mapping | None = None,
    study: Mapping[str, str] | None = None,
    gradcam: Sequence[Mapping] | None = None,
    neighbours: pd.DataFrame | None = None,
    overwrite: bool = False,
    leaderboard: pd.DataFrame | None = None,
    primary_metric: str = "roc_auc",
    label_efficiency: pd.DataFrame | None = None,
) -> ReportPaths:
    """Write the full report bundle for every method of ``predictions`` into ``out_dir``.

    ``metadata`` (the manifest's table, ``Manifest.df``) gives metadata for subgroups and the counts of every split;
    ``image_path`` (``Manifest.image_lookup()``) maps an image id to its file, for thumbnails; ``leak_audit`` is the
    split's leak audit as its dict (``leak_audit.json``, ``LeakAudit.to_dict()``), None when it was not run.
    ``evaluations`` (method -> Evaluation) are reused as given; methods without one are evaluated here with
    ``n_boot``, ``seed``, ``min_group_size`` and ``positive_class``. ``histories`` holds per-epoch losses of trained
    methods; ``run_info`` may carry ``dataset``, ``backbone``, ``head``, ``seed``, ``config`` (dict),
    ``environment`` (dict), ``data_source``, ``data_citation``, ``notes`` (list).
    ``leaderboard`` is the run's one leaderboard (:func:`breastclip.evaluation.leaderboard.build_leaderboard`): the
    report renders it as given, in its order, with its selected method. Without one it is built here the same way
    (selection by ``primary_metric`` on the validation rows, statuses, operating point ``operating_policy``; when
    every method is labelled ``<method>.seed<k>``, ranked by method over seeds with ``seed`` as the master seed).
    ``selected_method`` names a selection made upstream by the caller's own protocol: that row is marked selected
    and moved first (the report never re-ranks). ``flow`` holds what was excluded before the manifest (see
    :mod:`breastclip.report.flow`); ``study`` the investigators' facts for the reporting-guideline checklist
    (``[report.study]``). ``gradcam`` holds the
    overlays of the selected method's cases per explained model (see :func:`breastclip.report.evidence.
    gradcam_section`); ``neighbours`` the nearest training images of its confident errors (query_id, rank, id,
    label, similarity, backbone), drawn when ``image_path`` is given (its images are read for thumbnails).
    An empty list / table still gets its section, saying that nothing was produced. ``label_efficiency`` holds the
    rows of the run's label_efficiency.csv: a section with the curve (mean +- sd over seeds) and its table.
    """
    validate_predictions(predictions)
    run_info = dict(run_info or {})
    out = Path(out_dir)
    _check_free(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    figures_dir = out / "figures"
    mdf = metadata
    classes = classes_of(predictions)

    methods = list(dict.fromkeys(predictions["method"].astype(str)))
    evaluations = dict(evaluations or {})
    unknown = sorted(set(evaluations) - set(methods))
    if unknown:
        raise ValueError(f"evaluations given for methods {unknown} that are not in the predictions table {methods}")
    for m in methods:
        if m not in evaluations:
            evaluations[m] = evaluate_predictions(predictions, mdf, method=m, positive_class=positive_class,
                                                  n_boot=n_boot, seed=seed, min_group_size=min_group_size)
    views = [method_view(evaluations[m], min_group_size=min_group_size) for m in methods]
    board = leaderboard
    run_seeds = seeds_of_labels(methods)  # every label <method>.seed<k>: ranked and selected by method over seeds
    if board is None:
        board = leaderboard_for(evaluations, predictions, primary=primary_metric, operating_point=operating_policy,
                                histories=histories, seeds=run_seeds, master_seed=seed)
    if comparisons is None and len(methods) > 1:
        comparisons = compare_methods(predictions, baseline_method=board.attrs.get("baseline"),
                                      positive_class=positive_class, metrics=["roc_auc"], n_boot=n_boot, seed=seed)
        if leaderboard is None:
            board = attach_comparisons(board, comparisons)
    if selected_method is not None and selected_method not in methods:
        raise ValueError(f"selected_method {selected_method!r} is not in the predictions table {methods}")
    if selected_method is not None and selected_method != board.attrs.get("selected"):
        board = with_selection(board, selected_method)
    views = S.ordered(views, board)
    selected = S.selected_view(views, board)
    # with seeds: the detailed per-method sections (about seven figures each) for the master seed's rows only,
    # one fitted model per method; every seed's figures are in the leaderboard and the seeds table
    detailed_rows = deployed_rows(board)
    detailed = views if detailed_rows is None else [v for v in views if v.method in set(detailed_rows)]

    name = dataset_name or run_info.get("dataset") or "data set"
    data = data_view(predictions, mdf, name=str(name), classes=classes, notes=list(run_info.get("notes") or []))
    leak, leak_ok, leak_head = leak_summary(leak_audit)
    env = environment(run_info)
    env.update({"bootstrap": f"{n_boot} replicates, seed {seed}", "operating-point rule": str(operating_policy)})
    extra_lims = list(limitations)
    if leak_audit is not None and leak_ok is False:
        extra_lims.insert(0, leak_limitation(leak_audit))
    lims = S.limitations(data, views, extra_lims)

    fv = flow_view(mdf, predictions, classes, flow)
    fw = S.FigureWriter(figures_dir)
    summary, facts = S.summary_section(data, views, leak_head, operating_policy, board)
    sections: list[Section | None] = [
        summary,
        _with_leak_evidence(S.data_section(data, leak, leak_ok, fw), leak_audit, out, figures_dir),
        flow_section(fv, fw, data.patient_ids_from_source),
        S.leaderboard_section(views, operating_policy, fw, _comparison_table(comparisons), board=board,
                              detailed=detailed),
        label_efficiency_section(label_efficiency, fw),
    ]
    if selected is not None:
        sections += [contingency_section(selected, operating_policy), fairness_section(selected, operating_policy),
                     gradcam_section(gradcam, selected, fw, requested=int(gradcam is not None)),
                     neighbours_section(neighbours, selected, image_path, fw,
                                        requested=int(neighbours is not None))]
    else:  # the sections about the selected method say why they are empty; evidence of the first row is
        # shown for inspection only (it helps to see why nothing learned), never as the selected method's
        first = views[0]
        sections += [_unselected("Diagnostic accuracy at the operating point (2x2 table)", "contingency",
                                 "there is no 2x2 table of a selected method (every method's table is in the "
                                 "appendix)"),
                     _unselected("Subgroups and fairness", "fairness", "there is no fairness summary")]
        inspect = Note(f"{NO_METHOD_LEARNED_SENTENCE}: no method is selected. The evidence "
                       f"below is that of {first.method}, the leaderboard's first row, shown for inspection only; "
                       "it is not a selected or recommended method.", "warn")
        for block in (gradcam_section(gradcam, first, fw, requested=int(gradcam is not None)),
                      neighbours_section(neighbours, first, image_path, fw,
                                         requested=int(neighbours is not None))):
            if block is not None:
                block.blocks.insert(0, inspect)
                sections.append(block)
    shown = {v.method for v in detailed}
    sections += [
        S.training_section({k: h for k, h in (histories or {}).items() if k in shown}, fw),
        *[S.method_section(v, fw, operating_policy, image_path) for v in detailed],
    ]
    card = _model_card(data, views, leak, lims, env, run_info, operating_policy, board)
    card_section = model_card_section(card)
    study = {str(k): str(v) for k, v in dict(study or {}).items()}
    sections += [card_section, S.environment_section(env, run_info, views),
                 Section("Limitations").add(Bullets(lims)), study_section(study),
                 contingency_appendix(views, operating_policy)]
    anchors = {s.anchor for s in sections if s is not None}
    sections.append(checklist_section(_checklist_facts(selected, views, fv, data, leak_head, run_info,
                                                       operating_policy, name), study, anchors))
    doc_title = title or f"breastclip report: {name}"
    counted = "1 method" if len(methods) == 1 else f"{len(methods)} methods"
    pooled = selected_summary(board)
    if detailed_rows is not None:
        counted = f"{len(detailed)} methods x {len(board.attrs.get('seeds') or []) or '?'} seeds"
    verdict = (f"selected: {selected.method}" if selected is not None else NO_METHOD_LEARNED)
    if pooled is not None and "deployed_seed" in pooled:
        verdict = (f"selected: {pooled['method']} by its mean over seeds (deployed model: {pooled['row']}, the "
                   "master seed's fit)")
    doc = Document(title=doc_title, subtitle=f"{counted} evaluated on the held-out test split of {name}; {verdict}.",
                   key_facts=facts, sections=[s for s in sections if s is not None])

    paths = ReportPaths(out_dir=out, predictions_csv=out / "predictions.csv", metrics_json=out / "metrics.json",
                        figures_dir=figures_dir, docx=out / "report.docx", html=out / "report.html",
                        model_card=out / "MODEL_CARD.md")
    atomic_write_text(paths.predictions_csv, predictions.to_csv(index=False))
    metrics = {
        "disclaimer": RESEARCH_ONLY,
        "breastclip": __version__,
        "dataset": {"name": data.name, "images": data.n_images, "patients": data.n_patients,
                    "patient_ids_from_source": data.patient_ids_from_source,
                    "counts": {s: {c: int(v) for c, v in row.items()} for s, row in data.counts.iterrows()}},
        "leak_audit": {"ok": leak_ok, "summary": leak},
        "leaderboard": jsonable(board),
        "selected_method": selected.method if selected is not None else None,
        "selection_metric": board.attrs.get("selection_metric"),
        "selection": pooled,
        "comparisons": jsonable(comparisons) if comparisons is not None else [],
        "methods": {v.method: v.raw for v in views},
        "environment": env,
        "run_info": jsonable(run_info),
    }
    atomic_write_text(paths.metrics_json, json.dumps(metrics, indent=2, allow_nan=False))
    write_docx(doc, paths.docx)
    write_html(doc, paths.html)
    card_title = (f"Model card: {selected.method} on {name}" if selected is not None
                  else f"Model card: {name} ({NO_METHOD_LEARNED})")
    atomic_write_text(paths.model_card, render_markdown(card_title, [card_section], figures_prefix="figures/",
                                                        section_headings=False))
    paths.figures = [p for f in fw.saved for p in (f.png, f.jpg)]
    return paths


def _unselected(title: str, anchor: str, what: str) -> Section:
    """A section about the selected method when there is none: it says so (the anchor stays, so links work)."""
    return Section(title, anchor=anchor).add(Note(
        f"{NO_METHOD_LEARNED_SENTENCE}: no method is selected, so {what}.", "warn"))


def _checklist_facts(selected: MethodView | None, views: Sequence[MethodView], fv: FlowView, data: DataView,
                     leak: str, run_info: Mapping, policy: str | None, name: str) -> dict[str, object]:
    """The run's own answers to the checklist items (counts, thresholds, CI method); ``selected`` None when no
    method learned the task."""
    ref = selected or views[0]
    op = (selected.operating_point(policy) or {}) if selected is not None else {}
    if op and not is_attainable(op):
        op = {"policy": op.get("policy")}
    unit = ref.bootstrap.get("unit", "patient")
    subgroups = sorted({str(c) for v in views if v.subgroups is not None and len(v.subgroups)
                        for c in v.subgroups["column"]})
    excluded = sum(n for _, n in fv.exclusions)
    return {
        "source": str(run_info.get("data_source") or name), "methods": ", ".join(v.method for v in views),
        "selected": selected.method if selected is not None else f"no method ({NO_METHOD_LEARNED})",
        "positive": str(ref.positive), "policy": str(op.get("policy", policy)),
        "threshold": fmt_threshold(op.get("threshold")) if op else "-",
        **{k: int(op[k]) if k in op else "-" for k in ("tp", "fp", "fn", "tn")},
        "ci_method": f"95% percentile bootstrap CIs ({ref.bootstrap.get('n_boot', '?')} replicates resampling "
                     f"{unit}s)",
        "excluded": excluded, "analysed": fv.analysed, "source_images": fv.source_images,
        "exclusions": "; ".join(f"{n} {r}" for r, n in fv.exclusions) or "none excluded",
        "missing": (f"{excluded} image(s) excluded with reasons" if excluded else "no image excluded")
                   + "; missing metadata values form their own '(missing)' subgroup",
        "subgroups": ", ".join(subgroups) or "none qualified",
        "parts": "; ".join(f"{s} {int(r['images'])} images / {int(r['patients'])} patients"
                           for s, r in fv.parts.iterrows()),
        "unit": "patient" if data.patient_ids_from_source else "image (the source has no patient ids)",
        "leak": leak, "classes": ", ".join(data.classes)}


def _comparison_table(comparisons: pd.DataFrame | None) -> pd.DataFrame | None:
    if comparisons is None or comparisons.empty:
        return None
    c = comparisons
    shown = c[c["metric"].isin(COMPARED_METRICS)]
    c = shown if len(shown) else c  # every metric stays in metrics.json
    return pd.DataFrame({
        "method": c["method"], "vs": c["baseline"], "metric": c["metric"], "difference": c["diff"],
        "95% CI": [ci_text(lo, hi) for lo, hi in zip(c["ci_lo"], c["ci_hi"], strict=True)],
        "p": [fmt_p(p) for p in c["p_value"]], "p (Holm)": [fmt_p(p) for p in c["p_holm"]], "test": c["test"]})
