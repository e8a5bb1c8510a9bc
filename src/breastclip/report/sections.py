"""What the report says: the summary, data, leaderboard, per-method and closing sections, built from plain views.

Figures are drawn here (through :mod:`.figures`) and saved once into ``figures/`` at 300 dpi as PNG and JPG; the
HTML embeds the PNG, the Word file inserts it, the model card links to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.evaluation.leaderboard import (
    NO_METHOD_LEARNED,
    NO_METHOD_LEARNED_SENTENCE,
    OK,
    is_seeded,
    metric_column,
    pooled_text,
    seeds_table,
    selected_method,
    threshold_text,
)
from breastclip.evaluation.thresholds import is_attainable
from breastclip.report import figures as F
from breastclip.report.content import (
    Bullets,
    FigureRef,
    Heading,
    Note,
    Section,
    Table,
    ci_text,
    fmt,
    fmt_ci,
    fmt_threshold,
    slug,
)
from breastclip.report.views import HEADLINE_LABELS, DataView, MethodView

CAPTION_TAIL = "Research use only; not for diagnosis."


class FigureWriter:
    """Saves figures under one folder with self-describing names and returns their :class:`FigureRef`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.saved: list[FigureRef] = []

    def __call__(self, fig, key: str, title: str, caption: str) -> FigureRef:
        try:
            png, jpg = F.save_figure(fig, self.folder / key)
        finally:
            plt.close(fig)
        ref = FigureRef(key=key, title=title, caption=f"{caption} {CAPTION_TAIL}".strip(), png=png, jpg=jpg)
        self.saved.append(ref)
        return ref


# ---- helpers ---------------------------------------------------------------------------------------------------
def _pct(num: float, den: float) -> str:
    return f"{num / den:.1%}" if den else "-"


def op_text(op: Mapping | None, positive: str | None) -> str:
    """``'malignant' vs rest at threshold 0.4123 (youden, frozen on validation): sensitivity val 0.900 / test 0.857
    (95% CI) = 36/42, specificity ...``; says so when the rule is not attainable on validation."""
    if not op:
        return "not available"
    if not is_attainable(op):
        return (f"'{positive}' vs rest: the {op.get('policy')} rule is not attainable on the validation split (no "
                "threshold that calls an image positive meets it); it is not applied")
    tp, fp, tn, fn = (int(op.get(k, 0)) for k in ("tp", "fp", "tn", "fn"))
    sens = fmt_ci(op.get("sensitivity"), op.get("sensitivity_ci_lo"), op.get("sensitivity_ci_hi"))
    spec = fmt_ci(op.get("specificity"), op.get("specificity_ci_lo"), op.get("specificity_ci_hi"))
    return (f"'{positive}' vs rest at threshold {fmt_threshold(op.get('threshold'))} ({op.get('policy')}, frozen on "
            f"validation): sensitivity validation {fmt(op.get('val_sensitivity'))} / test {sens} = {tp}/{tp + fn}, "
            f"specificity validation {fmt(op.get('val_specificity'))} / test {spec} = {tn}/{tn + fp}")


def op_short(op: Mapping | None, positive: str | None) -> str:
    """``malignant vs rest: sensitivity 0.83 (24/29), specificity 1.00 (61/61) on test at t=0.5683 (youden on val)``."""
    if not op:
        return "not available (needs a positive class and a validation split)"
    if not is_attainable(op):
        return f"{positive} vs rest: {op.get('policy')} not attainable on validation (not applied)"
    tp, fp, tn, fn = (int(op.get(k, 0)) for k in ("tp", "fp", "tn", "fn"))
    return (f"{positive} vs rest: sensitivity {fmt(op.get('sensitivity'), 2)} ({tp}/{tp + fn}), specificity "
            f"{fmt(op.get('specificity'), 2)} ({tn}/{tn + fp}) on test at t={fmt_threshold(op.get('threshold'))} "
            f"({op.get('policy')}, chosen on validation)")


PER_CLASS_NAMES = {"class": "class", "support": "test images", "precision": "precision (PPV)",
                   "recall": "recall (sensitivity)", "f1": "F1", "specificity": "specificity", "roc_auc": "ROC AUC",
                   "average_precision": "AP"}
ERROR_NAMES = {"y_true": "true", "y_pred": "predicted", "confidence": "P(predicted)", "p_true": "P(true)",
               "error_type": "error", "patient_id": "patient"}


def per_class_display(per_class: pd.DataFrame) -> pd.DataFrame:
    """Per-class table with each metric and its CI in one cell (``0.850 (0.700-0.950)``)."""
    out = pd.DataFrame({"class": per_class["class"].astype(str)})
    if "support" in per_class:
        out["support"] = per_class["support"].astype(int)
    for m in PER_CLASS_NAMES:
        if m in ("class", "support") or m not in per_class:
            continue
        lo, hi = per_class.get(f"{m}_ci_lo"), per_class.get(f"{m}_ci_hi")
        out[m] = ([fmt_ci(e, a, b) for e, a, b in zip(per_class[m], lo, hi, strict=True)]
                  if lo is not None and hi is not None else per_class[m].to_numpy())
    return out.rename(columns=PER_CLASS_NAMES)


