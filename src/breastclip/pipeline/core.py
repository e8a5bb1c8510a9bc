"""The body of ``breastclip run``: each step writes its outputs into the results folder as soon as it is done."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from breastclip import RESEARCH_ONLY, __version__
from breastclip.config import ConfigError, ExperimentConfig
from breastclip.data.manifest import Manifest
from breastclip.heads import torch_threads
from breastclip.method_registry import Inputs
from breastclip.pipeline import data_step, embed_step, evaluate_step, methods
from breastclip.pipeline.cnn import run_cnn_baseline
from breastclip.pipeline.context import Evaluated, RunContext, RunData, RunResult
from breastclip.pipeline.cv_select import CVSelector, cv_selection, selection_groups
from breastclip.pipeline.embed_step import EmbeddingSet
from breastclip.pipeline.environment import capture_environment, set_seeds
from breastclip.pipeline.explain_step import run_gradcam
from breastclip.pipeline.gate import fit_run_gate
from breastclip.pipeline.label_efficiency import run_label_efficiency
from breastclip.pipeline.leaderboard import to_markdown
from breastclip.pipeline.logs import run_logging
from breastclip.pipeline.neighbours_step import run_neighbours
from breastclip.pipeline.report_step import write_run_report
from breastclip.pipeline.run_folder import RunClaim, RunFolder
from breastclip.pipeline.seeds import seed_suffix, summarise_seeds, with_seed
from breastclip.pipeline.tracking import log_to_mlflow
from breastclip.prompts import class_text_embeddings, load_bank

log = logging.getLogger("breastclip.run")


def config_text(cfg: ExperimentConfig) -> str:
    head = (f"# Resolved breastclip {__version__} experiment config (every default filled in, absolute paths).\n"
            f"# Re-run it with: breastclip run config.resolved.toml\n# {RESEARCH_ONLY}\n\n")
    return head + cfg.to_toml()


def run_core(cfg: ExperimentConfig, claim: RunClaim, *, console: Console, progress: bool = True) -> RunResult:
    """Every step of the run in its claimed folder; the claim is released (and a stub removed) at the end."""
    ctx = RunContext(cfg, claim.folder, console, progress, claim.resume)
    failed = True
    try:
        with run_logging(ctx.folder / RunFolder.LOG, console=True,
                         console_level=logging.INFO if progress else logging.WARNING):
            result = _run_steps(ctx)
        failed = False
        return result
    finally:
        claim.release(failed=failed)


def _run_steps(ctx: RunContext) -> RunResult:
    cfg, folder = ctx.cfg, ctx.folder
    log.info("breastclip %s, experiment '%s' -> %s", __version__, cfg.experiment.name, folder.path)
    folder.write_config(config_text(cfg))
    folder.write_state(cfg.identity(), complete=False, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    folder.write_json(RunFolder.ENVIRONMENT, capture_environment(
        seeds={"experiment": cfg.experiment.seed, "split": cfg.split_seed}, base=folder.path))
    set_seeds(cfg.experiment.seed)
    for line in cfg.substitutions:  # what --offline swapped: into the notes, the summary and the report
        ctx.note(line)

    manifest = _manifest(ctx)
    sets = embed_step.embed_all(cfg, manifest, progress=ctx.progress)
    data = RunData(manifest, sets, embed_step.common_ids(sets, manifest))
    _write_embeddings_info(ctx, data)
    if len(data.ids) < len(manifest):
        ctx.note(f"{len(manifest) - len(data.ids)} image(s) could not be embedded by every backbone and are "
                 f"left out of every method (see embeddings.json)")

    outcomes = _run_methods(ctx, data)
    predictions = {o.label: o.predictions for o in outcomes if o.predictions is not None}
    if not predictions:
        raise RuntimeError("no method produced predictions: " +
                           "; ".join(f"{k}: {v}" for k, v in {**ctx.skipped, **ctx.failed}.items()))
    all_pred = pd.concat(predictions.values(), ignore_index=True)
    folder.write_predictions(all_pred)

    log.info("evaluating %d method(s): %d bootstrap resamples", len(predictions), cfg.evaluation.n_bootstrap)
    produced = [o for o in outcomes if o.predictions is not None]
    info = {o.label: {"backbone": o.backbone or "(end to end)", "head": o.method.head} for o in produced}
    cv = {o.label: o.selection for o in produced if o.selection is not None} or None
    evaluations, comparisons, board = evaluate_step.evaluate_all(
        ctx, predictions, manifest, info=info, selection=cv,
        histories={o.label: o.history for o in produced if o.history is not None})
    evaluate_step.save_evaluations(ctx, evaluations, comparisons)
    folder.write_leaderboard(board, to_markdown(board))
    if cfg.experiment.seeds:
        summarise_seeds(board, cfg.experiment.seeds, folder)
    if cfg.experiment.label_fractions or cfg.experiment.shots:
        text_cache: dict = {}
        run_label_efficiency(cfg, data, outcomes, folder,
                             lambda plan, emb: _text_embeddings(plan, emb, data.manifest, text_cache))
        ctx.note(f"label-efficiency curve: {RunFolder.LABEL_EFFICIENCY} and {RunFolder.LABEL_EFFICIENCY_FIGURE}.png")
    best = board.attrs["selected"]  # chosen on validation (or CV), never test; None when no method learned the task
    evaluated = Evaluated(all_pred, evaluations, comparisons, outcomes, board)

    _fit_gate(ctx, data)
    if cfg.report.gradcam > 0:
        # the selected method's cases; when none is selected, the first row's, shown for inspection only
        for label, where in run_gradcam(ctx, data, outcomes, evaluations, board.attrs["baseline"]).items():
            if where.startswith("failed"):
                ctx.note(f"Grad-CAM for {label} {where}")
            else:
                ctx.note(f"Grad-CAM overlays and the ROAD faithfulness check for {label}: {where}")
    if cfg.report.enabled and cfg.report.neighbours > 0:
        try:
            run_neighbours(ctx, data, evaluated)
        except Exception as e:  # evidence for the report must not lose the run
            ctx.note(f"retrieval evidence failed: {type(e).__name__}: {e}")
            log.warning("retrieval evidence failed: %s", e, exc_info=True)
    report_html = _report(ctx, data, evaluated)
    if cfg.tracking.mlflow:
        try:
            log_to_mlflow(cfg, folder, board, evaluations)
        except Exception as e:  # the results folder is complete; the tracking server refused
            ctx.note(f"MLflow logging failed: {type(e).__name__}: {e}")
            log.error("MLflow logging failed (the results folder is complete): %s", e)
    folder.write_state(cfg.identity(), complete=True, finished=time.strftime("%Y-%m-%dT%H:%M:%S"), best=best,
                       skipped=ctx.skipped, failed=ctx.failed, notes=ctx.notes)
    for n in ctx.notes:
        log.info("note: %s", n)
    return RunResult(folder.path, board, best, report_html, 0.0, ctx.resume, list(ctx.notes), dict(ctx.skipped),
                     dict(ctx.failed), leak_audit=folder.read_json_or(RunFolder.LEAK_AUDIT, None))


# ---- steps --------------------------------------------------------------------------------------------------
def _manifest(ctx: RunContext) -> Manifest:
    cfg, folder = ctx.cfg, ctx.folder
    if ctx.resume and folder.has_split():
        log.info("reusing the split of the unfinished run (%s)", folder / RunFolder.MANIFEST)
        return folder.read_manifest()
    log.info("reading %s (%s)", cfg.data.source, cfg.data.format or "format auto-detected")
    manifest = data_step.load_manifest(cfg)
    flow = data_step.reader_flow(manifest)
    if cfg.data.subset:
        n_read = len(manifest)
        manifest = data_step.subset_manifest(manifest, cfg.data.subset, cfg.experiment.seed)
        ctx.note(f"tiny run: a stratified subset of {len(manifest)} images (data.subset = {cfg.data.subset})")
        flow["exclusions"].append({"reason": f"not in the stratified subset (data.subset = {cfg.data.subset})",
                                   "images": n_read - len(manifest)})
    folder.write_json(RunFolder.FLOW, flow)
    manifest, audit = data_step.split_and_audit(manifest, cfg, contact_sheet=folder / RunFolder.LEAK_PAIRS)
    folder.write_json(RunFolder.LEAK_AUDIT, audit)
    data_step.enforce_audit(audit, cfg)
    folder.write_manifest(manifest)
    counts = {k: v["images"] for k, v in audit["counts"].items()}
    log.info("%d images, %d classes %s, split %s; leak audit %s", len(manifest), len(manifest.classes),
             manifest.classes, counts, "passed" if audit.get("ok") else "FAILED")
    return manifest


def _write_embeddings_info(ctx: RunContext, data: RunData) -> None:
    info: dict = {"cache_dir": str(embed_step.cache_dir_for(ctx.cfg)), "n_manifest": len(data.manifest),
                  "n_used": len(data.ids), "backbones": {}, "failures": embed_step.failures_table(data.sets)}
    for name, s in data.sets.items():
        e = s.entry
        info["backbones"][name] = {
            "n": len(s.ids), "dim": int(s.X.shape[1]) if s.X.ndim == 2 else None,
            "architecture": e.architecture, "weights": e.weights, "image_size": e.image_size,
            "has_text": s.has_text, "text_aligned": s.text_aligned, "licence": e.licence,
            "n_computed": s.n_computed, "n_cached": s.n_cached, "seconds": round(s.seconds, 3)}
    ctx.folder.write_json(RunFolder.EMBEDDINGS, info)


def _run_methods(ctx: RunContext, data: RunData) -> list[methods.MethodOutcome]:
    """Every method once, or once per seed of ``experiment.seeds`` (labels ``<method>.seed<k>``)."""
    groups = selection_groups(ctx.cfg, data.manifest, data.ids) if cv_selection(ctx.cfg) else None  # every seed's
    if not ctx.cfg.experiment.seeds:
        return _run_methods_once(ctx, data, groups=groups)
    outcomes = []
    for seed in ctx.cfg.experiment.seeds:
        log.info("seed %d of %s", seed, list(ctx.cfg.experiment.seeds))
        outcomes += _run_methods_once(replace(ctx, cfg=with_seed(ctx.cfg, seed)), data, suffix=seed_suffix(seed),
                                      groups=groups)
    return outcomes


def _run_methods_once(ctx: RunContext, data: RunData, suffix: str = "", groups: np.ndarray | None = None
                      ) -> list[methods.MethodOutcome]:
    plans = [replace(p, label=p.label + suffix) for p in methods.plan_methods(ctx.cfg)]
    selector = None
    if cv_selection(ctx.cfg):  # cross-validated selection; fold results are cached, so finished methods rerun cheaply
        selector = CVSelector(ctx.cfg, data.manifest, data.ids, groups=groups)
        plans = sorted(plans, key=lambda p: p.kind.pools_methods)  # an ensemble needs the others' CV first
    outcomes = []
    text_cache: dict = {}
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=ctx.console, disable=not ctx.progress, transient=True)
    with bar:
        task = bar.add_task("", total=len(plans))
        for plan in plans:
            bar.update(task, description=f"[bold]methods[/bold] {plan.label}")
            outcome = _run_method(ctx, data, plan, bar, text_cache, selector)
            if outcome is not None:
                outcomes.append(outcome)
            bar.advance(task)
    return outcomes


def _run_method(ctx: RunContext, data: RunData, plan: methods.Plan, bar: Progress, text_cache: dict,
                selector: CVSelector | None) -> methods.MethodOutcome | None:
    """One method: reuse its finished result, skip it (saying why), or fit it; a failure loses only this method."""
    identity = methods.method_identity(ctx.cfg, plan)
    done = methods.load_finished(ctx.folder, plan, identity) if selector is None else None
    if done is not None:
        log.info("%s: reusing the finished result in %s", plan.label, done.folder)
        return done
    emb = data.sets.get(plan.backbone) if plan.backbone else None
    why = methods.skip_reason(plan, emb)
    if why:
        ctx.skip(plan.label, why)
        methods.save_outcome(ctx.folder, methods.MethodOutcome(plan.label, plan.method, plan.backbone,
                                                               ctx.folder.method_dir(plan.label), skipped=why),
                             identity)
        return None
    try:
        if plan.kind.inputs is Inputs.IMAGES:
            sub = bar.add_task("", total=None)

            def step(stage: str, i: int, n: int) -> None:
                bar.update(sub, description=f"{plan.label}: {stage}", completed=i, total=n)

            try:
                outcome = run_cnn_baseline(ctx, plan, data, on_progress=step)
            finally:
                bar.remove_task(sub)
        else:
            assert emb is not None
            text = _text_embeddings(plan, emb, data.manifest, text_cache)
            with torch_threads("cpu"):  # small heads: one intra-op thread (see torch_threads)
                if selector is not None:
                    outcome = selector.fit_predict(plan, emb, text, ctx.folder)
                else:
                    outcome = methods.fit_predict(ctx, plan, data, emb, text)
    except Exception as e:  # one failing method must not lose the others
        ctx.fail(plan.label, f"{type(e).__name__}: {e}")
        if isinstance(e, ConfigError):
            raise
        return None
    methods.save_outcome(ctx.folder, outcome, identity)
    log.info("%s: done in %.1f s", plan.label, outcome.seconds)
    return outcome


def _text_embeddings(plan: methods.Plan, emb: EmbeddingSet, manifest: Manifest, cache: dict) -> dict | None:
    """Class text embeddings from the method's prompt bank, rows in sorted label order (the heads' ``classes_``)."""
    if not plan.kind.uses_text(emb.has_text):
        return None
    if not plan.method.prompts:
        raise ConfigError(f"method '{plan.method.name}' ({plan.method.head}) needs a prompt bank: set prompts = "
                          f"\"<bank name or file>\" in its [[methods]] table")
    key = (plan.backbone, plan.method.prompts)
    if key not in cache:
        labels = sorted(manifest.classes)
        bank = load_bank(plan.method.prompts).aligned_to(labels)
        cache[key] = {"text_embeddings": class_text_embeddings(emb.backbone, bank),
                      "text_aligned": emb.text_aligned, "classes": labels}
    return cache[key]


def _fit_gate(ctx: RunContext, data: RunData) -> None:
    if not ctx.cfg.gate.ood:
        return
    try:
        fit_run_gate(ctx, data)
    except Exception as e:  # the gate is for `predict`; a failure must not lose the run
        ctx.note(f"the out-of-distribution gate could not be fitted: {e}")
        log.warning("OOD gate not fitted: %s", e, exc_info=True)


def _report(ctx: RunContext, data: RunData, evaluated: Evaluated) -> Path | None:
    if not ctx.cfg.report.enabled:
        return None
    try:
        return write_run_report(ctx, data, evaluated)
    except Exception as e:  # keep the metrics even when a figure fails; say so loudly
        ctx.note(f"the report could not be written: {type(e).__name__}: {e}")
        log.error("report failed: %s", e, exc_info=True)
        return None
