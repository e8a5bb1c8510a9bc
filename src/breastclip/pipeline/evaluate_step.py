"""Evaluation step of a run: every method's predictions -> Evaluation, paired comparisons, frozen operating points."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pandas as pd

from breastclip.data.manifest import Manifest
from breastclip.evaluation import Evaluation, compare_methods, evaluate_predictions
from breastclip.evaluation.leaderboard import NO_METHOD_LEARNED, attach_comparisons, leaderboard_for
from breastclip.evaluation.levels import aggregate_predictions, unit_manifest
from breastclip.evaluation.selection import SelectionScore
from breastclip.pipeline.context import RunContext
from breastclip.pipeline.options import check_options
from breastclip.pipeline.run_folder import RunFolder

log = logging.getLogger("breastclip.run")


def evaluate_all(ctx: RunContext, predictions: dict[str, pd.DataFrame], manifest: Manifest, *,
                 histories: Mapping[str, Sequence[Mapping]] | None = None,
                 info: Mapping[str, Mapping[str, object]] | None = None,
                 selection: Mapping[str, SelectionScore] | None = None,
                 ) -> tuple[dict[str, Evaluation], pd.DataFrame | None, pd.DataFrame]:
    """Evaluate each method (thresholds and temperature fitted on val, metrics on val and test), select by the
    validation figure (or the given cross-validation ``selection``), compare every method with the selected one on
    test, and return ``(evaluations, comparisons, leaderboard)``.

    ``evaluation.level`` = breast / exam: each method's image predictions are first pooled per unit
    (``evaluation.aggregate``; label = worst image label) and everything is measured on units, the bootstrap still
    resampling patients."""
    cfg = ctx.cfg
    ev_cfg = cfg.evaluation
    meta = manifest.df
    if ev_cfg.level != "image":
        predictions, meta = unit_predictions(ctx, predictions, manifest)
    subgroups = list(ev_cfg.subgroups)
    missing = [c for c in subgroups if c not in meta.columns]
    if missing:
        ctx.note(f"subgroup column(s) {missing} are not in this data set's metadata; skipped")
        subgroups = [c for c in subgroups if c in meta.columns]
    fixed = ("pred", "manifest_df", "method", "positive_class", "n_boot", "seed", "alpha", "min_group_size",
             "threshold_policies", "subgroup_columns")
    extra = check_options(evaluate_predictions, dict(ev_cfg.options), "evaluation.options", fixed=fixed)
    alpha = 1.0 - ev_cfg.ci
    evaluations = {}
    for label, pred in predictions.items():
        evaluations[label] = evaluate_predictions(
            pred, meta, method=label, positive_class=ev_cfg.positive_class or None,
            n_boot=ev_cfg.n_bootstrap, seed=cfg.experiment.seed, alpha=alpha,
            min_group_size=ev_cfg.min_group_size, threshold_policies=tuple(ev_cfg.thresholds),
            subgroup_columns=subgroups if ev_cfg.subgroups else None, **extra)
    if ev_cfg.selection == "cv":
        missing_cv = sorted(set(evaluations) - set(selection or {}))
        if missing_cv:
            raise ValueError(f"evaluation.selection = 'cv' but no cross-validation figure for {missing_cv}")
    all_pred = pd.concat(predictions.values(), ignore_index=True)

    board = leaderboard_for(evaluations, all_pred, primary=ev_cfg.primary_metric,
                            operating_point=ev_cfg.operating_point, selection=selection, histories=histories,
                            info=info, seeds=cfg.experiment.seeds, master_seed=cfg.experiment.seed)
    comparisons = None
    if ev_cfg.compare and len(predictions) >= 2:
        try:  # every method against the selected one (the first row when none is), on the same test images
            comparisons = compare_methods(all_pred, baseline_method=board.attrs["baseline"], split="test",
                                          positive_class=ev_cfg.positive_class or None, n_boot=ev_cfg.n_bootstrap,
                                          seed=cfg.experiment.seed, alpha=alpha)
        except ValueError as e:  # e.g. methods evaluated on different test images
            ctx.note(f"paired comparisons skipped: {e}")
            log.warning("paired comparisons skipped: %s", e)
        else:
            board = attach_comparisons(board, comparisons)
    if board.attrs["selected"] is None:
        ctx.note(f"{NO_METHOD_LEARNED}: every method's status flags it (see leaderboard.csv); none is selected")
    return evaluations, comparisons, board


def unit_predictions(ctx: RunContext, predictions: dict[str, pd.DataFrame],
                     manifest: Manifest) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Every method's predictions pooled to ``evaluation.level`` units, and the unit-level metadata table."""
    ev_cfg = ctx.cfg.evaluation
    level_notes: list[str] = []
    pooled = {label: aggregate_predictions(pred, manifest.df, ev_cfg.level, ev_cfg.aggregate,
                                           severity=ev_cfg.severity or None, notes=level_notes)
              for label, pred in predictions.items()}
    meta = unit_manifest(manifest.df, ev_cfg.level)
    for note in dict.fromkeys(level_notes):
        ctx.note(note)
    n_units = len(meta)
    ctx.note(f"evaluated per {ev_cfg.level} ({n_units} {ev_cfg.level}s of {len(manifest.df)} images): image "
             f"probabilities pooled by {ev_cfg.aggregate}; a {ev_cfg.level}'s label is the worst label of its "
             "images; the bootstrap resamples patients")
    log.info("evaluation level %s: %d units, aggregate %s", ev_cfg.level, n_units, ev_cfg.aggregate)
    return pooled, meta


def operating_point(ev: Evaluation, policy: str) -> dict:
    """The threshold ``policy`` chose on validation (binary / one-vs-rest), frozen for ``predict``."""
    out = {"policy": policy, "positive_class": ev.positive_class, "threshold": None,
           "classes": list(ev.classes), "note": ""}
    ops = ev.operating_points
    if ops is not None and len(ops):
        row = ops[ops["policy"] == policy]
        if len(row):
            r = row.iloc[0].to_dict()
            out.update({k: r.get(k) for k in ("threshold", "val_sensitivity", "val_specificity", "sensitivity",
                                              "specificity")})
            if not r.get("attainable", True):
                out["threshold"] = None
                out["note"] = (f"policy {policy!r} is not attainable on the validation split (no threshold that "
                               "calls an image positive meets it): not applied; predict decides by argmax")
        else:
            out["note"] = f"policy {policy!r} was not evaluated (evaluation.thresholds lacks it)"
    else:
        out["note"] = "no operating point: multi-class without a positive class, or no validation split"
    temp = (ev.calibration or {}).get("temperature") if isinstance(ev.calibration, dict) else None
    if temp is not None:
        out["temperature"] = temp
    return out


def save_evaluations(ctx: RunContext, evaluations: dict[str, Evaluation], comparisons: pd.DataFrame | None) -> dict:
    """``metrics.json`` (every evaluation + comparisons) and each method's ``operating_point.json``."""
    metrics = {"methods": {k: ev.to_dict() for k, ev in evaluations.items()},
               "comparisons": [] if comparisons is None else comparisons.to_dict(orient="records")}
    ctx.folder.write_json(RunFolder.METRICS, metrics)
    if comparisons is not None:
        ctx.folder.write_csv(RunFolder.COMPARISONS, comparisons)
    for label, ev in evaluations.items():
        ctx.folder.write_operating_point(label, operating_point(ev, ctx.cfg.evaluation.operating_point))
    return metrics
