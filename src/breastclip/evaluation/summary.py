"""One entry point that evaluates one method's predictions: :func:`evaluate_predictions` -> :class:`Evaluation`.

Splits: headline metrics, per-class table, confusion matrices, curves, calibration, subgroups and errors are
computed on the ``test`` rows. The ``val`` rows are used for exactly three things: the headline metrics again
(``val_headline``, with the same bootstrap: the figure a method is *selected* by, see
:mod:`breastclip.evaluation.leaderboard`), and two things *fitted* there and then frozen: the operating-point
thresholds and the calibration temperature. Without validation rows these two are skipped
(with a note); test rows are never used in their place.

``Evaluation.to_dict()`` (JSON-serialisable: DataFrames become lists of records, NaN / inf become None)::

    method, classes, positive_class, positive_class_reason, disclaimer
    n:               {"val": {"images", "patients"}, "test": {...}}
    bootstrap:       {"unit": "patient" | "image", "n_boot", "seed", "alpha", "interval": "percentile" | "bca",
                      "patient_ids": bool (False: the data set has none, each image is its own patient)}
    headline:        {metric: {"estimate", "ci_lo", "ci_hi", "n_boot_used", "n_boot_skipped"}}   (test)
    val_headline:    the same metrics on the validation rows (the selection figure; empty without val rows)
    per_class:       [{class, support, precision, precision_ci_lo, precision_ci_hi, recall, recall_ci_lo, ...,
                       f1, specificity, roc_auc, average_precision (each with _ci_lo / _ci_hi)}]
    confusion:       {"classes", "counts", "normalised"}                      (rows = true class)
    operating_points:[{policy, attainable, threshold, val_sensitivity, val_specificity, tp, fp, tn, fn,
                       sensitivity, specificity, ppv, npv, <rate>_ci_lo, <rate>_ci_hi}]  (thresholds from val;
                       NaN / None when the policy is not attainable on val, see evaluation.thresholds)
    threshold_sweep: [{split, threshold, tp, fp, tn, fn, sensitivity, specificity, ppv, npv}]
    roc:             [{class, fpr, tpr, tpr_lo, tpr_hi, auc}]                 (fixed FPR grid, bootstrap bands)
    pr:              [{class, recall, precision, precision_lo, precision_hi, average_precision, prevalence}]
    calibration:     see breastclip.evaluation.calibration.calibration_summary
    subgroups:       [{column, value, n, n_patients, classes_present, status, metric, estimate, ci_lo, ci_hi,
                       n_boot_used}]
    subgroups_skipped: {column: reason}
    subgroup_operating_points: [{column, value, n, n_patients, n_positive, status, policy, threshold, tp, fp, tn,
                       fn, sensitivity, specificity, ppv, npv (+ _ci_lo / _ci_hi)}]  (val thresholds, per subgroup)
    fairness:        [{column, metric, n_groups, low_group, low_value, high_group, high_value, gap, ci_lo,
                      ci_hi, n_boot_used}]  (largest between-group gap per attribute; see evaluation.fairness)
    confident_errors:[{rank, id, patient_id, y_true, y_pred, confidence, p_true, error_type, <metadata>}]
    settings:        {test_split, val_split, threshold_policies, n_bins, min_group_size, max_levels,
                      subgroup_columns, subgroup_bins, top_k_errors, threshold_rule}
    notes:           [str]

Operating points and sweeps need a positive class (binary problems, or one-vs-rest for a named positive class of a
multi-class problem); they are empty otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.evaluation.bootstrap import ClusterResampler, bootstrap_weighted
from breastclip.evaluation.calibration import calibration_summary
from breastclip.evaluation.compare import compare_methods
from breastclip.evaluation.curves import curve_bands
from breastclip.evaluation.errors import confident_errors
from breastclip.evaluation.fairness import fairness_gaps
from breastclip.evaluation.metrics import (
    PER_CLASS_METRICS,
    confusion_matrices,
    per_class_table,
    resolve_positive_class,
)
from breastclip.evaluation.subgroups import subgroup_operating_points, subgroup_table
from breastclip.evaluation.thresholds import DEFAULT_POLICIES, operating_points, parse_policy, threshold_sweep
from breastclip.evaluation.weighted import weighted_sample_metrics
from breastclip.predictions import classes_of, proba_of, validate_predictions, y_true_index

__all__ = ["Evaluation", "compare_methods", "evaluate_predictions", "jsonable"]


@dataclass
class Evaluation:
    """Everything measured for one method; plain data only (see the module docstring for the layout)."""

    method: str
    classes: list[str]
    positive_class: str | None
    positive_class_reason: str
    n: dict[str, dict[str, int]]
    bootstrap: dict[str, Any]
    headline: dict[str, dict[str, float]]
    per_class: pd.DataFrame
    confusion: dict[str, Any]
    operating_points: pd.DataFrame
    threshold_sweep: pd.DataFrame
    roc: pd.DataFrame
    pr: pd.DataFrame
    calibration: dict[str, Any]
    subgroups: pd.DataFrame
    subgroups_skipped: dict[str, str]
    confident_errors: pd.DataFrame
    subgroup_operating_points: pd.DataFrame = field(default_factory=pd.DataFrame)
    val_headline: dict[str, dict[str, float]] = field(default_factory=dict)
    fairness: pd.DataFrame = field(default_factory=pd.DataFrame)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    disclaimer: str = RESEARCH_ONLY

    def headline_frame(self) -> pd.DataFrame:
        """The headline metrics as a table: metric, estimate, ci_lo, ci_hi, n_boot_used, n_boot_skipped."""
        return pd.DataFrame([{"metric": m, **v} for m, v in self.headline.items()])

    def methods_text(self) -> str:
        """A statistical-methods paragraph stating this evaluation's actual settings (for a report or a paper)."""
        b, st, n = self.bootstrap, self.settings, self.n.get(self.settings.get("test_split", "test"), {})
        level = round(100 * (1 - b.get("alpha", 0.05)))
        who = (f"{n.get('patients', '?')} patients" if b.get("patient_ids", True)
               else "a data set without patient ids")
        unit = ("patients with all of their images (cluster bootstrap)" if b.get("unit") == "patient"
                else "images (every patient contributes one image)" if b.get("patient_ids", True)
                else "images (without patient ids, images of one patient may be correlated)")
        auc = (f"ROC AUC and average precision are those of class '{self.positive_class}'" if len(self.classes) == 2
               else "ROC AUC and average precision are one-vs-rest macro averages over the classes")
        parts = [
            f"Method '{self.method}' was evaluated on the held-out {st.get('test_split', 'test')} split "
            f"({n.get('images', '?')} images from {who}).",
            (f"{level}% confidence intervals are {'BCa' if b.get('interval') == 'bca' else 'percentile'} bootstrap "
             f"intervals from {b.get('n_boot')} replicates "
             f"(seed {b.get('seed')}) resampling {unit}; replicates lacking a class of the test set were skipped."
             if b.get("n_boot") else "No confidence intervals were computed (no bootstrap replicates)."),
            f"{auc}; class predictions are the most probable class.",
        ]
        if len(self.operating_points):
            parts.append(
                f"Decision thresholds for '{self.positive_class}' were chosen on the {st.get('val_split', 'val')} "
                f"split only (policies: {', '.join(map(str, self.operating_points['policy']))}; positive when the "
                "probability is at least the threshold), frozen, and applied unchanged to the test split.")
        cal = self.calibration or {}
        text = (f"Calibration is reported as top-label expected calibration error ({cal.get('n_bins', 15)} "
                "equal-width bins) and Brier score")
        if cal.get("temperature") is not None:
            text += (f", before and after temperature scaling fitted on the validation split by minimising the "
                     f"negative log-likelihood (T = {cal['temperature']:.3g})")
        parts.append(text + ".")
        if len(self.subgroups):
            parts.append(f"Subgroups with fewer than {st.get('min_group_size', '?')} positive or fewer than "
                         f"{st.get('min_group_size', '?')} negative test images are listed but not analysed; "
                         "continuous metadata are binned into quartile ranges.")
        if len(self.fairness):
            parts.append("Fairness: per attribute, the largest gap in sensitivity and specificity (at the first "
                         "frozen threshold) and in ROC AUC between groups, with a bootstrap CI of the gap.")
        parts.append("Methods are compared on the same test images with DeLong's test for ROC AUC when every "
                     "patient contributes one image, otherwise with a paired patient-level bootstrap; p-values are "
                     "Holm-adjusted across the methods compared.")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (DataFrames as lists of records, NaN / inf as None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


def jsonable(obj: Any) -> Any:
    """Plain JSON types: DataFrames -> records, numpy scalars -> Python, NaN / inf -> None."""
    if isinstance(obj, pd.DataFrame):
        return [jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def _join_metadata(part: pd.DataFrame, manifest_df: pd.DataFrame | None, notes: list[str]) -> pd.DataFrame:
    if manifest_df is None:
        return part.reset_index(drop=True)
    mdf = manifest_df
    if "id" not in mdf.columns:
        raise ValueError("manifest_df has no 'id' column to join on")
    extra = [c for c in mdf.columns if c not in part.columns or c == "id"]
    meta = mdf[extra].drop_duplicates("id").assign(id=lambda d: d["id"].astype(str))
    joined = part.assign(id=part["id"].astype(str)).merge(meta, on="id", how="left", validate="many_to_one")
    unmatched = int(joined["id"].isin(meta["id"]).__invert__().sum())
    if unmatched:
        notes.append(f"{unmatched} prediction rows have no manifest row: their metadata is missing")
    return joined.reset_index(drop=True)


def _val_headline(val: pd.DataFrame, positive_index: int | None, *, n_boot: int, seed: int, alpha: float,
                  interval: str) -> dict[str, dict[str, float]]:
    """Headline metrics of the validation rows with the test split's bootstrap (patients resampled when they have
    several images): the selection figure. Empty without validation rows."""
    if val.empty:
        return {}
    y, proba = y_true_index(val), proba_of(val)
    groups = val["patient_id"].astype(str).to_numpy()
    sampler = ClusterResampler(len(val), groups)

    def statistic(w: np.ndarray) -> dict[str, np.ndarray]:
        return weighted_sample_metrics(y, proba, positive_index, w)[0]

    return bootstrap_weighted(statistic, len(y), groups=groups if sampler.clustered else None, required_labels=y,
                              n_boot=n_boot, seed=seed, alpha=alpha, interval=interval)


def evaluate_predictions(
    pred: pd.DataFrame,
    manifest_df: pd.DataFrame | None = None,
    *,
    method: str | None = None,
    positive_class: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_group_size: int = 20,
    threshold_policies: Sequence[str] = DEFAULT_POLICIES,
    n_bins: int = 15,
    subgroup_columns: Sequence[str] | None = None,
    subgroup_bins: Mapping[str, int | Sequence[float]] | None = None,
    max_levels: int = 12,
    top_k_errors: int = 20,
    test_split: str = "test",
    val_split: str = "val",
    interval: str = "percentile",
) -> Evaluation:
    """Evaluate one method's predictions table (val + test rows), optionally joined with manifest metadata.

    ``interval="bca"`` gives BCa intervals for the headline, per-class and subgroup metrics (curves, calibration
    and operating points keep percentile intervals); it costs one extra evaluation per test patient.
    """
    validate_predictions(pred)
    for spec in threshold_policies:  # fail fast on a bad config, before any bootstrap
        parse_policy(spec)
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0 (0 skips the intervals), got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if interval not in ("percentile", "bca"):
        raise ValueError(f"interval must be 'percentile' or 'bca', got {interval!r}")
    methods = list(dict.fromkeys(pred["method"].astype(str)))
    if method is None:
        if len(methods) != 1:
            raise ValueError(f"the predictions table holds methods {methods}: pass method= to pick one")
        method = methods[0]
    elif method not in methods:
        raise ValueError(f"method {method!r} is not in the predictions table; methods: {methods}")
    pred = pred[pred["method"].astype(str) == method]
    classes = classes_of(pred)
    k = len(classes)
    pos_name, pos_reason = resolve_positive_class(classes, positive_class)
    pos = classes.index(pos_name) if pos_name is not None else None
    notes: list[str] = []

    test = _join_metadata(pred[pred["split"] == test_split], manifest_df, notes)
    val = pred[pred["split"] == val_split].reset_index(drop=True)
    if test.empty:
        raise ValueError(f"method {method!r} has no rows with split == {test_split!r} "
                         f"(splits present: {sorted(pred['split'].astype(str).unique())})")
    if test["id"].duplicated().any():
        raise ValueError(f"method {method!r} has duplicate ids on split {test_split!r}")
    y, proba = y_true_index(test), proba_of(test)
    groups = test["patient_id"].astype(str).to_numpy()
    sampler = ClusterResampler(len(test), groups)
    unit = "patient" if sampler.clustered else "image"
    boot_groups = groups if sampler.clustered else None
    pids = test["patient_id"].astype(str)
    # a source without patient ids gives every image its own group ("img:<id>", or the id itself)
    no_pids = bool(pids.str.startswith("img:").all()) or bool((pids == test["id"].astype(str)).all())
    if no_pids:
        notes.append("the data set has no patient ids: each image counts as its own patient, so if patients "
                     "contributed several images the intervals are too narrow")
    elif not sampler.clustered:
        notes.append("every test patient has one image: the bootstrap resamples images")
    shared = set(val["patient_id"].astype(str)) & set(groups)
    if shared:
        notes.append(f"{len(shared)} patient(s) have images in both {val_split!r} and {test_split!r}: thresholds "
                     "and temperature were fitted on data correlated with the test set (check the split)")
    missing = [c for j, c in enumerate(classes) if not (y == j).any()]
    if missing:
        notes.append(f"classes absent from the test split: {missing}")

    hl_pos = pos if k == 2 else None

    def statistic(w: np.ndarray) -> dict[str, np.ndarray]:
        head, pc = weighted_sample_metrics(y, proba, hl_pos, w)
        return {**head, **{f"{m}@{j}": pc[m][:, j] for m in PER_CLASS_METRICS for j in range(k)}}

    res = bootstrap_weighted(statistic, len(y), groups=boot_groups, required_labels=y, n_boot=n_boot, seed=seed,
                             alpha=alpha, interval=interval)
    val_headline = _val_headline(val, hl_pos, n_boot=n_boot, seed=seed, alpha=alpha, interval=interval)
    headline = {m: v for m, v in res.items() if "@" not in m}
    per_class = per_class_table(y, proba, classes)
    for m in PER_CLASS_METRICS:
        per_class.insert(per_class.columns.get_loc(m) + 1, f"{m}_ci_lo", [res[f"{m}@{j}"]["ci_lo"] for j in range(k)])
        per_class.insert(per_class.columns.get_loc(m) + 2, f"{m}_ci_hi", [res[f"{m}@{j}"]["ci_hi"] for j in range(k)])
    roc, pr = curve_bands(y, proba, classes, positive_index=hl_pos, groups=boot_groups, n_boot=n_boot, seed=seed,
                          alpha=alpha)

    ops = pd.DataFrame()
    sweep = pd.DataFrame()
    y_val = y_true_index(val) if not val.empty else None
    p_val = proba_of(val) if not val.empty else None
    if pos is not None:
        yb_test, s_test = (y == pos).astype(int), proba[:, pos]
        sweeps = [threshold_sweep(yb_test, s_test).assign(split=test_split)]
        if val.empty:
            notes.append(f"no {val_split!r} rows: operating points (thresholds are chosen on validation only) "
                         "were not computed")
        elif y_val is not None and p_val is not None:
            yb_val, s_val = (np.asarray(y_val) == pos).astype(int), p_val[:, pos]
            sweeps.insert(0, threshold_sweep(yb_val, s_val).assign(split=val_split))
            if 0 < yb_val.sum() < yb_val.size:
                ops = operating_points(yb_val, s_val, yb_test, s_test, threshold_policies, groups_test=boot_groups,
                                       n_boot=n_boot, seed=seed, alpha=alpha)
            else:
                notes.append(f"the {val_split!r} split holds one class only: operating points were not computed")
        sweep = pd.concat(sweeps, ignore_index=True)
        sweep = sweep[["split", *[c for c in sweep.columns if c != "split"]]]
    else:
        notes.append("multi-class problem without a positive class: no operating points (pass positive_class=)")

    if val.empty:
        notes.append(f"no {val_split!r} rows: temperature scaling was not fitted")
    calibration = calibration_summary(y, proba, y_val, p_val, n_bins=n_bins, positive_index=pos, groups=boot_groups,
                                      n_boot=n_boot, seed=seed, alpha=alpha)

    subgroups, skipped = subgroup_table(
        y, proba, classes, test, groups=groups, positive_index=hl_pos, columns=subgroup_columns, bins=subgroup_bins,
        min_group_size=min_group_size, max_levels=max_levels, n_boot=n_boot, seed=seed, alpha=alpha,
        interval=interval)
    errors = confident_errors(test, k=top_k_errors, positive_class=pos_name)
    sub_ops = pd.DataFrame()
    fairness = pd.DataFrame()
    usable = ops[ops["attainable"]] if len(ops) else ops
    if len(usable):
        sub_ops = subgroup_operating_points(
            (y == pos), proba[:, pos], test, dict(zip(usable["policy"], usable["threshold"], strict=True)),
            groups=groups,
            columns=subgroup_columns, bins=subgroup_bins, min_group_size=min_group_size, max_levels=max_levels,
            n_boot=n_boot, seed=seed, alpha=alpha)
        fairness = fairness_gaps(
            (y == pos), proba[:, pos], float(usable["threshold"].iloc[0]), test, groups=boot_groups,
            columns=subgroup_columns, bins=subgroup_bins, min_group_size=min_group_size, max_levels=max_levels,
            n_boot=n_boot, seed=seed, alpha=alpha)

    def counts(df: pd.DataFrame) -> dict[str, int]:
        return {"images": len(df), "patients": int(df["patient_id"].astype(str).nunique()) if len(df) else 0}

    return Evaluation(
        method=method, classes=classes, positive_class=pos_name, positive_class_reason=pos_reason,
        n={val_split: counts(val), test_split: counts(test)},
        bootstrap={"unit": unit, "n_boot": int(n_boot), "seed": int(seed), "alpha": float(alpha),
                   "interval": interval, "patient_ids": not no_pids},
        headline=headline, per_class=per_class,
        confusion=confusion_matrices(y, proba, classes), operating_points=ops, threshold_sweep=sweep,
        roc=roc, pr=pr, calibration=calibration, subgroups=subgroups, subgroups_skipped=skipped,
        confident_errors=errors, subgroup_operating_points=sub_ops, fairness=fairness, val_headline=val_headline,
        notes=notes,
        settings={"test_split": test_split, "val_split": val_split, "threshold_policies": list(threshold_policies),
                  "n_bins": int(n_bins), "min_group_size": int(min_group_size), "max_levels": int(max_levels),
                  "subgroup_columns": None if subgroup_columns is None else list(subgroup_columns),
                  "subgroup_bins": None if subgroup_bins is None else {str(k): v for k, v in subgroup_bins.items()},
                  "top_k_errors": int(top_k_errors), "threshold_rule": "positive when p >= threshold"})
