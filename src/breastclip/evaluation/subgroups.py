"""Subgroup analysis: every headline metric with its bootstrap CI per value of each metadata column.

Column selection (:func:`select_columns`): by default every metadata column of the joined table, i.e. every
column that is neither a manifest key (id, image, label, patient_id, split) nor a predictions column (method,
y_true, y_pred, p_<class>). ``source`` counts as metadata (useful when data sets are pooled). A column is skipped,
with the reason recorded, when it is constant, or when it has more than ``max_levels`` distinct values (free text,
ids, continuous measurements) unless it is binned through ``bins={column: n_quantiles | [edges]}``
(``pandas.qcut`` / ``pandas.cut``). Missing values (NaN or empty strings) form their own group ``"(missing)"``.

Numeric columns with more than ``AUTO_BIN_LEVELS`` distinct values (age, BMI, lesion size) are binned into
quartile ranges (``"34-45"``) instead of one group per value; ``bins`` overrides that per column.

A group's size is counted in the images that carry its metrics, not in images: a group is estimated when it holds
at least ``min_group_size`` positives *and* ``min_group_size`` negatives (the positive class when one is given,
else the rarest class of the group against the rest). Smaller groups are listed with status ``"too_small"`` and
NaN metrics instead of being computed: a sensitivity from three positives is noise, however many negatives the
group holds. A group holding a single class is estimated when that class reaches ``min_group_size`` (accuracy is
meaningful: per-subtype sensitivity when the column is a finer label such as a BreakHis subtype or the CBIS-DDSM
pathology) but its AUC / AP are NaN; ``classes_present`` says which classes a group holds.

:func:`subgroup_table` returns a long table, one row per (column, value, metric)::

    column, value, n, n_patients, classes_present, status, metric, estimate, ci_lo, ci_hi, n_boot_used

:func:`subgroup_operating_points` applies the thresholds frozen on validation to each subgroup of the test split
(e.g. sensitivity at the Youden threshold per breast density), one row per (column, value, policy)::

    column, value, n, n_patients, n_positive, status, policy, threshold, tp, fp, tn, fn,
    sensitivity, specificity, ppv, npv (each rate with _ci_lo / _ci_hi)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from breastclip.evaluation.bootstrap import bootstrap_weighted
from breastclip.evaluation.metrics import BINARY_HEADLINE, MULTICLASS_HEADLINE
from breastclip.evaluation.thresholds import apply_thresholds
from breastclip.evaluation.weighted import weighted_sample_metrics
from breastclip.predictions import BASE_COLUMNS, PROB_PREFIX

AUTO_BIN_LEVELS = 6  # numeric columns with more distinct values are binned into quartiles
AUTO_BINS = 4
NOT_METADATA = {"id", "image", "label", "patient_id", "split", *BASE_COLUMNS}
MISSING = "(missing)"
COLUMNS = ["column", "value", "n", "n_patients", "classes_present", "status", "metric", "estimate", "ci_lo",
           "ci_hi", "n_boot_used"]


def _present(s: pd.Series) -> pd.Series:
    """Not missing: neither NaN nor an empty string (manifests read back from CSV hold '' for missing)."""
    return s.notna() & (s.astype(str).str.strip() != "")


def _numeric(s: pd.Series) -> bool:
    """Numeric dtype, or strings that all parse as numbers (a manifest CSV read as text)."""
    if pd.api.types.is_numeric_dtype(s):
        return True
    present = s[_present(s)]
    return bool(len(present)) and pd.to_numeric(present, errors="coerce").notna().all()


def select_columns(
    df: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    max_levels: int = 12,
    bins: Mapping[str, int | Sequence[float]] | None = None,
) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """``({column: group labels}, {skipped column: reason})`` for the columns worth a subgroup analysis."""
    bins = dict(bins or {})
    if columns is None:
        candidates = [c for c in df.columns if c not in NOT_METADATA and not str(c).startswith(PROB_PREFIX)]
    else:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"subgroup columns {missing} are not in the joined table; available: "
                             f"{[c for c in df.columns if c not in NOT_METADATA]}")
        candidates = list(columns)
    unknown_bins = sorted(set(bins) - set(candidates))
    if unknown_bins:
        raise ValueError(f"bins given for columns {unknown_bins} that are not analysed")
    chosen: dict[str, pd.Series] = {}
    skipped: dict[str, str] = {}
    for col in candidates:
        s = df[col]
        if col in bins:
            spec = bins[col]
            values = pd.to_numeric(s.where(_present(s)), errors="coerce")
            cut = (pd.qcut(values, q=int(spec), duplicates="drop") if isinstance(spec, int | np.integer)
                   else pd.cut(values, bins=list(spec), include_lowest=True))
            labels = cut.astype(str).where(cut.notna(), MISSING)
        elif _numeric(s) and pd.to_numeric(s.where(_present(s)), errors="coerce").nunique() > AUTO_BIN_LEVELS:
            labels = range_labels(pd.to_numeric(s.where(_present(s)), errors="coerce"), AUTO_BINS)
        else:
            labels = s.astype(str).str.strip().where(_present(s), MISSING)
            levels = labels.nunique()
            if levels > max_levels:
                if _numeric(s):
                    skipped[col] = (f"continuous: {levels} distinct values > max_levels={max_levels}; "
                                    f"pass bins={{'{col}': 4}} to analyse it by quartiles")
                else:
                    skipped[col] = (f"high-cardinality: {levels} distinct values > max_levels={max_levels} "
                                    "(ids, paths, free text, fine categories); raise max_levels to analyse it")
                continue
        if labels.nunique() < 2:
            skipped[col] = f"constant: every image has {col} = {labels.iloc[0]!r}" if len(labels) else "no rows"
            continue
        chosen[col] = labels
    return chosen, skipped



def aligned_columns(
    meta: pd.DataFrame,
    n: int,
    columns: Sequence[str] | None = None,
    *,
    max_levels: int = 12,
    bins: Mapping[str, int | Sequence[float]] | None = None,
) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """:func:`select_columns` on metadata whose rows must be aligned with ``n`` predictions."""
    if len(meta) != n:
        raise ValueError(f"metadata has {len(meta)} rows for {n} predictions")
    return select_columns(meta.reset_index(drop=True), columns, max_levels=max_levels, bins=bins)


def range_labels(values: pd.Series, q: int) -> pd.Series:
    """Quantile bins of a numeric column labelled as readable ranges: ``"30-44"`` for whole numbers (both ends
    included), ``"1.25-3.5"`` otherwise (upper end included); missing values get ``"(missing)"``."""
    present = values.dropna()
    edges = np.unique(np.quantile(present, np.linspace(0, 1, q + 1)))
    whole = bool(np.all(np.equal(np.mod(present, 1), 0)))
    if whole:
        edges = np.unique(np.round(edges))
    if edges.size < 2:
        return values.map(lambda v: MISSING if pd.isna(v) else f"{v:g}")
    codes = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, edges.size - 2)
    if whole:  # [e_i, e_{i+1} - 1], the last bin closed at the maximum
        names = [f"{edges[i]:g}-{(edges[i + 1] - 1 if i < edges.size - 2 else edges[-1]):g}"
                 for i in range(edges.size - 1)]
    else:
        codes = np.clip(np.searchsorted(edges, values, side="left") - 1, 0, edges.size - 2)
        names = [f"{edges[i]:.3g}-{edges[i + 1]:.3g}" for i in range(edges.size - 1)]
    out = pd.Series([names[c] for c in codes], index=values.index, dtype=object)
    return out.where(values.notna(), MISSING)


def effective_size(y_group: np.ndarray, positive_index: int | None) -> int:
    """Images that carry a group's metrics: the smaller of its positives and negatives (one-class groups: that
    class's count); without a positive class, the rarest class present against the rest."""
    y_group = np.asarray(y_group, dtype=int)
    if y_group.size == 0:
        return 0
    if positive_index is not None:
        counts = np.array([int((y_group == positive_index).sum()), int((y_group != positive_index).sum())])
    else:
        counts = np.bincount(y_group)
        rare = int(counts[counts > 0].min())
        counts = np.array([rare, y_group.size - rare])
    present = counts[counts > 0]
    return int(present.min()) if present.size > 1 else int(present.sum())