def split_table(data: DataView) -> pd.DataFrame:
    t = data.counts.copy()
    t.insert(0, "split", t.index.astype(str))
    t["images"] = data.counts.sum(axis=1).to_numpy()
    t["patients"] = data.patients.reindex(data.counts.index).to_numpy()
    total = {"split": "all", **{c: int(data.counts[c].sum()) for c in data.counts.columns},
             "images": int(data.counts.to_numpy().sum()), "patients": data.n_patients}
    return pd.concat([t.reset_index(drop=True), pd.DataFrame([total])], ignore_index=True)


def leaderboard_table(board: pd.DataFrame, views: Sequence[MethodView], policy: str | None) -> pd.DataFrame:
    """The run's leaderboard as the report shows it: the board's rows in the board's order (never re-ranked)."""
    by_name = {v.method: v for v in views}
    sel_label = _selection_label(board)
    seeded = is_seeded(board)
    rows = []
    for _, r in board.iterrows():
        v = by_name.get(str(r["method"]))
        ece = ((v.calibration or {}).get("before") or {}).get("ece") if v is not None else None
        row: dict[str, object] = {
            "method": str(r["method"]),
            "selected": "yes" if bool(r["selected"]) else "",
            "status": str(r["status"]),
        }
        if seeded:  # what ranks the method (its mean over seeds) beside this seed row's own figure
            row[f"{sel_label}, mean ± sd over seeds"] = pooled_text(r, "selection_value", own_figure=False)
            row["test ROC AUC, mean ± sd over seeds"] = pooled_text(r, "test_roc_auc", own_figure=False)
        row.update({
            sel_label + (", this seed" if seeded else ""): _sel_cell(r),
            "test images": r.get("n_test"),
            "test ROC AUC (95% CI)": _board_ci(r, "roc_auc"),
            "test AP (95% CI)": _board_ci(r, "average_precision"),
            "test balanced accuracy@argmax (95% CI)": _board_ci(r, "balanced_accuracy"),
            "test macro F1@argmax (95% CI)": _board_ci(r, "f1_macro"),
        })
        if policy and f"threshold@{policy}" in board.columns:
            row[f"threshold@{policy}"] = threshold_text(r.get(f"threshold@{policy}"))
            row[f"sensitivity@{policy} val / test"] = _val_test(r, "sensitivity", policy)
            row[f"specificity@{policy} val / test"] = _val_test(r, "specificity", policy)
        row["ECE (test)"] = math.nan if ece is None else ece
        rows.append(row)
    return pd.DataFrame(rows)


def _selection_label(board: pd.DataFrame) -> str:
    metric = str(board.attrs.get("selection_metric") or
                 (board["selection_metric"].iloc[0] if len(board) else "val_roc_auc"))
    where, _, name = metric.partition("_")
    return f"selection: {'validation' if where == 'val' else 'cross-validation'} {HEADLINE_LABELS.get(name, name)}"


def _sel_cell(r) -> str:
    v = r.get("selection_value")
    if v is None or not np.isfinite(float(v)):
        return "-"
    lo, hi, sd = r.get("selection_ci_lo"), r.get("selection_ci_hi"), r.get("selection_sd")
    if (lo is None or not np.isfinite(float(lo))) and sd is not None and np.isfinite(float(sd)):
        return f"{float(v):.3f} ± {float(sd):.3f}"
    return fmt_ci(float(v), _nan(lo), _nan(hi))


