"""Reporting-guideline checklist appendix: STARD 2015, TRIPOD+AI (2024) and CLAIM (2024), each item mapped to the
section of this report that answers it, or marked "not applicable" or "not reported here, because ...".

The items are data (one row each, wording abbreviated from the published checklists; check the official wording
before submitting). An answer is one of:

* ``"sec:<anchor>:<text>"``: answered by the report section ``<anchor>``; ``<text>`` may hold ``{fact}`` fields
  filled from the run (counts, thresholds, bootstrap settings);
* ``"study:<field>"``: a fact only the investigators know, taken from ``[report.study]`` of the config when given;
* ``"paper:<why>"``: belongs to the manuscript, not to an automated report;
* ``"na:<why>"``: not applicable to this kind of study.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from breastclip.report.content import Section, Table

STARD = "STARD 2015"
TRIPOD = "TRIPOD+AI"
CLAIM = "CLAIM 2024"
GUIDELINES = (STARD, TRIPOD, CLAIM)

PAPER_TITLE = "paper:the title and abstract are the manuscript's; this report supplies their numbers"
PAPER_DISCUSSION = "paper:interpretation and implications are the authors' (limitations: see Limitations)"

ITEMS: tuple[tuple[str, str, str, str], ...] = (
    # ---- STARD 2015 -------------------------------------------------------------------------------------------
    (STARD, "1", "Identification as a diagnostic accuracy study", PAPER_TITLE),
    (STARD, "2", "Structured abstract", PAPER_TITLE),
    (STARD, "3", "Clinical background, intended use and role of the index test", "study:intended_use"),
    (STARD, "4", "Objectives and hypotheses", "paper:the study's hypotheses are the authors'"),
    (STARD, "5", "Prospective or retrospective data collection", "study:design"),
    (STARD, "6", "Eligibility criteria", "study:eligibility"),
    (STARD, "7", "Basis on which eligible participants were identified",
     "sec:flow:images of the source {source}, read by its reader; exclusions with reasons in the flow diagram"),
    (STARD, "8", "Setting, location and dates", "study:setting_and_dates"),
    (STARD, "9", "Consecutive, random or convenience series", "study:series"),
    (STARD, "10a", "Index test in detail", "sec:environment-and-reproducibility:{methods}; backbone, head, "
                                           "software and the full configuration"),
    (STARD, "10b", "Reference standard in detail", "study:reference_standard"),
    (STARD, "11", "Rationale for the reference standard", "study:reference_rationale"),
    (STARD, "12a", "Positivity cut-off of the index test, pre-specified or exploratory",
     "sec:contingency:threshold {threshold} chosen on the validation split by the '{policy}' rule, frozen before "
     "the test split was read (not pre-specified; not tuned on test)"),
    (STARD, "12b", "Positivity cut-off of the reference standard", "study:reference_standard"),
    (STARD, "13a", "Information available to the readers of the index test",
     "sec:data-and-splits:the model sees the image only (no clinical information); labels are used for training "
     "and validation, never for test predictions"),
    (STARD, "13b", "Information available to the assessors of the reference standard", "study:blinding"),
    (STARD, "14", "Methods for estimating and comparing accuracy",
     "sec:environment-and-reproducibility:{ci_method}; paired comparisons on the same test images"),
    (STARD, "15", "Handling of indeterminate results",
     "sec:contingency:none: every test image gets a probability and a result at the threshold"),
    (STARD, "16", "Handling of missing data", "sec:flow:{missing}"),
    (STARD, "17", "Analyses of variability (subgroups), pre-specified or exploratory",
     "sec:fairness:subgroups of the metadata columns ({subgroups}); exploratory"),
    (STARD, "18", "Intended sample size and how it was determined", "study:sample_size"),
    (STARD, "19", "Flow of participants (diagram)", "sec:flow:{source_images} images read, {excluded} excluded, {analysed} "
                                                    "analysed"),
    (STARD, "20", "Baseline characteristics", "sec:data-and-splits:class counts per split; metadata per subgroup"),
    (STARD, "21a", "Distribution of severity in those with the target condition",
     "na:the source gives no severity grades beyond its class labels"),
    (STARD, "21b", "Distribution of alternative diagnoses in those without it",
     "sec:flow:the negative classes and their counts per split"),
    (STARD, "22", "Time interval and interventions between index test and reference standard",
     "study:time_interval"),
    (STARD, "23", "Cross tabulation of index test by reference standard (2x2)",
     "sec:contingency:TP {tp}, FP {fp}, FN {fn}, TN {tn} for {selected}; every method in the appendix"),
    (STARD, "24", "Estimates of accuracy with precision (95% CI)",
     "sec:contingency:sensitivity, specificity, PPV and NPV with {ci_method}"),
    (STARD, "25", "Adverse events of the index test or reference standard",
     "na:retrospective analysis of stored images; no participant was tested"),
    (STARD, "26", "Limitations: bias, uncertainty, generalisability", "sec:limitations:"),
    (STARD, "27", "Implications for practice", PAPER_DISCUSSION),
    (STARD, "28", "Registration", "study:registration"),
    (STARD, "29", "Full protocol", "study:protocol"),
    (STARD, "30", "Funding", "study:funding"),
    # ---- TRIPOD+AI (2024) -------------------------------------------------------------------------------------
    (TRIPOD, "1", "Title", PAPER_TITLE),
    (TRIPOD, "2", "Abstract", PAPER_TITLE),
    (TRIPOD, "3a-c", "Healthcare context, intended purpose, known inequalities", "study:intended_use"),
    (TRIPOD, "4", "Objectives", "paper:the study's objectives are the authors'"),
    (TRIPOD, "5a", "Sources of data", "sec:data-and-splits:{source}"),
    (TRIPOD, "5b", "Dates of data collection", "study:setting_and_dates"),
    (TRIPOD, "6a", "Setting", "study:setting_and_dates"),
    (TRIPOD, "6b", "Eligibility criteria", "study:eligibility"),
    (TRIPOD, "6c", "Treatments received", "na:image classification at one time point; no treatment involved"),
    (TRIPOD, "7", "Data preparation and quality checks",
     "sec:flow:decoding checks and exclusions with reasons; leak audit of patients and duplicate images"),
    (TRIPOD, "8a", "Outcome definition", "study:reference_standard"),
    (TRIPOD, "8b", "Qualifications of outcome assessors", "study:annotators"),
    (TRIPOD, "8c", "Blinding of outcome assessment", "study:blinding"),
    (TRIPOD, "9a-c", "Predictors: choice, definition, blinding",
     "sec:environment-and-reproducibility:the image only, through the frozen backbone's preprocessing"),
    (TRIPOD, "10", "Sample size", "study:sample_size"),
    (TRIPOD, "11", "Missing data", "sec:flow:{missing}"),
    (TRIPOD, "12a", "How the data were used (development, evaluation)",
     "sec:data-and-splits:train / validation / test partitioned by {unit}; {parts}"),
    (TRIPOD, "12b-c", "Model type, building and hyperparameter tuning",
     "sec:environment-and-reproducibility:every setting in the run configuration; tuning on validation only"),
    (TRIPOD, "12d", "Heterogeneity across clusters (sites, devices)", "sec:fairness:{subgroups}"),
    (TRIPOD, "12e", "Performance measures and their uncertainty", "sec:leaderboard:{ci_method}"),
    (TRIPOD, "12f-g", "Model updating; how predictions are calculated",
     "sec:contingency:class probabilities; positive when P({positive}) >= the frozen threshold"),
    (TRIPOD, "13", "Class imbalance", "sec:data-and-splits:class counts per split; balanced accuracy and per-class "
                                      "recall reported"),
    (TRIPOD, "14", "Fairness", "sec:fairness:largest gap across the groups of each attribute, with a CI"),
    (TRIPOD, "15", "Model output and thresholds", "sec:contingency:threshold {threshold} ({policy}, on validation)"),
    (TRIPOD, "16", "Differences between development and evaluation data",
     "sec:flow:the partitions come from one source; no external evaluation"),
    (TRIPOD, "17", "Ethical approval", "study:ethics"),
    (TRIPOD, "18a-d", "Funding, conflicts, protocol, registration", "study:funding"),
    (TRIPOD, "18e-f", "Data and code availability", "study:data_availability"),
    (TRIPOD, "19", "Patient and public involvement", "paper:the authors report any involvement"),
    (TRIPOD, "20a", "Participant flow", "sec:flow:{source_images} images read, {excluded} excluded, {analysed} analysed"),
    (TRIPOD, "20b-c", "Characteristics per partition", "sec:flow:images, patients and classes of each partition"),
    (TRIPOD, "21", "Participants and outcome events in each analysis", "sec:flow:{parts}"),
    (TRIPOD, "22", "Full model specification", "sec:environment-and-reproducibility:configuration, versions and "
                                               "seeds; the fitted heads lie in the results folder"),
    (TRIPOD, "23a", "Performance with CIs", "sec:leaderboard:{ci_method}"),
    (TRIPOD, "23b", "Performance in key subgroups", "sec:fairness:{subgroups}"),
    (TRIPOD, "24", "Model updating results", "na:no model updating was done"),
    (TRIPOD, "25", "Interpretation", PAPER_DISCUSSION),
    (TRIPOD, "26", "Limitations", "sec:limitations:"),
    (TRIPOD, "27a", "Handling of poor-quality or unavailable input",
     "sec:flow:undecodable images are excluded and counted; `predict` gates images unlike the training data"),
    (TRIPOD, "27b-c", "User expertise; future research", PAPER_DISCUSSION),
    # ---- CLAIM 2024 -------------------------------------------------------------------------------------------
    (CLAIM, "1", "Identification as an AI study (technology category)", PAPER_TITLE),
    (CLAIM, "2", "Structured abstract", PAPER_TITLE),
    (CLAIM, "3", "Background, intended use and clinical role", "study:intended_use"),
    (CLAIM, "4", "Objectives and hypotheses", "paper:the study's hypotheses are the authors'"),
    (CLAIM, "5", "Prospective or retrospective", "study:design"),
    (CLAIM, "6", "Study goal (model creation, feasibility, ...)", "study:design"),
    (CLAIM, "7", "Data sources", "sec:data-and-splits:{source}"),
    (CLAIM, "8", "Eligibility criteria", "study:eligibility"),
    (CLAIM, "9", "Data pre-processing", "sec:environment-and-reproducibility:the backbone's preprocessing "
                                        "(size, mean, std) travels with its registry entry"),
    (CLAIM, "10", "Selection of data subsets", "sec:flow:{exclusions}"),
    (CLAIM, "11", "Definitions of data elements", "sec:data-and-splits:classes {classes}"),
    (CLAIM, "12", "De-identification", "study:deidentification"),
    (CLAIM, "13", "Missing data", "sec:flow:{missing}"),
    (CLAIM, "14", "Image acquisition protocol", "study:acquisition"),
    (CLAIM, "15", "Reference standard (ground truth) definition", "study:reference_standard"),
    (CLAIM, "16", "Rationale for the reference standard", "study:reference_rationale"),
    (CLAIM, "17", "Source of annotations; annotators' qualifications", "study:annotators"),
    (CLAIM, "18", "Annotation tools", "study:annotators"),
    (CLAIM, "19", "Inter- and intra-rater variability", "study:annotators"),
    (CLAIM, "20", "Assignment to partitions and their proportions", "sec:flow:{parts}"),
    (CLAIM, "21", "Level at which partitions are disjoint", "sec:data-and-splits:by {unit}; leak audit: {leak}"),
    (CLAIM, "22", "Model description", "sec:environment-and-reproducibility:{methods}"),
    (CLAIM, "23", "Software libraries and versions", "sec:environment-and-reproducibility:versions of every package"),
    (CLAIM, "24", "Initialisation of parameters", "sec:environment-and-reproducibility:pretrained frozen backbone "
                                                  "(transfer learning); heads seeded"),
    (CLAIM, "25", "Training details (augmentation, hyperparameters)", "sec:environment-and-reproducibility:the full "
                                                                     "run configuration"),
    (CLAIM, "26", "Selection of the final model", "sec:leaderboard:{selected} selected by the leaderboard "
                                                  "(validation-based selection where the run supplies one)"),
    (CLAIM, "27", "Ensembling", "na:no ensembling"),
    (CLAIM, "28", "Performance metrics", "sec:leaderboard:ROC AUC, AP, balanced accuracy, F1, sensitivity, "
                                         "specificity, PPV, NPV, calibration"),
    (CLAIM, "29", "Uncertainty and significance", "sec:contingency:{ci_method}; Holm-adjusted paired comparisons"),
    (CLAIM, "30", "Robustness or sensitivity analysis", "sec:fairness:{subgroups}"),
    (CLAIM, "31", "Explainability and its validation", "sec:gradcam:Grad-CAM overlays with a ROAD deletion check "
                                                       "against random maps"),
    (CLAIM, "32", "External validation", "na:one source only; no external test set (see Limitations)"),
    (CLAIM, "33", "Flow of cases (diagram)", "sec:flow:{source_images} images read, {excluded} excluded, {analysed} analysed"),
    (CLAIM, "34", "Characteristics of each partition", "sec:flow:{parts}"),
    (CLAIM, "35", "Performance on all partitions", "sec:contingency:test; thresholds and temperature from "
                                                   "validation"),
    (CLAIM, "36", "Diagnostic accuracy with precision", "sec:contingency:2x2 table and rates with {ci_method}"),
    (CLAIM, "37", "Failure analysis of misclassified cases", "sec:neighbours:most confident errors with their most "
                                                             "similar training images"),
    (CLAIM, "38", "Limitations", "sec:limitations:"),
    (CLAIM, "39", "Implications for practice", PAPER_DISCUSSION),
    (CLAIM, "40", "Registration", "study:registration"),
    (CLAIM, "41", "Protocol, data and code availability", "study:protocol"),
    (CLAIM, "42", "Funding", "study:funding"),
)

SECTION_TITLES = {"flow": "Participant flow", "contingency": "Diagnostic accuracy at the operating point",
                  "data-and-splits": "Data and splits", "environment-and-reproducibility": "Environment",
                  "leaderboard": "Leaderboard", "fairness": "Subgroups and fairness", "limitations": "Limitations",
                  "gradcam": "Grad-CAM", "neighbours": "Retrieval evidence", "study": "Study information"}
MISSING_SECTION = {"gradcam": "report.gradcam = 0: no Grad-CAM maps were made",
                   "neighbours": "no embedding cache of the training images was given to the report",
                   "fairness": "no metadata column qualified for a subgroup analysis",
                   "contingency": "no operating point (needs a positive class and a validation split)"}


class _Facts(dict):
    def __missing__(self, key: str) -> str:
        return "(see the section)"


def answer(spec: str, facts: Mapping[str, object], study: Mapping[str, str], anchors: set[str]) -> tuple[str, str]:
    """``(status, where)`` of one checklist answer."""
    kind, _, rest = spec.partition(":")
    if kind == "study":
        value = str(study.get(rest) or "").strip()
        if value:
            return "reported (supplied by the investigators)", f"Study information: {value}"
        return ("not reported here", f"not reported here, because only the investigators know it: set "
                                     f"report.study.{rest} in the config")
    if kind == "na":
        return "not applicable", f"not applicable: {rest}"
    if kind == "paper":
        return "not reported here", f"not reported here, because {rest}"
    anchor, _, text = rest.partition(":")
    if anchor not in anchors:
        why = MISSING_SECTION.get(anchor, "the section was not produced in this run")
        return "not reported here", f"not reported here, because {why}"
    where = f"section '{SECTION_TITLES.get(anchor, anchor)}' (#{anchor})"
    filled = text.format_map(_Facts(facts)).strip()
    return "reported", f"{where}: {filled}" if filled else where


def checklist_table(facts: Mapping[str, object], study: Mapping[str, str], anchors: set[str],
                    guideline: str | None = None) -> pd.DataFrame:
    rows = []
    for g, number, topic, spec in ITEMS:
        if guideline is not None and g != guideline:
            continue
        status, where = answer(spec, facts, study, anchors)
        rows.append({"guideline": g, "item": number, "topic": topic, "status": status, "where answered": where})
    return pd.DataFrame(rows)


def study_section(study: Mapping[str, str]) -> Section | None:
    """Section ``study``: the investigators' own statements from ``[report.study]``, quoted as given."""
    given = [(k.replace("_", " "), str(v)) for k, v in study.items() if str(v or "").strip()]
    if not given:
        return None
    s = Section("Study information (supplied by the investigators)", anchor="study")
    s.add("Quoted from [report.study] of the run configuration; the run cannot check these statements.")
    s.add(Table("study", "Study facts", pd.DataFrame(given, columns=["item", "statement"])))
    return s


