"""Subgroup analysis: every headline metric with its bootstrap CI per value of each metadata column.

Column selection (:func:`select_columns`): by default every metadata column of the joined table, i.e. every
column that is neither a manifest key (id, image, label, patient_id, split) nor a predictions column (method,
y_true, y_pred, p_<class>). ``source`` counts as metadata (useful when data sets are pooled). A column is skipped,
with the reason recorded, when it is constant, or when it has more than ``max_levels`` distinct values (free text,
ids, continuous measurements) unless it is binned through ``bins={column: n_quantiles | [edges]}``
(``pandas.qcut`` / ``pandas.cut``). Missing values form their own group ``"(missing)"``.

Groups smaller than ``min_group_size`` images are listed with status ``"too_small"`` and NaN metrics instead of
being computed: a metric from a handful of images is noise. Groups holding a single class are computed (accuracy
is meaningful) but AUC / AP are NaN; ``classes_present`` says which classes a group holds.

:func:`subgroup_table` returns a long table, one row per (column, value, metric)::

    column, value, n, n_patients, classes_present, status, metric, estimate, ci_lo, ci_hi, n_boot_used
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from breastclip.evaluation.bootstrap import bootstrap_metrics
from breastclip.evaluation.metrics import BINARY_HEADLINE, MULTICLASS_HEADLINE, headline_metrics
from breastclip.predictions import BASE_COLUMNS, PROB_PREFIX

NOT_METADATA = {"id", "image", "label", "patient_id", "split", *BASE_COLUMNS}
MISSING = "(missing)"
COLUMNS = ["column", "value", "n", "n_patients", "classes_present", "status", "metric", "estimate", "ci_lo",
           "ci_hi", "n_boot_used"]


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
            values = pd.to_numeric(s, errors="coerce")
            cut = (pd.qcut(values, q=int(spec), duplicates="drop") if isinstance(spec, int | np.integer)
                   else pd.cut(values, bins=list(spec), include_lowest=True))
            labels = cut.astype(str).where(cut.notna(), MISSING)
        else:
            labels = s.astype(str).where(s.notna(), MISSING)
            levels = labels.nunique()
            if levels > max_levels:
                kind = "continuous" if pd.api.types.is_numeric_dtype(s) else "high-cardinality"
                skipped[col] = (f"{kind}: {levels} distinct values > max_levels={max_levels}; "
                                f"pass bins={{'{col}': 4}} to analyse it by quartiles")
                continue
        if labels.nunique() < 2:
            skipped[col] = f"constant: every image has {col} = {labels.iloc[0]!r}" if len(labels) else "no rows"
            continue
        chosen[col] = labels
    return chosen, skipped


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
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Headline metrics with CIs per subgroup; ``meta`` rows are aligned with ``y`` / ``proba``."""
    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    if len(meta) != y.size:
        raise ValueError(f"metadata has {len(meta)} rows for {y.size} predictions")
    groups = np.asarray(groups).astype(str) if groups is not None else np.arange(y.size).astype(str)
    chosen, skipped = select_columns(meta.reset_index(drop=True), columns, max_levels=max_levels, bins=bins)
    names = BINARY_HEADLINE if proba.shape[1] == 2 else MULTICLASS_HEADLINE
    rows = []
    for col, labels in chosen.items():
        for value in sorted(labels.unique(), key=str):
            mask = (labels == value).to_numpy()
            yy, pp, gg = y[mask], proba[mask], groups[mask]
            base = {"column": col, "value": value, "n": int(mask.sum()), "n_patients": int(np.unique(gg).size),
                    "classes_present": ",".join(str(classes[j]) for j in np.unique(yy))}
            if mask.sum() < min_group_size:
                rows += [{**base, "status": "too_small", "metric": m, "estimate": np.nan, "ci_lo": np.nan,
                          "ci_hi": np.nan, "n_boot_used": 0} for m in names]
                continue
            res = bootstrap_metrics(lambda idx, yy=yy, pp=pp: headline_metrics(yy[idx], pp[idx], positive_index),
                                    yy.size, groups=gg, required_labels=yy, n_boot=n_boot, seed=seed, alpha=alpha)
            rows += [{**base, "status": "ok", "metric": m, "estimate": res[m]["estimate"], "ci_lo": res[m]["ci_lo"],
                      "ci_hi": res[m]["ci_hi"], "n_boot_used": res[m]["n_boot_used"]} for m in names]
    return pd.DataFrame(rows, columns=COLUMNS), skipped
