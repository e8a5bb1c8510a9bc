"""Plain views of what the report shows: one :class:`MethodView` per method and one :class:`DataView` of the data.

:func:`method_view` is the single place that reads the evaluation layer's ``Evaluation``; everything after it works
on these plain tables, so a change in the evaluation structures touches one function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
    notes: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)  # the evaluation's to_dict(), written to metrics.json

    def metric(self, name: str) -> tuple[float, float, float]:
        h = self.headline.get(name) or {}
        return (_f(h.get("estimate")), _f(h.get("ci_lo")), _f(h.get("ci_hi")))

    @property
    def auc(self) -> float:
        return self.metric("roc_auc")[0]

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


def _get(obj, name: str, default=None):
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _frame(value) -> pd.DataFrame | None:
    if value is None:
        return None
    if isinstance(value, pd.DataFrame):
        return value
    return pd.DataFrame(value)


def method_view(evaluation, *, method: str | None = None) -> MethodView:
    """Read one ``breastclip.evaluation.Evaluation`` (or its ``to_dict()``) into a :class:`MethodView`."""
    raw = evaluation.to_dict() if hasattr(evaluation, "to_dict") else dict(evaluation)
    ev = evaluation
    classes = list(_get(ev, "classes"))
    confusion = _get(ev, "confusion")
    if isinstance(confusion, Mapping):
        confusion = confusion.get("counts")
    return MethodView(
        method=str(method or _get(ev, "method")),
        classes=classes,
        positive=_get(ev, "positive_class"),
        n_test=int(_get(ev, "n_test", 0) or 0),
        n_test_patients=int(_get(ev, "n_test_patients", 0) or 0),
        headline=dict(_get(ev, "headline") or {}),
        per_class=_frame(_get(ev, "per_class")),
        confusion=np.asarray(confusion, dtype=float),
        roc=_frame(_get(ev, "roc")),
        pr=_frame(_get(ev, "pr")),
        calibration=_get(ev, "calibration"),
        operating_points=_frame(_get(ev, "operating_points")),
        sweep=_frame(_get(ev, "sweep")),
        subgroups=_frame(_get(ev, "subgroups")),
        subgroups_skipped=dict(_get(ev, "subgroups_skipped") or {}),
        min_group_size=_get(ev, "min_group_size"),
        errors=_frame(_get(ev, "errors")),
        notes=list(_get(ev, "notes") or []),
        raw=raw,
    )