def checklist_section(facts: Mapping[str, object], study: Mapping[str, str], anchors: set[str]) -> Section:
    """Section ``checklist``: one table per guideline."""
    s = Section("Appendix: reporting-guideline checklist", anchor="checklist")
    s.add("Each item of STARD 2015 (diagnostic accuracy), TRIPOD+AI 2024 (prediction models using AI) and CLAIM "
          "2024 (AI in medical imaging) with the section of this report that answers it, or why it is not answered "
          "here. Item wording is abbreviated; check it against the official checklists. Facts only the "
          "investigators know (reference standard, blinding, dates, registration) are taken from [report.study] "
          "of the config, and marked as not reported when it is empty.")
    counts = []
    for g in GUIDELINES:
        table = checklist_table(facts, study, anchors, g)
        counts.append(f"{g}: {int((table['status'].str.startswith('reported')).sum())} of {len(table)} items "
                      "answered")
        s.add(Table(f"checklist-{g.split()[0].lower().replace('+', '-')}", g,
                    table.drop(columns="guideline"),
                    flag_rows=[i for i, st in enumerate(table["status"]) if st == "not reported here"],
                    flag_note="not reported here: supply it (report.study) or in the manuscript."))
    s.blocks.insert(1, "; ".join(counts) + ".")
    return s