def _nan(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _board_ci(r, metric: str) -> str:
    col = metric_column(metric)
    if col not in r.index:
        return "-"
    return fmt_ci(_nan(r[col]), _nan(r.get(f"{col}_ci_lo")), _nan(r.get(f"{col}_ci_hi")))


def _val_test(r, rate: str, policy: str) -> str:
    a, b = _nan(r.get(f"val_{rate}@{policy}")), _nan(r.get(f"test_{rate}@{policy}"))
    return f"{fmt(a)} / {fmt(b)}"


def ordered(views: Sequence[MethodView], board: pd.DataFrame) -> list[MethodView]:
    """The views in the leaderboard's order (the board decides; the report never re-ranks)."""
    by_name = {v.method: v for v in views}
    out = [by_name[str(m)] for m in board["method"] if str(m) in by_name]
    return out + [v for v in views if v not in out]


def selected_view(views: Sequence[MethodView], board: pd.DataFrame) -> MethodView | None:
    sel = selected_method(board)
    return next((v for v in views if v.method == sel), None) if sel is not None else None


# ---- sections ------------------------------------------------------------------------------------------------
def summary_section(data: DataView, views: Sequence[MethodView], leak: str, policy: str | None,
                    board: pd.DataFrame) -> tuple[Section, list[tuple[str, str]]]:
    """The first screen: key facts and a short narrative. ``leak`` is the audit's one-line verdict."""
    ranked = ordered(views, board)
    best = selected_view(views, board)
    sel_label = _selection_label(board).replace("selection: ", "")
    facts = [
        ("Data set", f"{data.name}: {data.n_images} images, "
                     + (f"{data.n_patients} patients" if data.patient_ids_from_source
                        else "no patient ids (each image its own group)")),
        ("Classes", ", ".join(f"{c} {int(data.counts[c].sum())}" for c in data.classes)),
        ("Splits (images / patients)", "; ".join(
            f"{s} {int(data.counts.loc[s].sum())}/{int(data.patients.get(s, 0))}" for s in data.counts.index)),
        (f"Images per class ({'/'.join(data.classes)})", "; ".join(
            f"{s} {'/'.join(str(int(data.counts.loc[s, c])) for c in data.classes)}" for s in data.counts.index)),
    ]
    s = Section("Summary")
    s.add(Note(RESEARCH_ONLY, "warn"))
    if leak.startswith("FAILED"):
        s.add(Note("The leak audit failed: the split shares patients or near-duplicate images between training and "
                   "test, so the results below are likely optimistic. Fix the split before citing them.", "warn"))
    if best is None:
        facts += [("Selected method", f"none: {NO_METHOD_LEARNED}"), ("Leak audit", leak),
                  ("Methods compared", str(len(views)))]
        s.add(Note(f"{NO_METHOD_LEARNED_SENTENCE}: every method is flagged (see the status "
                   "column of the leaderboard), so no method is selected or recommended. The test figures below are "
                   "shown for the record only.", "warn"))
        return s, facts
    sel_row = board[board["method"] == best.method].iloc[0]
    op = best.operating_point(policy)
    seeded = is_seeded(board)
    if seeded:
        facts += [
            (f"Selected method ({sel_label}, mean ± sd over seeds)",
             f"{sel_row['base_method']}: {pooled_text(sel_row, 'selection_value', own_figure=False)}"),
            ("Deployed model", f"{best.method}, the master seed's fit (its own figure {_sel_cell(sel_row)}); "
                               "predict, Grad-CAM and the gate use it"),
            ("Selected method on test, mean ± sd over seeds (deployed seed)",
             f"ROC AUC {pooled_text(sel_row, 'test_roc_auc')}; accuracy@argmax "
             f"{pooled_text(sel_row, metric_column('accuracy'))}"),
        ]
    facts += [
        *([] if seeded else [(f"Selected method ({sel_label})", f"{best.method}: {_sel_cell(sel_row)}")]),
        ("Selected method on test (ROC AUC, 95% CI)" + (", deployed seed" if seeded else ""),
         fmt_ci(*best.metric("roc_auc"))),
        ("Operating point on test", op_short(op, best.positive)),
        ("Leak audit", leak),
        ("Methods compared", f"{board['base_method'].nunique()} methods x {len(board.attrs.get('seeds') or [])} "
                             "seeds" if seeded else str(len(views))),
    ]
    auc, lo, hi = best.metric("roc_auc")
    chosen = ("cross-validation over train+val" if str(sel_row["selection_metric"]).startswith("cv_")
              else "the validation split")
    if seeded:
        n_methods = int(board["base_method"].nunique())
        s.add(f"{sel_row['base_method']} was selected by its mean {sel_label} over seeds "
              f"({pooled_text(sel_row, 'selection_value', own_figure=False)}) on {chosen}"
              + (f", the best of {n_methods} methods" if n_methods > 1 else "")
              + "; the test split chose nothing, and no seed was preferred by its test figures. Over its seeds it "
              f"reached test ROC AUC {pooled_text(sel_row, 'test_roc_auc')} and accuracy@argmax "
              f"{pooled_text(sel_row, metric_column('accuracy'))}. The deployed model is {best.method}, the master "
              "seed's fit; the figures below that name one model are its own.")
    test_part = (f"On the held-out test split ({best.n_test} images"
                 + (f", {best.n_test_patients} patients" if data.patient_ids_from_source and best.n_test_patients
                    else "")
                 + f") {'the deployed model' if seeded else 'it'} reached ROC AUC {fmt_ci(auc, lo, hi)}"
                 + (" (one-vs-rest macro average)" if len(best.classes) > 2 else "") + ".")
    if seeded:
        s.add(test_part)
    else:
        s.add(f"{best.method} was selected by its {sel_label} ({_sel_cell(sel_row)}) on {chosen}"
              + (f", the best of {len(views)} methods" if len(views) > 1 else "")
              + "; the test split chose nothing. " + test_part)
    if op:
        s.add(f"Operating point: {op_text(op, best.positive)}. The threshold was chosen on the validation split and "
              f"applied unchanged to test.")
    if seeded:
        t = seeds_table(board)
        if len(t) > 1:
            s.add("Leaderboard order (by mean selection figure over seeds; methods that learned nothing last): "
                  + ", ".join(f"{m} {fmt(v)}" + ("" if not np.isfinite(sd) else f" ± {fmt(sd)}")
                              for m, v, sd in zip(t["method"], t["selection_value_mean"], t["selection_value_sd"],
                                                  strict=True)) + ".")
        flagged = t[t["status"] != OK]
        if len(flagged):
            s.add(Note("Methods that learned nothing on at least one seed (never selected): "
                       + "; ".join(f"{r['method']}: {r['status']}" for _, r in flagged.iterrows()), "warn"))
        return s, facts
    if len(ranked) > 1:
        s.add("Leaderboard order (by selection figure; methods that learned nothing last): "
              + ", ".join(f"{v.method} {_sel_cell(board[board['method'] == v.method].iloc[0])}" for v in ranked)
              + ". Overlapping confidence intervals mean the order is not established.")
    flagged = board[board["status"] != "ok"]
    if len(flagged):
        s.add(Note("Methods that learned nothing (never selected): "
                   + "; ".join(f"{r['method']}: {r['status']}" for _, r in flagged.iterrows()), "warn"))
    return s, facts


def data_section(data: DataView, leak: str, leak_ok: bool | None, fw: FigureWriter) -> Section:
    s = Section("Data and splits")
    s.add(f"Data set {data.name}: {data.n_images} images in {len(data.classes)} classes ({', '.join(data.classes)}).")
    if not data.patient_ids_from_source:
        s.add(Note("The source publishes no patient ids: every image is its own group, so images of one patient "
                   "may sit in different splits and the estimates below may be optimistic.", "warn"))
    s.add(Table("splits", "Images per split and class", split_table(data),
                caption="Patients: distinct patient ids (one per image when the source has none)."))
    s.add(fw(F.class_distribution(data.counts), "class_distribution", "Class distribution by split",
             "Number of images of each class in the training, validation and test splits."))
    s.add(Note(f"Leak audit: {leak}", "ok" if leak_ok else ("warn" if leak_ok is False else "info")))
    if data.notes:
        s.add(Bullets(list(data.notes)))
    return s


def leaderboard_section(views: Sequence[MethodView], policy: str | None, fw: FigureWriter,
                        comparisons: pd.DataFrame | None = None, *, board: pd.DataFrame,
                        detailed: Sequence[MethodView] | None = None) -> Section:
    """The leaderboard table and figures; ``detailed`` (default: every view) are the methods whose curves are
    overlaid (with seeds: the master seed's rows, one per method)."""
    ranked = ordered(views, board)
    s = Section("Leaderboard")
    table = leaderboard_table(board, views, policy)
    sel = [i for i, x in enumerate(board["selected"]) if bool(x)]
    if not sel:
        s.add(Note(f"{NO_METHOD_LEARNED_SENTENCE}: no method is selected.", "warn"))
    s.add(Table("leaderboard", "Methods: selection figure and test metrics", table, flag_rows=sel,
                flag_note="the selected method (best selection figure among methods whose status is ok).",
                caption="Rows are ordered by the selection figure (validation, or cross-validation over train+val), "
                        "methods that learned nothing last; the test split is never used to choose. Test estimates "
                        "with 95% bootstrap confidence intervals (patients resampled when patient ids exist). "
                        "'@argmax': at the most-probable-class decision; "
                        + (f"'@{policy}': at the threshold frozen on validation by the '{policy}' rule ('not "
                           "attainable': the rule cannot be met on validation and is not applied); "
                           if policy else "")
                        + "ECE: expected calibration error on test before temperature scaling."))
    lb = pd.DataFrame({"method": [v.method for v in ranked], "auc": [v.metric("roc_auc")[0] for v in ranked],
                       "auc_lo": [v.metric("roc_auc")[1] for v in ranked],
                       "auc_hi": [v.metric("roc_auc")[2] for v in ranked]})
    if len(views) > 1:
        s.add(fw(F.leaderboard(lb), "leaderboard", "Test ROC AUC of every method (leaderboard order)",
                 "Dots: ROC AUC on the test split; whiskers: 95% bootstrap confidence interval. Methods in the "
                 "leaderboard's order (selection figure), not re-ranked by test."))
    if is_seeded(board):
        s.add(seeds_block(board, detailed if detailed is not None else views))
    shown = {v.method for v in (detailed if detailed is not None else views)}
    overlay = roc_overlay([v for v in ranked if v.method in shown], fw)
    if overlay is not None:
        s.add(overlay)
    if comparisons is not None and len(comparisons):
        s.add(Table("comparisons", "Paired comparisons on the same test images", comparisons,
                    caption=comparison_caption(comparisons)))
    return s


def seeds_block(board: pd.DataFrame, detailed: Sequence[MethodView]) -> Table:
    """Mean ± sd over seeds per method (seeds.csv), and what the report details: the master seed's rows."""
    t = seeds_table(board)
    label = _selection_label(board).replace("selection: ", "")
    names = {"selection_value": f"{label} (selection)", "roc_auc": "test ROC AUC", "accuracy": "test accuracy@argmax",
             "balanced_accuracy": "test balanced accuracy@argmax", "f1_macro": "test macro F1@argmax"}
    df = pd.DataFrame({"method": t["method"], "selected": ["yes" if x else "" for x in t["selected"]],
                       "status": t["status"], "seeds": t["seeds"], "deployed (detailed below)": t["deployed"]})
    for key, name in names.items():
        if f"{key}_mean" in t:
            df[f"{name}, mean ± sd"] = [fmt(m) + ("" if not np.isfinite(sd) else f" ± {fmt(sd)}")
                                        for m, sd in zip(t[f"{key}_mean"], t[f"{key}_sd"], strict=True)]
    master = board.attrs.get("master_seed")
    sel = t[t["selected"]]
    return Table("seeds", "Methods over seeds: mean ± sd", df, flag_rows=[int(i) for i in sel.index],
                 flag_note="the selected method (best mean selection figure over seeds among ok methods).",
                 caption=f"Every method ran once per seed {list(board.attrs.get('seeds') or [])}. Methods are ranked "
                         "and selected by the mean of their selection figure over seeds; a method is ok only when "
                         "every seed is (the status names a flagged seed); the test split chose nothing, and no "
                         "seed row is preferred by its test figures. The selected method deploys the fit of the "
                         f"master seed{'' if master is None else f' {master}'} (column 'deployed'), the one model "
                         "predict, Grad-CAM and the gate use. The detailed per-method sections below are drawn for "
                         f"those rows only ({len(detailed)} methods); every seed's own figures are in the leaderboard "
                         "above, leaderboard.csv and seeds.csv.")


TEST_NAMES = {"delong": "DeLong test (AUC)", "bootstrap": "paired bootstrap", "paired_bootstrap": "paired bootstrap"}


def comparison_caption(comparisons: pd.DataFrame) -> str:
    """Names the tests the table actually holds (its ``test`` column), never a fixed claim."""
    used = list(dict.fromkeys(str(t) for t in comparisons.get("test", pd.Series(dtype=str)).dropna()))
    names = [TEST_NAMES.get(t.lower(), t) for t in used]
    what = " and ".join(names) if names else "the paired test named in each row"
    return (f"Differences on the same test images; test used: {what}. p (Holm): adjusted for the number of "
            "comparisons.")


def roc_overlay(views: Sequence[MethodView], fw: FigureWriter) -> FigureRef | None:
    """Every method's ROC curve for the positive class (one-vs-rest) on one plot, with bands."""
    positive = views[0].positive if views else None
    if len(views) < 2 or positive is None:
        return None
    curves = []
    for v in views:
        if v.roc is None or v.positive != positive:
            continue
        g = v.roc[v.roc["class"].astype(str) == str(positive)]
        if g.empty:
            continue
        per = v.per_class[v.per_class["class"].astype(str) == str(positive)] if v.per_class is not None else None
        if len(v.classes) == 2:
            ci = v.metric("roc_auc")[1:]
        elif per is not None and len(per) and "roc_auc_ci_lo" in per:
            ci = (float(per["roc_auc_ci_lo"].iloc[0]), float(per["roc_auc_ci_hi"].iloc[0]))
        else:
            ci = None
        curves.append(F.Curve(label=v.method, x=g["fpr"].to_numpy(float), y=g["tpr"].to_numpy(float),
                              lo=g["tpr_lo"].to_numpy(float), hi=g["tpr_hi"].to_numpy(float),
                              score=float(g["auc"].iloc[0]), ci=ci))
    if len(curves) < 2:
        return None
    return fw(F.roc_curves(curves, title=f"ROC curves, {positive} vs rest, all methods"), "roc_comparison",
              f"ROC curves of all methods ({positive} vs rest)",
              "Each method's ROC curve for the positive class on the same test images; shaded: 95% bootstrap bands.")


def training_section(histories: Mapping[str, Sequence[Mapping]], fw: FigureWriter) -> Section | None:
    histories = {k: v for k, v in (histories or {}).items() if v}
    if not histories:
        return None
    s = Section("Training")
    s.add(fw(F.loss_curves(histories), "loss_curves", "Training and validation loss",
             "Loss per epoch of each trained head or network; dashed: validation."))
    rows = []
    for m, h in histories.items():
        df = pd.DataFrame(list(h))
        best = df["val_loss"].idxmin() if "val_loss" in df and df["val_loss"].notna().any() else None
        rows.append({"method": m, "epochs": len(df),
                     "final train loss": float(df["train_loss"].iloc[-1]) if "train_loss" in df else math.nan,
                     "best validation loss": float(df.loc[best, "val_loss"]) if best is not None else math.nan,
                     "best epoch": int(df.loc[best, "epoch"]) if best is not None and "epoch" in df else (
                         int(best) + 1 if best is not None else math.nan)})
    s.add(Table("training", "Training summary", pd.DataFrame(rows)))
    return s


def _curves(df: pd.DataFrame, x: str, y: str, score: str, headline: Mapping | None, classes_ci: Mapping) -> list:
    out = []
    for cls, g in df.groupby("class", sort=False):
        ci = classes_ci.get(str(cls))
        out.append(F.Curve(label=str(cls), x=g[x].to_numpy(float), y=g[y].to_numpy(float),
                           lo=g[f"{y}_lo"].to_numpy(float) if f"{y}_lo" in g else None,
                           hi=g[f"{y}_hi"].to_numpy(float) if f"{y}_hi" in g else None,
                           score=float(g[score].iloc[0]), ci=ci,
                           baseline=float(g["prevalence"].iloc[0]) if "prevalence" in g else None))
    return out


def class_cis(v: MethodView, metric: str) -> dict[str, tuple[float, float]]:
    """Per-class CI of ``roc_auc`` / ``average_precision`` for curve legends (the headline CI for binary)."""
    if len(v.classes) == 2 and v.positive is not None:
        return {str(v.positive): v.metric(metric)[1:]}
    if v.per_class is not None and f"{metric}_ci_lo" in v.per_class:
        return {str(r["class"]): (float(r[f"{metric}_ci_lo"]), float(r[f"{metric}_ci_hi"]))
                for _, r in v.per_class.iterrows()}
    return {}


def headline_table(v: MethodView) -> pd.DataFrame:
    rows = []
    for key, label in HEADLINE_LABELS.items():
        if key in v.headline:
            est, lo, hi = v.metric(key)
            rows.append({"metric": label, "estimate": est, "95% CI": ci_text(lo, hi)})
    return pd.DataFrame(rows)


def error_gallery_figure(errors: pd.DataFrame, image_of, key: str, fw: FigureWriter, n: int = 8) -> FigureRef | None:
    """Thumbnails of the ``n`` most confident errors; ``image_of(id)`` returns the image path (or None)."""
    from breastclip.data.images import ImageDecodeError, load_image_resized

    rows = errors.head(n)
    images, captions = [], []
    for _, r in rows.iterrows():
        path = image_of(str(r["id"]))
        try:
            images.append(load_image_resized(path, 192) if path is not None else None)
        except (ImageDecodeError, OSError):
            images.append(None)
        captions.append(f"#{int(r['rank'])} true {r['y_true']}\npred {r['y_pred']} ({float(r['confidence']):.2f})")
    if not images or all(i is None for i in images):
        return None
    return fw(F.error_gallery(images, captions), f"{key}_errors", "Most confident errors",
              "The test images wrongly classified with the highest confidence, with true and predicted class and the "
              "probability of the predicted class.")


def method_section(v: MethodView, fw: FigureWriter, policy: str | None, image_root=None) -> Section:
    key = slug(v.method)
    s = Section(f"Method: {v.method}", anchor=f"method-{key}")
    s.add(Table(f"headline-{key}", "Headline metrics on test", headline_table(v),
                caption=f"{v.n_test} test images. "
                        + ("Multi-class: AUC and AP are one-vs-rest macro averages." if len(v.classes) > 2
                           else f"Positive class: {v.positive}.")))
    s.add(Table(f"per-class-{key}", "Per-class metrics on test", per_class_display(v.per_class),
                caption="Estimates with 95% bootstrap CIs where computed. Recall is the sensitivity for that class; "
                        "specificity, AUC and AP are one-vs-rest."))
    s.add(fw(F.confusion_matrix(v.confusion, v.classes), f"{key}_confusion_matrix", "Confusion matrix",
             "Rows: true class, normalised to one; each cell gives the share and the image count."))
    if v.roc is not None and len(v.roc):
        ci = class_cis(v, "roc_auc")
        title = "ROC curve (95% CI band)" if len(v.classes) == 2 else (
            f"ROC curves, one-vs-rest\nmacro AUC {fmt_ci(*v.metric('roc_auc'))}")
        s.add(fw(F.roc_curves(_curves(v.roc, "fpr", "tpr", "auc", v.headline, ci), title=title), f"{key}_roc",
                 "ROC curves",
                 "One-vs-rest ROC curve per class on test; shaded: pointwise 95% bootstrap band."))
    if v.pr is not None and len(v.pr):
        ci = class_cis(v, "average_precision")
        title = "Precision-recall curve (95% CI band)" if len(v.classes) == 2 else (
            f"Precision-recall curves, one-vs-rest\nmacro AP {fmt_ci(*v.metric('average_precision'))}")
        s.add(fw(F.pr_curves(_curves(v.pr, "recall", "precision", "average_precision", v.headline, ci), title=title),
                 f"{key}_pr", "Precision-recall curves",
                 "One-vs-rest precision-recall curve per class on test; shaded: 95% bootstrap band; dotted: the "
                 "class prevalence (a random classifier)."))
    cal = v.calibration or {}
    before = cal.get("before")
    if before:
        s.add(calibration_figure(v, before, key, fw))
        rows = [{"": "as predicted", "ECE": before.get("ece"), "Brier": before.get("brier"), "NLL": before.get("nll")}]
        after = cal.get("after")
        if after:
            rows.append({"": f"temperature-scaled (T={fmt(cal.get('temperature'))}, fitted on validation)",
                         "ECE": after.get("ece"), "Brier": after.get("brier"), "NLL": after.get("nll")})
        s.add(Table(f"calibration-{key}", "Calibration on test", pd.DataFrame(rows)))
    if v.operating_points is not None and len(v.operating_points):
        s.add(Table(f"operating-points-{key}", f"Operating points ({vs_text(v)})",
                    operating_table(v.operating_points),
                    caption="Each threshold was chosen on the validation split by its rule (halfway between the two "
                            "validation scores that bound the chosen cut), frozen, and applied to test; validation "
                            "rates beside test counts and rates. A rule that no threshold meets on validation is "
                            "reported 'not attainable' and not applied."))
    if v.sweep is not None and len(v.sweep):
        ops = {} if v.operating_points is None else {
            str(r["policy"]): float(r["threshold"]) for _, r in v.operating_points.iterrows()
            if np.isfinite(float(r["threshold"]))}
        s.add(fw(F.threshold_tradeoff(v.sweep, operating_points=ops, positive=str(v.positive),
                                      title=f"Threshold trade-off ({vs_text(v)})"),
                 f"{key}_thresholds", "Threshold trade-off",
                 f"False positives and false negatives on test across thresholds on P({v.positive}); vertical lines:"
                 " thresholds frozen on validation."))
    sub = subgroup_blocks(v, key, fw)
    s.add(*sub)
    s.add(subgroup_operating_table(v, key, policy))
    if v.errors is not None and len(v.errors):
        errors = v.errors.head(15)
        if "patient_id" in errors and errors["patient_id"].astype(str).str.startswith("img:").all():
            errors = errors.drop(columns="patient_id")  # no patient ids in the source: the id says it all
        errors = errors.drop(columns=[c for c in errors.columns if c not in ERROR_NAMES and c not in ("rank", "id")
                                      and errors[c].nunique() <= 1])
        gallery = error_gallery_figure(v.errors, image_root, key, fw) if image_root is not None else None
        s.add(Table(f"errors-{key}", "Most confident errors on test", errors.rename(columns=ERROR_NAMES),
                    caption="Images the model got wrong with the highest probability on its predicted class; review "
                            "them for label noise, artefacts or shortcuts."), gallery)
    for n in v.notes:
        s.add(Note(n, "info"))
    return s


MIN_CALIBRATION_BINS = 3


def calibration_figure(v: MethodView, before: Mapping, key: str, fw: FigureWriter) -> FigureRef | Note:
    """The reliability diagram, on the top-label confidence or, when that fills fewer than three bins (a saturated
    model: every confidence near 1), on the positive class's probability; a note instead of a one-bar plot."""
    bins = pd.DataFrame(before.get("bins", [])).rename(columns={"bin_lo": "lower", "bin_hi": "upper"})
    populated = int((bins["count"] > 0).sum()) if "count" in bins else 0
    if populated >= MIN_CALIBRATION_BINS:
        return fw(F.calibration(bins, ece=before.get("ece")), f"{key}_calibration", "Calibration",
                  "Observed accuracy against mean confidence (top-label) per bin on test; the diagonal is perfect "
                  "calibration; bars below: images per bin.")
    pos = pd.DataFrame(before.get("positive_bins") or [])
    if len(pos) and int((pos["count"] > 0).sum()) >= MIN_CALIBRATION_BINS:
        pos = pos.rename(columns={"bin_lo": "lower", "bin_hi": "upper", "mean_predicted": "confidence",
                                  "fraction_positive": "accuracy"})
        return fw(F.calibration(pos, ece=None, title=f"Calibration of P({v.positive})"), f"{key}_calibration",
                  "Calibration",
                  f"Observed fraction of {v.positive} against the mean predicted P({v.positive}) per bin on test "
                  f"(the top-label confidences fill only {populated} bin(s)); the diagonal is perfect calibration; "
                  "bars below: images per bin.")
    return Note(f"No reliability diagram: the test predictions fill only {populated} of {len(bins)} confidence "
                f"bins (the model is nearly always {'fully ' if populated <= 1 else ''}confident), so a plot would "
                f"show {populated} bar(s). Expected calibration error {fmt(before.get('ece'))}.", "info")


def vs_text(v: MethodView) -> str:
    """``malignant vs benign`` for binary problems, ``malignant vs rest`` otherwise."""
    others = [c for c in v.classes if c != v.positive]
    return f"{v.positive} vs {others[0] if len(others) == 1 else 'rest'}"


def operating_table(op: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in op.iterrows():
        if not is_attainable(r.to_dict()):
            rows.append({"rule": r["policy"], "threshold": "not attainable on validation (not applied)",
                         "validation sensitivity / specificity": "-", "sensitivity (95% CI)": "-", "specificity (95% CI)": "-", "PPV": math.nan,
                         "NPV": math.nan, "TP": "-", "FP": "-", "TN": "-", "FN": "-"})
            continue
        rows.append({"rule": r["policy"], "threshold": fmt_threshold(r["threshold"]),
                     "validation sensitivity / specificity": f"{fmt(r.get('val_sensitivity'))} / "
                                                               f"{fmt(r.get('val_specificity'))}",
                     "sensitivity (95% CI)": fmt_ci(r.get("sensitivity"), r.get("sensitivity_ci_lo"),
                                                    r.get("sensitivity_ci_hi")),
                     "specificity (95% CI)": fmt_ci(r.get("specificity"), r.get("specificity_ci_lo"),
                                                    r.get("specificity_ci_hi")),
                     "PPV": r.get("ppv", math.nan), "NPV": r.get("npv", math.nan),
                     "TP": int(r["tp"]), "FP": int(r["fp"]), "TN": int(r["tn"]), "FN": int(r["fn"])})
    return pd.DataFrame(rows)


SUBGROUP_METRICS = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity", "accuracy")


def chart_metric(sub: pd.DataFrame) -> str | None:
    """The first headline metric defined in at least one estimated subgroup (AUC is undefined in one-class groups)."""
    ok = sub[sub["status"] == "ok"] if "status" in sub else sub
    for m in SUBGROUP_METRICS:
        if np.isfinite(ok.loc[ok["metric"] == m, "estimate"].astype(float)).any():
            return m
    return None


def int_cells(values) -> list:
    """Counts as integers ('12', never '12.000'), '-' where not computed (a group too small to estimate)."""
    return [int(x) if pd.notna(x) else "-" for x in values]


def subgroup_blocks(v: MethodView, key: str, fw: FigureWriter) -> list:
    sub = v.subgroups
    blocks: list = []
    skipped = (Note("Not analysed: " + "; ".join(f"{c} ({r})" for c, r in v.subgroups_skipped.items()), "info")
               if v.subgroups_skipped else None)
    if sub is None or sub.empty:
        return [Note("No metadata column qualified for a subgroup analysis.", "info")] + ([skipped] if skipped else [])
    groups = sub.drop_duplicates(["column", "value"])[["column", "value", "n", "classes_present", "status"]]
    table = pd.DataFrame({"attribute": groups["column"].to_numpy(), "group": groups["value"].to_numpy(),
                          "images": int_cells(groups["n"]), "classes": groups["classes_present"].to_numpy()})
    for m in SUBGROUP_METRICS:
        rows = sub[sub["metric"] == m].set_index(["column", "value"])
        if rows.empty:
            continue
        rows = rows.reindex(list(zip(groups["column"], groups["value"], strict=True)))
        table[HEADLINE_LABELS.get(m, m) + " (95% CI)"] = [fmt_ci(e, lo, hi) for e, lo, hi in
                                                         zip(rows["estimate"], rows["ci_lo"], rows["ci_hi"],
                                                             strict=True)]
    small = (groups["status"] != "ok").to_numpy()
    min_n = v.min_group_size
    blocks.append(Table(f"subgroups-{key}", "Subgroups", table, flag_rows=[i for i, s in enumerate(small) if s],
                        flag_note=f"groups with fewer than {min_n or 'the minimum'} positives or negatives: not estimated.",
                        caption="Each metadata value analysed separately on test, with 95% bootstrap CIs; '-': "
                                "not estimated (too few positives or negatives) or undefined (AUC needs both classes)."))
    metric = chart_metric(sub)
    if metric is not None:
        m = sub[sub["metric"] == metric].reset_index(drop=True)
        plot = pd.DataFrame({"attribute": m["column"].astype(str), "group": m["value"].astype(str), "n": m["n"],
                             "value": m["estimate"].astype(float), "lo": m["ci_lo"].astype(float),
                             "hi": m["ci_hi"].astype(float), "small": (m["status"] != "ok").to_numpy()})
        label = HEADLINE_LABELS.get(metric, metric)
        blocks.append(fw(F.subgroups(plot, metric="value", metric_label=label, min_size=min_n),
                         f"{key}_subgroups", "Subgroup results",
                         f"{label} per metadata group on test with 95% CI; hollow grey markers: groups too small to "
                         "estimate."))
    if skipped:
        blocks.append(skipped)
    return blocks


def subgroup_operating_table(v: MethodView, key: str, policy: str | None) -> Table | None:
    """Sensitivity and specificity per subgroup at one frozen threshold (the summary's rule)."""
    ops = v.subgroup_ops
    if ops is None or ops.empty:
        return None
    rule = policy if policy and (ops["policy"] == policy).any() else str(ops["policy"].iloc[0])
    o = ops[ops["policy"] == rule].reset_index(drop=True)
    table = pd.DataFrame({
        "attribute": o["column"], "group": o["value"], "images": int_cells(o["n"]),
        f"{v.positive}": int_cells(o["n_positive"]) if "n_positive" in o else "-",
        "sensitivity (95% CI)": [fmt_ci(a, b, c) for a, b, c in zip(
            o["sensitivity"], o.get("sensitivity_ci_lo", o["sensitivity"] * np.nan),
            o.get("sensitivity_ci_hi", o["sensitivity"] * np.nan), strict=True)],
        "specificity (95% CI)": [fmt_ci(a, b, c) for a, b, c in zip(
            o["specificity"], o.get("specificity_ci_lo", o["specificity"] * np.nan),
            o.get("specificity_ci_hi", o["specificity"] * np.nan), strict=True)],
        **{k.upper(): int_cells(o[k]) for k in ("tp", "fp", "tn", "fn")}})
    small = [i for i, s in enumerate(o["status"]) if s != "ok"] if "status" in o else []
    thr = fmt_threshold(float(o["threshold"].iloc[0])) if "threshold" in o and len(o) else "-"
    return Table(f"subgroup-operating-{key}", f"Operating point by subgroup ({rule}, t={thr})", table,
                 flag_rows=small, flag_note=f"groups with fewer than {v.min_group_size or 'the minimum'} positives or "
                                           "negatives: not estimated.",
                 caption=f"The threshold frozen on validation ({rule}) applied in each subgroup of the test split; "
                         f"'{v.positive}': positive images in the group.")


def environment_section(environment: Mapping[str, str], run_info: Mapping | None,
                        views: Sequence[MethodView] = ()) -> Section:
    s = Section("Environment and reproducibility")
    texts = statistical_methods(views)
    if texts:
        s.add(Heading("Statistical methods"), *texts)
    s.add(Table("environment", "Software and settings",
                pd.DataFrame([(k, str(v)) for k, v in environment.items()], columns=["item", "value"])))
    config = (run_info or {}).get("config")
    if config:
        s.add(Table("config", "Run configuration",
                    pd.DataFrame([(k, str(v)) for k, v in _flatten(config).items()], columns=["key", "value"])))
    return s


def statistical_methods(views: Sequence[MethodView]) -> list[str]:
    """The evaluations' methods paragraphs, said once: the per-method opening becomes "Each method" so identical
    settings collapse into one paragraph; methods evaluated differently keep their own (named) paragraph."""
    texts: dict[str, list[str]] = {}
    for v in views:
        if v.methods_text:
            texts.setdefault(v.methods_text.replace(f"Method '{v.method}'", "Each method", 1), []).append(v.method)
    if len(texts) == 1:
        return list(texts)
    return [f"{', '.join(ms)}: {t}" for t, ms in texts.items()]


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def limitations(data: DataView, views: Sequence[MethodView], extra: Sequence[str] = ()) -> list[str]:
    """Limitations that follow from the data and results, plus the caller's."""
    out = [RESEARCH_ONLY + " No result here has been validated prospectively or on an external site."]
    n_test = int(data.counts.loc["test"].sum()) if "test" in data.counts.index else 0
    if n_test and n_test < 200:
        out.append(f"Small test set ({n_test} images): confidence intervals are wide; differences between "
                   "methods within them are not established.")
    if "test" in data.counts.index:
        rare = [c for c in data.classes if data.counts.loc["test", c] < 30]
        if rare:
            out.append(f"Fewer than 30 test images for {', '.join(rare)}: per-class estimates are unstable.")
    if not data.patient_ids_from_source:
        out.append("No patient ids in the source: images of one patient may be split across train and test, "
                   "which can inflate the estimates.")
    shares = data.counts.sum(axis=0)
    if len(shares) and shares.max() > 2 * max(shares.min(), 1):
        out.append("Imbalanced classes: accuracy alone is misleading; read balanced accuracy and per-class recall.")
    out.append("Single data set: performance on other devices, sites, populations or image pre-processing is "
               "unknown.")
    out.extend(extra)
    return out
