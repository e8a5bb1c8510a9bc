"""Plain views of what the report shows: one :class:`MethodView` per method and one :class:`DataView` of the data.

:func:`method_view` is the single place that reads the evaluation layer's ``Evaluation``; everything after it works
on these plain tables, so a change in the evaluation structures touches one function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from breastclip.predictions import classes_of

HEADLINE_LABELS = {
    "roc_auc": "ROC AUC",
    "average_precision": "Average precision",
    "balanced_accuracy": "Balanced accuracy",
    "accuracy": "Accuracy",
    "f1_macro": "Macro F1",
    "precision_macro": "Macro precision",
    "recall_macro": "Macro recall (sensitivity)",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
}


@dataclass
class MethodView:
    """Everything the report needs about one method, measured on the test split by the evaluation layer."""

    method: str
    classes: list[str]
    positive: str | None
    n_test: int
    n_test_patients: int
    headline: dict[str, dict]  # metric -> {"estimate", "ci_lo", "ci_hi", ...}
    per_class: pd.DataFrame
    confusion: np.ndarray
    roc: pd.DataFrame | None = None  # class, fpr, tpr, tpr_lo, tpr_hi, auc
    pr: pd.DataFrame | None = None  # class, recall, precision, precision_lo, precision_hi, average_precision, prevalence
    calibration: dict | None = None  # {"temperature", "before": {"ece", "brier", "nll", "bins"}, "after": ...}
    operating_points: pd.DataFrame | None = None  # policy, threshold, tp, fp, tn, fn, sensitivity, ... (test)
    sweep: pd.DataFrame | None = None  # threshold, tp, fp, tn, fn, sensitivity, specificity (test)
    subgroups: pd.DataFrame | None = None  # column, value, n, status, metric, estimate, ci_lo, ci_hi
    subgroups_skipped: dict[str, str] = field(default_factory=dict)
    min_group_size: int | None = None
    errors: pd.DataFrame | None = None  # rank, id, y_true, y_pred, confidence, p_true, error_type, metadata...
    subgroup_ops: pd.DataFrame | None = None  # column, value, n, n_positive, status, policy, tp, fp, ..., sensitivity
    fairness: pd.DataFrame | None = None  # column, metric, n_groups, low_group, low_value, high_group, ..., gap, ci
    methods_text: str = ""  # the evaluation's statistical-methods paragraph
    notes: list[str] = field(default_factory=list)
    bootstrap: dict = field(default_factory=dict)  # unit (patient | image), n_boot, seed, alpha
    raw: dict = field(default_factory=dict)  # the evaluation's to_dict(), written to metrics.json

    def metric(self, name: str) -> tuple[float, float, float]:
        h = self.headline.get(name) or {}
        return (_f(h.get("estimate")), _f(h.get("ci_lo")), _f(h.get("ci_hi")))

    def operating_point(self, policy: str | None = None) -> dict | None:
        """The row of one policy (default: the first one) as a dict, or None."""
        op = self.operating_points
        if op is None or op.empty:
            return None
        rows = op[op["policy"] == policy] if policy else op
        return rows.iloc[0].to_dict() if len(rows) else None


@dataclass
class DataView:
    """The data set as the report describes it."""

    name: str
    classes: list[str]
    counts: pd.DataFrame  # rows: split, columns: classes (images)
    patients: pd.Series  # split -> distinct patients
    patient_ids_from_source: bool
    n_images: int
    n_patients: int
    notes: list[str] = field(default_factory=list)


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


SPLIT_ORDER = ("train", "val", "test")


def data_view(predictions: pd.DataFrame, manifest_df: pd.DataFrame | None, *, name: str,
              classes: list[str] | None = None, notes: list[str] | None = None) -> DataView:
    """Counts by split and class from the manifest (every image) or, without one, from the predictions table."""
    classes = list(classes or classes_of(predictions))
    if manifest_df is not None and len(manifest_df):
        df = manifest_df.rename(columns={"label": "_label"})
    else:
        df = predictions.drop_duplicates("id").rename(columns={"y_true": "_label"})
    split = df["split"].fillna("").astype(str).replace("", "unsplit")
    counts = pd.crosstab(split, df["_label"].astype(str)).reindex(columns=classes, fill_value=0)
    order = [s for s in SPLIT_ORDER if s in counts.index] + [s for s in counts.index if s not in SPLIT_ORDER]
    counts = counts.reindex(order)
    counts.index.name, counts.columns.name = "split", None
    pids = df["patient_id"].astype(str) if "patient_id" in df else df["id"].astype(str)
    patients = pids.groupby(split).nunique().reindex(order)
    from_source = not (pids.str.startswith("img:").all() or (pids == df["id"].astype(str)).all())
    return DataView(name=name, classes=classes, counts=counts, patients=patients,
                    patient_ids_from_source=bool(from_source), n_images=len(df), n_patients=int(pids.nunique()),
                    notes=list(notes or []))


def _frame(value) -> pd.DataFrame | None:
    if value is None:
        return None
    return value if isinstance(value, pd.DataFrame) else pd.DataFrame(value)


def method_view(evaluation, *, min_group_size: int | None = None, test_split: str = "test") -> MethodView:
    """Read one :class:`breastclip.evaluation.Evaluation` into a :class:`MethodView` (test split)."""
    ev = evaluation
    settings = dict(getattr(ev, "settings", None) or {})
    test_split = settings.get("test_split", test_split)
    min_group_size = settings.get("min_group_size", min_group_size)
    methods_text = ev.methods_text() if hasattr(ev, "methods_text") else ""
    n_test = (ev.n or {}).get(test_split, {})
    sweep = _frame(ev.threshold_sweep)
    if sweep is not None and "split" in sweep:
        sweep = sweep[sweep["split"] == test_split].drop(columns="split").reset_index(drop=True)
    notes = list(ev.notes or [])
    if ev.positive_class is not None and ev.positive_class_reason not in ("argument",):
        notes.append(f"positive class '{ev.positive_class}' chosen by {ev.positive_class_reason}")
    return MethodView(
        method=str(ev.method),
        classes=[str(c) for c in ev.classes],
        positive=ev.positive_class,
        n_test=int(n_test.get("images", 0)),
        n_test_patients=int(n_test.get("patients", 0)),
        headline=dict(ev.headline or {}),
        per_class=_frame(ev.per_class),
        confusion=np.asarray(ev.confusion["counts"], dtype=float),
        roc=_frame(ev.roc),
        pr=_frame(ev.pr),
        calibration=ev.calibration,
        operating_points=_frame(ev.operating_points),
        sweep=sweep,
        subgroups=_frame(ev.subgroups),
        subgroups_skipped=dict(ev.subgroups_skipped or {}),
        min_group_size=min_group_size,
        errors=_frame(ev.confident_errors),
        subgroup_ops=_frame(getattr(ev, "subgroup_operating_points", None)),
        fairness=_frame(getattr(ev, "fairness", None)),
        methods_text=methods_text,
        notes=notes,
        bootstrap=dict(ev.bootstrap or {}),
        raw=ev.to_dict(),
    )
