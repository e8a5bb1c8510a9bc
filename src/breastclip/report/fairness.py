"""Section ``fairness``: the largest between-group gap in sensitivity, specificity and ROC AUC per metadata
attribute for the selected method (measured by :mod:`breastclip.evaluation.fairness`), with its CI."""

from __future__ import annotations

import pandas as pd

from breastclip.report.content import Note, Section, Table, ci_text, fmt
from breastclip.report.views import HEADLINE_LABELS, MethodView


def fairness_table(fairness: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "attribute": fairness["column"].astype(str),
        "metric": [HEADLINE_LABELS.get(m, m) for m in fairness["metric"]],
        "groups compared": [int(n) for n in fairness["n_groups"]],
        "lowest group": [f"{g}: {fmt(v)}" for g, v in zip(fairness["low_group"], fairness["low_value"], strict=True)],
        "highest group": [f"{g}: {fmt(v)}" for g, v in zip(fairness["high_group"], fairness["high_value"],
                                                              strict=True)],
        "largest gap": [fmt(g) for g in fairness["gap"]],
        "95% CI of the gap": [ci_text(lo, hi) for lo, hi in zip(fairness["ci_lo"], fairness["ci_hi"], strict=True)],
    })


def fairness_section(selected: MethodView, policy: str | None) -> Section:
    s = Section("Subgroups and fairness", anchor="fairness")
    fair = selected.fairness
    op = selected.operating_point(policy)
    if fair is None or fair.empty:
        why = ("no metadata column qualified for a subgroup analysis"
               if selected.subgroups is None or selected.subgroups.empty else
               f"no attribute has two groups with at least {selected.min_group_size or 'the minimum'} positives "
               "(sensitivity), negatives (specificity) or both (AUC)")
        if op is None:
            why = "no operating point (sensitivity and specificity need a frozen threshold)"
        return s.add(Note(f"No fairness summary for {selected.method}: {why}. Per-group results, where any, are in "
                          "the method's section.", "info"))
    s.add(f"Selected method: {selected.method}. For each attribute, the groups whose values differ most, and the "
          f"gap between them; sensitivity and specificity at the frozen threshold ({op.get('policy') if op else '-'}"
          "), ROC AUC over all thresholds. A group enters a comparison only with enough positives (sensitivity), "
          f"negatives (specificity) or both (AUC): at least {selected.min_group_size} of each.")
    s.add(Table("fairness-gaps", "Largest gap between groups per attribute", fairness_table(fair),
                caption="Gap: highest minus lowest group value on test; 95% CI from the patient-level bootstrap, "
                        "each replicate recomputing every group. An interval that includes 0 does not establish a "
                        "difference; the max-minus-min gap is biased upwards in small groups."))
    return s
