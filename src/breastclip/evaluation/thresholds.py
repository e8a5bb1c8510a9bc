"""Operating points: thresholds chosen on the validation split only, frozen, then applied to test.

Decision rule everywhere: positive when ``score >= threshold`` (``score`` = probability of the positive class).
Candidate thresholds are the distinct validation scores plus ``+inf`` (nothing positive), as in
``sklearn.metrics.roc_curve``. Policies are short strings, so they fit in a TOML config:

- ``"youden"``       maximise sensitivity + specificity - 1 (Youden's J)
- ``"spec>=0.90"``   the highest sensitivity whose specificity is at least 0.90 (sensitivity at fixed specificity)
- ``"sens>=0.90"``   the highest specificity whose sensitivity is at least 0.90 (the reverse; a screening setting)
- ``"cost=5"``       minimise ``5 * FN + 1 * FP`` (a false negative costs five false positives); uses the
                     validation prevalence
- ``"fixed=0.5"``    a given threshold (the argmax rule for binary problems), reported for reference

Ties go to the highest threshold (fewest positives). :func:`choose_threshold` sees only the arrays it is given;
:func:`operating_points` passes it the validation arrays only, so test rows can never move a threshold.

:func:`operating_points` returns one row per policy::

    policy, threshold, val_sensitivity, val_specificity,
    tp, fp, tn, fn, sensitivity, specificity, ppv, npv  (on test, at the frozen threshold)
    + <metric>_ci_lo / <metric>_ci_hi for sensitivity, specificity, ppv, npv (NaN when n_boot == 0)

:func:`apply_thresholds` applies frozen thresholds to any sample (the test split, or one subgroup of it) with
bootstrap CIs. :func:`threshold_sweep` returns ``threshold, tp, fp, tn, fn, sensitivity, specificity, ppv, npv`` on
a grid (the data of the false-positive / false-negative trade-off figure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import beta

from breastclip.evaluation.bootstrap import ClusterResampler, percentile_ci
from breastclip.evaluation.metrics import roc_points

DEFAULT_POLICIES: tuple[str, ...] = ("youden", "spec>=0.90", "sens>=0.90", "cost=5", "fixed=0.5")
_POLICY = re.compile(r"^(youden|spec>=|sens>=|cost=|fixed=)\s*([0-9.eE+-]*)$")
RATES = ("sensitivity", "specificity", "ppv", "npv")


@dataclass(frozen=True)
class Policy:
    kind: str  # youden | spec | sens | cost | fixed
    value: float | None
    spec: str


def parse_policy(spec: str) -> Policy:
    """Parse a policy string (see the module docstring); raises ValueError naming the bad part."""
    m = _POLICY.match(str(spec).strip().lower())
    if not m:
        raise ValueError(f"unknown threshold policy {spec!r}: use 'youden', 'spec>=0.90', 'sens>=0.90', "
                         "'cost=<FN:FP cost ratio>' or 'fixed=<threshold>'")
    kind, raw = m.group(1).rstrip(">=").rstrip("="), m.group(2)
    if kind == "youden":
        if raw:
            raise ValueError(f"threshold policy {spec!r}: 'youden' takes no value")
        return Policy("youden", None, spec)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"threshold policy {spec!r}: {raw!r} is not a number") from None
    if kind in ("spec", "sens") and not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold policy {spec!r}: target must lie in [0, 1]")
    if kind == "cost" and not value > 0:
        raise ValueError(f"threshold policy {spec!r}: the FN:FP cost ratio must be positive")
    return Policy(kind, value, spec)


def choose_threshold(y_bin: np.ndarray, score: np.ndarray, policy: str | Policy) -> float:
    """The threshold a policy picks on the given (validation) labels and scores."""
    pol = policy if isinstance(policy, Policy) else parse_policy(policy)
    target = float("nan") if pol.value is None else float(pol.value)  # None only for youden, which takes none
    if pol.kind == "fixed":
        return target
    y_bin = np.asarray(y_bin).astype(int)
    n_pos = int(y_bin.sum())
    if n_pos == 0 or n_pos == y_bin.size:
        raise ValueError(f"threshold policy {pol.spec!r} needs validation data with both classes "
                         f"({n_pos} positives of {y_bin.size})")
    fpr, tpr, thr = roc_points(y_bin, score)
    if pol.kind == "youden":
        i = int(np.argmax(tpr - fpr))
    elif pol.kind == "spec":
        feasible = np.nonzero(1.0 - fpr >= target - 1e-12)[0]  # a prefix: index 0 (inf) always qualifies
        best = tpr[feasible].max()
        i = int(feasible[np.argmax(tpr[feasible] >= best)])
    elif pol.kind == "sens":
        i = int(np.argmax(tpr >= target - 1e-12))  # the last point has tpr 1, so some index qualifies
    else:  # cost
        n_neg = y_bin.size - n_pos
        cost = target * (1.0 - tpr) * n_pos + fpr * n_neg
        i = int(np.argmin(cost))
    return float(thr[i])


def exact_binomial_ci(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion k/n (NaN when n == 0).

    For rates of 0 or 1 (all 17 negatives correctly called) every bootstrap replicate gives the same value and the
    percentile interval collapses to a point; the exact interval says how far the true rate may still be from it.
    """
    if n <= 0:
        return float("nan"), float("nan")
    lo = 0.0 if k <= 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def _rate(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def confusion_at(y_bin: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """TP, FP, TN, FN and sensitivity, specificity, PPV, NPV at one threshold (undefined rates are NaN)."""
    y_bin = np.asarray(y_bin).astype(bool)
    hit = np.asarray(score, dtype=float) >= threshold
    tp = int(np.sum(hit & y_bin))
    fp = int(np.sum(hit & ~y_bin))
    fn = int(np.sum(~hit & y_bin))
    tn = int(np.sum(~hit & ~y_bin))
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "sensitivity": _rate(tp, tp + fn),
            "specificity": _rate(tn, tn + fp), "ppv": _rate(tp, tp + fp), "npv": _rate(tn, tn + fn)}


def threshold_sweep(y_bin: np.ndarray, score: np.ndarray, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Counts and rates across thresholds (default: 0, 0.01, ..., 1): the FP / FN trade-off table."""
    grid = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds, dtype=float)
    y_bin = np.asarray(y_bin).astype(bool)
    score = np.asarray(score, dtype=float)
    pos = np.sort(score[y_bin])
    neg = np.sort(score[~y_bin])
    tp = pos.size - np.searchsorted(pos, grid, side="left")
    fp = neg.size - np.searchsorted(neg, grid, side="left")
    fn = pos.size - tp
    tn = neg.size - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        df = pd.DataFrame({"threshold": grid, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
                           "sensitivity": np.where(pos.size > 0, tp / max(pos.size, 1), np.nan),
                           "specificity": np.where(neg.size > 0, tn / max(neg.size, 1), np.nan),
                           "ppv": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan),
                           "npv": np.where(tn + fn > 0, tn / np.maximum(tn + fn, 1), np.nan)})
    return df


def apply_thresholds(
    y_bin: np.ndarray,
    score: np.ndarray,
    thresholds: Mapping[str, float],
    *,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 0,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Frozen thresholds applied to one sample: counts, rates and (patient-cluster) bootstrap CIs of the rates.

    One row per threshold: ``policy, threshold, tp, fp, tn, fn, sensitivity, specificity, ppv, npv`` and
    ``<rate>_ci_lo`` / ``<rate>_ci_hi`` (NaN when ``n_boot == 0``). Replicates are shared across thresholds (each
    replicate's multiplicity of every image times the hit matrix gives all counts at once).
    """
    y_bin = np.asarray(y_bin).astype(bool)
    score = np.asarray(score, dtype=float)
    names = list(thresholds)
    thr = np.array([thresholds[k] for k in names], dtype=float)
    hit = score[:, None] >= thr[None, :]                              # (n, P)
    pos = y_bin[:, None]
    indicators = [hit & pos, hit & ~pos, ~hit & ~pos, ~hit & pos]     # tp, fp, tn, fn
    rows = [{"policy": k, "threshold": float(t)} for k, t in zip(names, thr, strict=True)]
    for row, j in zip(rows, range(len(names)), strict=True):
        row.update(confusion_at(y_bin, score, thr[j]))
    if n_boot > 0 and y_bin.size:
        sampler = ClusterResampler(y_bin.size, groups)
        mult = np.concatenate(list(sampler.multiplicities(n_boot, seed)))
        tp, fp, tn, fn = (mult @ ind.astype(float) for ind in indicators)  # each (B, P)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp), "ppv": tp / (tp + fp),
                    "npv": tn / (tn + fn)}
    else:
        reps = {m: np.full((0, len(names)), np.nan) for m in RATES}
    for j, row in enumerate(rows):
        for m in RATES:
            row[f"{m}_ci_lo"], row[f"{m}_ci_hi"] = percentile_ci(reps[m][:, j], alpha)
    return pd.DataFrame(rows)


def operating_points(
    y_val: np.ndarray,
    score_val: np.ndarray,
    y_test: np.ndarray,
    score_test: np.ndarray,
    policies: Sequence[str] = DEFAULT_POLICIES,
    *,
    groups_test: Sequence | np.ndarray | None = None,
    n_boot: int = 0,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Thresholds chosen on validation by each policy, frozen, and their test counts and rates (with CIs)."""
    chosen = {}
    val_rows = []
    for spec in dict.fromkeys(policies):  # a policy listed twice is reported once
        pol = parse_policy(spec)
        t = choose_threshold(y_val, score_val, pol)  # validation arrays only
        chosen[pol.spec] = t
        val = confusion_at(y_val, score_val, t)
        val_rows.append({"val_sensitivity": val["sensitivity"], "val_specificity": val["specificity"]})
    test = apply_thresholds(y_test, score_test, chosen, groups=groups_test, n_boot=n_boot, seed=seed, alpha=alpha)
    val_df = pd.DataFrame(val_rows, index=test.index)
    return pd.concat([test[["policy", "threshold"]], val_df, test.drop(columns=["policy", "threshold"])], axis=1)
