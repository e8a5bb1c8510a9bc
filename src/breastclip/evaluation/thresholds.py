"""Operating points: thresholds chosen on the validation split only, frozen, then applied to test.

Decision rule everywhere: positive when ``score >= threshold`` (``score`` = probability of the positive class).
Candidate cut points are those between the distinct validation scores (as in ``sklearn.metrics.roc_curve``, plus
"nothing positive"). A chosen cut is returned as the *midpoint* between the two validation scores that bound it
(the lowest score called positive and the next lower one; half the lowest score when every image is positive), so a
threshold never sits on an extreme score: on a separable validation split Youden's cut lies halfway between the
classes, not at the lowest positive score (a new positive just under that score would be missed).

A policy that cannot be met with a cut that calls at least one validation image positive (``spec>=0.90`` when
even the highest score is a negative, Youden's J <= 0, a cost minimised by calling nothing positive) is **not
attainable**: :func:`choose_threshold` returns NaN, and :func:`operating_points` reports the row with
``attainable = False``, NaN threshold and rates, and never applies it (no ``inf`` threshold). Policies are short
strings, so they fit in a TOML config:

- ``"youden"``       maximise sensitivity + specificity - 1 (Youden's J)
- ``"spec>=0.90"``   the highest sensitivity whose specificity is at least 0.90 (sensitivity at fixed specificity)
- ``"sens>=0.90"``   the highest specificity whose sensitivity is at least 0.90 (the reverse; a screening setting)
- ``"cost=5"``       minimise ``5 * FN + 1 * FP`` (a false negative costs five false positives); uses the
                     validation prevalence
- ``"fixed=0.5"``    a given threshold (the argmax rule for binary problems), reported for reference

Ties go to the highest threshold (fewest positives). :func:`choose_threshold` sees only the arrays it is given;
:func:`operating_points` passes it the validation arrays only, so test rows can never move a threshold.

:func:`operating_points` returns one row per policy::

    policy, attainable, threshold, val_sensitivity, val_specificity,
    tp, fp, tn, fn, sensitivity, specificity, ppv, npv  (on test, at the frozen threshold; NaN when not attainable)
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
    """The threshold a policy picks on the given (validation) labels and scores: the midpoint between the two
    validation scores that bound the chosen cut; NaN when the policy is not attainable (see the module docstring)."""
    pol = policy if isinstance(policy, Policy) else parse_policy(policy)
    target = float("nan") if pol.value is None else float(pol.value)  # None only for youden, which takes none
    if pol.kind == "fixed":
        return target
    y_bin = np.asarray(y_bin).astype(int)
    score = np.asarray(score, dtype=float)
    n_pos = int(y_bin.sum())
    if n_pos == 0 or n_pos == y_bin.size:
        raise ValueError(f"threshold policy {pol.spec!r} needs validation data with both classes "
                         f"({n_pos} positives of {y_bin.size})")
    fpr, tpr, thr = roc_points(y_bin, score)
    if pol.kind == "youden":
        j = tpr - fpr
        i = int(np.argmax(j))
        if j[i] <= 0:  # no cut separates better than chance
            return float("nan")
    elif pol.kind == "spec":
        feasible = np.nonzero(1.0 - fpr >= target - 1e-12)[0]  # a prefix: index 0 (nothing positive) qualifies
        best = tpr[feasible].max()
        if best <= 0:  # only cuts that find no positive image meet the specificity
            return float("nan")
        i = int(feasible[np.argmax(tpr[feasible] >= best)])
    elif pol.kind == "sens":
        i = int(np.argmax(tpr >= target - 1e-12))  # the last point has tpr 1, so some index qualifies
    else:  # cost
        n_neg = y_bin.size - n_pos
        cost = target * (1.0 - tpr) * n_pos + fpr * n_neg
        i = int(np.argmin(cost))
    if i == 0:  # the rule calls nothing positive
        return float("nan")
    return _midpoint(thr, i)


def _midpoint(thr: np.ndarray, i: int) -> float:
    """Halfway between the lowest score called positive (``thr[i]``) and the next lower distinct score; below the
    lowest score, halfway to zero (scores are probabilities), or the score itself when it is not positive."""
    low = float(thr[i])
    if i + 1 < thr.size:
        return (low + float(thr[i + 1])) / 2.0
    return low / 2.0 if low > 0 else low


def is_attainable(op: Mapping) -> bool:
    """Whether an operating-point row (a dict of :func:`operating_points`' columns) has a usable threshold: False for
    a policy that is not attainable on validation (NaN / missing threshold)."""
    t = op.get("threshold")
    try:
        return bool(op.get("attainable", True)) and t is not None and bool(np.isfinite(float(t)))
    except (TypeError, ValueError):
        return False


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
    """Thresholds chosen on validation by each policy, frozen, and their test counts and rates (with CIs).

    Policies that are not attainable on validation keep their row (``attainable = False``) with NaN threshold,
    counts and rates: they are reported, never applied."""
    chosen: dict[str, float] = {}
    rows = []
    for spec in dict.fromkeys(policies):  # a policy listed twice is reported once
        pol = parse_policy(spec)
        t = choose_threshold(y_val, score_val, pol)  # validation arrays only
        ok = bool(np.isfinite(t))
        val = confusion_at(y_val, score_val, t) if ok else {"sensitivity": np.nan, "specificity": np.nan}
        rows.append({"policy": pol.spec, "attainable": ok, "threshold": t if ok else np.nan,
                     "val_sensitivity": val["sensitivity"], "val_specificity": val["specificity"]})
        if ok:
            chosen[pol.spec] = t
    head = pd.DataFrame(rows)
    columns = ["policy", "tp", "fp", "tn", "fn", *RATES, *[f"{m}_ci_{e}" for m in RATES for e in ("lo", "hi")]]
    if chosen:
        test = apply_thresholds(y_test, score_test, chosen, groups=groups_test, n_boot=n_boot, seed=seed,
                                alpha=alpha).reindex(columns=columns)
    else:
        test = pd.DataFrame({c: pd.Series(dtype=object if c == "policy" else float) for c in columns})
    return head.merge(test, on="policy", how="left")
