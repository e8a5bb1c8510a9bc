"""The 2x2 table at the frozen operating point (STARD 2015 item 23), for the selected method and, in an appendix,
for every method.

Counts and rates come from the evaluation layer's operating points (threshold chosen on validation, applied
unchanged to test; sensitivity, specificity, PPV and NPV with percentile bootstrap CIs that resample patients when
patient ids exist). Multiclass runs add the full confusion matrix with counts; the 2x2 is then the one-vs-rest
table of the positive class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from breastclip.evaluation.thresholds import exact_binomial_ci, is_attainable
from breastclip.report.content import Heading, Note, Section, Table, fmt_ci, fmt_threshold
from breastclip.report.views import MethodView

RATES = (("sensitivity", "Sensitivity", "tp", "fn"), ("specificity", "Specificity", "tn", "fp"),
         ("ppv", "Positive predictive value (PPV)", "tp", "fp"), ("npv", "Negative predictive value (NPV)", "tn", "fn"))
SHORT = {"sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV", "npv": "NPV"}


def _counts(op: Mapping) -> tuple[int, int, int, int]:
    return tuple(int(op.get(k, 0)) for k in ("tp", "fp", "fn", "tn"))  # type: ignore[return-value]


def negative_label(v: MethodView) -> str:
    others = [c for c in v.classes if c != v.positive]
    return others[0] if len(others) == 1 else f"not {v.positive}"


def two_by_two(v: MethodView, op: Mapping) -> pd.DataFrame:
    """Index test (positive / negative at the threshold) x reference standard (the label), with totals."""
    tp, fp, fn, tn = _counts(op)
    neg = negative_label(v)
    return pd.DataFrame({
        "index test (P(" + str(v.positive) + ") vs threshold)": [
            f"positive (P >= {fmt_threshold(op.get('threshold'))})", "negative", "total"],
        f"reference: {v.positive}": [tp, fn, tp + fn],
        f"reference: {neg}": [fp, tn, fp + tn],
        "total": [tp + fp, fn + tn, tp + fp + fn + tn]})


def rate_table(op: Mapping) -> pd.DataFrame:
    """Sensitivity, specificity, PPV and NPV: the fraction, the estimate and its 95% CI."""
    rows = []
    counts = dict(zip(("tp", "fp", "fn", "tn"), _counts(op), strict=True))
    for key, label, num, other in RATES:
        n, d = counts[num], counts[num] + counts[other]
        lo, hi = op.get(f"{key}_ci_lo"), op.get(f"{key}_ci_hi")
        how = "bootstrap"
        if d > 0 and n in (0, d):  # every replicate gives the same 0 or 1: the percentile interval is a point
            lo, hi = exact_binomial_ci(n, d)
            how = "exact (Clopper-Pearson)"
        rows.append({"measure": label, "count": f"{n}/{d}", "estimate (95% CI)": fmt_ci(op.get(key), lo, hi),
                     "interval": how})
    return pd.DataFrame(rows)


def confusion_counts(v: MethodView) -> pd.DataFrame:
    """The multiclass confusion matrix as counts: rows the true class, columns the predicted class."""
    df = pd.DataFrame(v.confusion.astype(int), columns=[f"predicted {c}" for c in v.classes])
    df.insert(0, "true class", v.classes)
    df["total"] = df.iloc[:, 1:].sum(axis=1)
    return df


def _ci_words(v: MethodView) -> str:
    unit = v.bootstrap.get("unit", "patient")
    n_boot = v.bootstrap.get("n_boot", "?")
    return (f"95% percentile bootstrap CIs from {n_boot} replicates resampling {unit}s (all images of a drawn "
            "patient together)" if unit == "patient" else
            f"95% percentile bootstrap CIs from {n_boot} replicates resampling images (no patient ids with more "
            "than one image)")


def contingency_section(selected: MethodView, policy: str | None) -> Section:
    """Section ``contingency``: the selected method's 2x2 table and its four rates with CIs."""
    s = Section("Diagnostic accuracy at the operating point (2x2 table)", anchor="contingency")
    op = selected.operating_point(policy)
    if len(selected.classes) > 2:
        s.add(Table("confusion-counts", f"Confusion matrix of {selected.method} on test (counts)",
                    confusion_counts(selected),
                    caption="Rows: the reference-standard label; columns: the class with the highest probability. "
                            "The 2x2 table below is the one-vs-rest table of the positive class."))
    if op is None:
        return s.add(Note(f"No operating point for {selected.method}: it needs a positive class and a validation "
                          "split holding both classes (thresholds are chosen on validation only).", "warn"))
    if not is_attainable(op):
        return s.add(Note(f"The '{op.get('policy')}' rule is not attainable on the validation split of "
                          f"{selected.method} (no threshold that calls an image positive meets it): it is not "
                          "applied, so there is no 2x2 table at it.", "warn"))
    rule = op.get("policy")
    s.add(f"Selected method: {selected.method}. Index test: P({selected.positive}) at or above the threshold "
          f"{fmt_threshold(op.get('threshold'))}, chosen on the validation split by the '{rule}' rule before the "
          "test split was read, and applied to test unchanged (not re-tuned on test). Reference standard: the "
          "data set's label.")
    s.add(Table("contingency-2x2", f"2x2 table: {selected.positive} vs {negative_label(selected)} (test split, "
                                   f"{selected.method})", two_by_two(selected, op),
                caption=f"{selected.n_test} test images. Rows: the index test at the frozen threshold; columns: the "
                        "reference standard."))
    s.add(Table("contingency-rates", "Sensitivity, specificity, PPV and NPV with 95% CIs", rate_table(op),
                caption=f"{_ci_words(selected)}; where a rate is 0 or 1 the bootstrap interval collapses to a point "
                        "and the exact Clopper-Pearson interval is given instead. PPV and NPV depend on the prevalence of the test split "
                        f"({_prevalence(op)}); they do not transfer to a population with another prevalence."))
    return s


def _prevalence(op: Mapping) -> str:
    tp, fp, fn, tn = _counts(op)
    n = tp + fp + fn + tn
    return f"{(tp + fn) / n:.1%} positive" if n else "no images"


def contingency_appendix(views: Sequence[MethodView], policy: str | None) -> Section | None:
    """One row per method: its 2x2 counts and four rates with CIs at its own frozen threshold."""
    rows = []
    for v in views:
        op = v.operating_point(policy)
        if op is None:
            continue
        if not is_attainable(op):
            rows.append({"method": v.method, "rule": op.get("policy"), "threshold": "not attainable on validation"})
            continue
        tp, fp, fn, tn = _counts(op)
        rows.append({"method": v.method, "rule": op.get("policy"), "threshold": fmt_threshold(op.get("threshold")),
                     "TP": tp, "FP": fp, "FN": fn, "TN": tn,
                     **{f"{SHORT[k]} (95% CI)": fmt_ci(op.get(k), op.get(f"{k}_ci_lo"), op.get(f"{k}_ci_hi"))
                        for k in SHORT}})
    if not rows:
        return None
    s = Section("Appendix: 2x2 tables of every method", anchor="contingency-all")
    s.add(Heading("Each method at its own threshold frozen on validation"))
    s.add(Table("contingency-methods", "Counts and rates per method on test", pd.DataFrame(rows),
              caption=f"{_ci_words(views[0])}. Thresholds were chosen on validation and applied to test unchanged."))
    return s