_LEADING_NUMBER = re.compile(r"^-?\d+(\.\d+)?")


def _natural(value: str) -> tuple:
    """Sort key: numbers and ranges numerically (2 before 10, "5-9" before "10-14"), then text, missing last."""
    if value == MISSING:
        return (2, 0.0, value)
    m = _LEADING_NUMBER.match(value)
    if m:
        return (0, float(m.group(0)), value)
    return (1, 0.0, value)


def subgroup_table(
    y: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    meta: pd.DataFrame,
    *,
    groups: Sequence | np.ndarray | None = None,
    positive_index: int | None = None,
    columns: Sequence[str] | None = None,
    bins: Mapping[str, int | Sequence[float]] | None = None,
    min_group_size: int = 20,
    max_levels: int = 12,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    interval: str = "percentile",
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Headline metrics with CIs per subgroup; ``meta`` rows are aligned with ``y`` / ``proba``."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    groups = np.asarray(groups).astype(str) if groups is not None else np.arange(y.size).astype(str)
    chosen, skipped = aligned_columns(meta, y.size, columns, max_levels=max_levels, bins=bins)
    names = BINARY_HEADLINE if proba.shape[1] == 2 else MULTICLASS_HEADLINE
    rows = []
    for col, labels in chosen.items():
        for value in sorted(labels.unique(), key=_natural):
            mask = (labels == value).to_numpy()
            yy, pp, gg = y[mask], proba[mask], groups[mask]
            base = {"column": col, "value": value, "n": int(mask.sum()), "n_patients": int(np.unique(gg).size),
                    "classes_present": ",".join(str(classes[j]) for j in np.unique(yy))}
            if effective_size(yy, positive_index) < min_group_size:
                rows += [{**base, "status": "too_small", "metric": m, "estimate": np.nan, "ci_lo": np.nan,
                          "ci_hi": np.nan, "n_boot_used": 0} for m in names]
                continue
            def statistic(w: np.ndarray, yy: np.ndarray = yy, pp: np.ndarray = pp) -> dict[str, np.ndarray]:
                return weighted_sample_metrics(yy, pp, positive_index, w)[0]

            res = bootstrap_weighted(
                statistic, yy.size, groups=gg, required_labels=yy, n_boot=n_boot, seed=seed, alpha=alpha, interval=interval)
            rows += [{**base, "status": "ok", "metric": m, "estimate": res[m]["estimate"], "ci_lo": res[m]["ci_lo"],
                      "ci_hi": res[m]["ci_hi"], "n_boot_used": res[m]["n_boot_used"]} for m in names]
    return pd.DataFrame(rows, columns=COLUMNS), skipped


def subgroup_operating_points(
    y_bin: np.ndarray,
    score: np.ndarray,
    meta: pd.DataFrame,
    thresholds: Mapping[str, float],
    *,
    groups: Sequence | np.ndarray | None = None,
    columns: Sequence[str] | None = None,
    bins: Mapping[str, int | Sequence[float]] | None = None,
    min_group_size: int = 20,
    max_levels: int = 12,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Frozen thresholds (policy -> threshold, chosen on validation) applied per subgroup of the test rows."""
    y_bin = np.asarray(y_bin).astype(bool)
    score = np.asarray(score, dtype=float)
    groups = np.asarray(groups).astype(str) if groups is not None else np.arange(y_bin.size).astype(str)
    chosen, _ = aligned_columns(meta, y_bin.size, columns, max_levels=max_levels, bins=bins)
    parts = []
    for col, labels in chosen.items():
        for value in sorted(labels.unique(), key=_natural):
            mask = (labels == value).to_numpy()
            base = {"column": col, "value": value, "n": int(mask.sum()),
                    "n_patients": int(np.unique(groups[mask]).size), "n_positive": int(y_bin[mask].sum())}
            if effective_size(y_bin[mask].astype(int), 1) < min_group_size:
                parts.append(pd.DataFrame([{**base, "status": "too_small", "policy": k, "threshold": float(t)}
                                           for k, t in thresholds.items()]))
                continue
            table = apply_thresholds(y_bin[mask], score[mask], thresholds, groups=groups[mask], n_boot=n_boot,
                                     seed=seed, alpha=alpha)
            parts.append(pd.concat([pd.DataFrame([{**base, "status": "ok"}] * len(table)), table], axis=1))
    cols = ["column", "value", "n", "n_patients", "n_positive", "status", "policy", "threshold", "tp", "fp", "tn",
            "fn", *[f"{m}{suffix}" for m in ("sensitivity", "specificity", "ppv", "npv")
                    for suffix in ("", "_ci_lo", "_ci_hi")]]
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True).reindex(columns=cols)
