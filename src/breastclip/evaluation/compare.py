"""Paired comparison of methods on the same test images: DeLong for ROC AUC, paired bootstrap otherwise.

- :func:`delong_test`: the fast DeLong algorithm (Sun & Xu 2014, IEEE SPL 21(11)) for correlated ROC AUCs of two
  scores on the same images: AUCs from mid-ranks, their covariance from the structural components of DeLong,
  DeLong & Clarke-Pearson (1988); two-sided z test of the difference and a normal interval for it. It assumes
  independent images, so :func:`compare_methods` uses it only when no patient contributes more than one image.
- :func:`paired_bootstrap`: both methods evaluated on the *same* (patient-cluster) replicate; percentile interval
  of the difference; two-sided p-value ``min(1, 2 * min(P*(diff <= 0), P*(diff >= 0)))`` (inverting the percentile
  interval). Replicates lacking a class of the full sample are skipped and counted.

:func:`compare_methods` returns one row per (method, metric), each method against ``baseline``::

    method, baseline, metric, value, baseline_value, diff, ci_lo, ci_hi, p_value, p_holm, test, n_images,
    n_patients, n_boot_used

``diff = value - baseline_value``; ``p_holm`` is Holm's step-down adjustment across the methods compared for that
metric. Pairs are matched on image ``id``: only images both methods scored count (``n_images``), and the labels of
matched images must agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

from breastclip.evaluation.bootstrap import ClusterResampler, percentile_ci
from breastclip.evaluation.metrics import (
    BINARY_HEADLINE,
    MULTICLASS_HEADLINE,
    headline_metrics,
    resolve_positive_class,
)
from breastclip.evaluation.weighted import weighted_sample_metrics
from breastclip.predictions import classes_of, proba_of, validate_predictions, y_true_index


def delong_covariance(y_bin: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for ``scores`` of shape (n_scores, n_images)."""
    y_bin = np.asarray(y_bin).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    m, n = int(y_bin.sum()), int((~y_bin).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives (got {m} and {n})")
    pos, neg = scores[:, y_bin], scores[:, ~y_bin]
    tx = rankdata(pos, axis=1)
    ty = rankdata(neg, axis=1)
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n          # structural components of the positives
    v10 = 1.0 - (tz[:, m:] - ty) / m    # ... and of the negatives
    sx = np.atleast_2d(np.cov(v01))
    sy = np.atleast_2d(np.cov(v10))
    return aucs, sx / m + sy / n


def delong_auc_ci(y_bin: np.ndarray, score: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """One AUC with its DeLong standard error and a normal interval clipped to [0, 1] (independent images)."""
    aucs, cov = delong_covariance(y_bin, score)
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    q = norm.ppf(1 - alpha / 2)
    auc = float(aucs[0])
    return {"auc": auc, "se": se, "ci_lo": float(max(0.0, auc - q * se)), "ci_hi": float(min(1.0, auc + q * se))}


def delong_test(y_bin: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """DeLong test of AUC(a) - AUC(b) on the same images."""
    aucs, cov = delong_covariance(y_bin, np.vstack([score_a, score_b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    if se > 0:
        z = diff / se
        p = float(2 * norm.sf(abs(z)))
    else:  # identical scores (or perfectly separated by both): no evidence of a difference
        z, p = 0.0 if diff == 0 else np.sign(diff) * np.inf, 1.0 if diff == 0 else 0.0
    q = norm.ppf(1 - alpha / 2)
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "var_a": float(cov[0, 0]), "var_b": float(cov[1, 1]),
            "diff": diff, "se": se, "z": float(z), "p_value": p, "ci_lo": diff - q * se, "ci_hi": diff + q * se}


def paired_bootstrap(
    y: np.ndarray,
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    *,
    positive_index: int | None = None,
    metrics: Sequence[str] | None = None,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, float]]:
    """Per metric: value a, value b, difference a - b with percentile CI and bootstrap p-value."""
    y = np.asarray(y, dtype=int)
    a = headline_metrics(y, proba_a, positive_index)
    b = headline_metrics(y, proba_b, positive_index)
    names = list(metrics) if metrics is not None else list(a)
    labels = np.unique(y, return_inverse=True)[1]
    onehot = (labels[:, None] == np.arange(labels.max() + 1 if y.size else 0)).astype(float)
    diffs: dict[str, list[np.ndarray]] = {m: [] for m in names}
    for w in ClusterResampler(y.size, groups).multiplicities(n_boot, seed):
        ok = ((w @ onehot) > 0).all(axis=1)  # skip replicates lacking a class of the full sample
        ra = weighted_sample_metrics(y, proba_a, positive_index, w)[0]
        rb = weighted_sample_metrics(y, proba_b, positive_index, w)[0]
        for m in names:
            diffs[m].append((ra[m] - rb[m])[ok])
    out = {}
    for m in names:
        d = np.concatenate(diffs[m]) if diffs[m] else np.zeros(0)
        d = d[~np.isnan(d)]
        lo, hi = percentile_ci(d, alpha)
        p = float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0)))) if d.size >= 10 else float("nan")
        out[m] = {"a": a[m], "b": b[m], "diff": a[m] - b[m], "ci_lo": lo, "ci_hi": hi, "p_value": p,
                  "n_boot_used": int(d.size)}
    return out


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaNs stay NaN and do not count)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.nonzero(~np.isnan(p))[0]
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="mergesort")]
    adj = np.maximum.accumulate((ok.size - np.arange(ok.size)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def compare_methods(
    preds: pd.DataFrame,
    baseline_method: str | None = None,
    *,
    split: str = "test",
    positive_class: str | None = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every method against ``baseline_method`` (default: the highest ROC AUC on ``split``), paired per image."""
    validate_predictions(preds)
    part = preds[preds["split"] == split]
    methods = list(dict.fromkeys(part["method"]))
    if len(methods) < 2:
        raise ValueError(f"compare_methods needs at least two methods on split {split!r}, found {methods}")
    classes = classes_of(preds)
    pos_name, _ = resolve_positive_class(classes, positive_class)
    k = len(classes)
    pos = classes.index(pos_name) if pos_name is not None and k == 2 else None
    if k == 2 and pos is None:
        pos = 1
    names = list(metrics) if metrics is not None else list(BINARY_HEADLINE if k == 2 else MULTICLASS_HEADLINE)
    tables = {}
    for m, g in part.groupby("method", sort=False):
        dup = g["id"][g["id"].duplicated()]
        if len(dup):
            raise ValueError(f"method {m!r} has {len(dup)} duplicate image ids on split {split!r} "
                             f"(first: {dup.iloc[0]!r})")
        tables[m] = g.set_index("id")
    if baseline_method is None:
        def auc(m):
            t = tables[m]
            return headline_metrics(y_true_index(t), proba_of(t), pos)["roc_auc"]
        baseline_method = max(methods, key=lambda m: np.nan_to_num(auc(m), nan=-1.0))
    if baseline_method not in tables:
        raise ValueError(f"baseline method {baseline_method!r} has no rows on split {split!r}; methods: {methods}")
    base = tables[baseline_method]
    rows = []
    for m in methods:
        if m == baseline_method:
            continue
        ids = base.index.intersection(tables[m].index)
        if len(ids) == 0:
            raise ValueError(f"methods {m!r} and {baseline_method!r} share no {split} images")
        ta, tb = tables[m].loc[ids], base.loc[ids]
        if (ta["y_true"] != tb["y_true"]).any():
            raise ValueError(f"methods {m!r} and {baseline_method!r} disagree on y_true for the same image ids")
        y = y_true_index(ta)
        groups = ta["patient_id"].astype(str).to_numpy()
        clustered = ClusterResampler(len(ids), groups).clustered
        boot = paired_bootstrap(y, proba_of(ta), proba_of(tb), positive_index=pos, metrics=names,
                                groups=groups, n_boot=n_boot, seed=seed, alpha=alpha)
        for name in names:
            r = boot[name]
            row = {"method": m, "baseline": baseline_method, "metric": name, "value": r["a"],
                   "baseline_value": r["b"], "diff": r["diff"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"],
                   "p_value": r["p_value"], "test": "paired bootstrap (patients)" if clustered
                   else "paired bootstrap (images)", "n_images": len(ids),
                   "n_patients": int(pd.unique(groups).size), "n_boot_used": r["n_boot_used"]}
            if name == "roc_auc" and k == 2 and not clustered:
                yb = (y == pos).astype(int)
                if min(yb.sum(), yb.size - yb.sum()) >= 2:
                    d = delong_test(yb, proba_of(ta)[:, pos], proba_of(tb)[:, pos], alpha)
                    row.update(ci_lo=d["ci_lo"], ci_hi=d["ci_hi"], p_value=d["p_value"], test="DeLong",
                               n_boot_used=0)
            rows.append(row)
    out = pd.DataFrame(rows)
    out["p_holm"] = np.nan
    for _name, g in out.groupby("metric", sort=False):
        out.loc[g.index, "p_holm"] = holm(g["p_value"].to_numpy())
    cols = ["method", "baseline", "metric", "value", "baseline_value", "diff", "ci_lo", "ci_hi", "p_value", "p_holm",
            "test", "n_images", "n_patients", "n_boot_used"]
    return out[cols]
