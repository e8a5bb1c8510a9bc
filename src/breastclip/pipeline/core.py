"""The body of ``breastclip run``: each step writes its outputs into the results folder as soon as it is done."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from breastclip import RESEARCH_ONLY, __version__
from breastclip.config import CNN_KIND, ExperimentConfig
from breastclip.data.manifest import Manifest
from breastclip.pipeline import data_step, embed_step, evaluate_step, methods
from breastclip.pipeline.cv_select import ENSEMBLE, CVSelector, cv_selection
from breastclip.pipeline.environment import capture_environment, set_seeds
from breastclip.pipeline.label_efficiency import run_label_efficiency
from breastclip.pipeline.leaderboard import build_leaderboard, to_markdown
from breastclip.pipeline.logs import run_logging
from breastclip.pipeline.results import (
    CONFIG_FILE,
    OutputDecision,
    atomic_write_csv,
    atomic_write_text,
    write_json,
    write_state,
)
from breastclip.pipeline.seeds import seed_suffix, summarise_seeds, with_seed

log = logging.getLogger("breastclip.run")


def config_text(cfg: ExperimentConfig) -> str:
    head = (f"# Resolved breastclip {__version__} experiment config (every default filled in, absolute paths).\n"
            f"# Re-run it with: breastclip run config.resolved.toml\n# {RESEARCH_ONLY}\n\n")
    return head + cfg.to_toml()


def run_core(cfg: ExperimentConfig, decision: OutputDecision, *, console, progress: bool = True):
    from breastclip.pipeline import RunResult

    methods.validate_methods(cfg)  # a typo in a hyperparameter fails now, not after an hour of embedding
    if cfg.tracking.mlflow:
        from breastclip.pipeline.tracking import require_mlflow

        require_mlflow()
    out = decision.path
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    with run_logging(out / "run.log", console=True, console_level=logging.INFO if progress else logging.WARNING):
        log.info("breastclip %s, experiment '%s' -> %s", __version__, cfg.experiment.name, out)
        atomic_write_text(out / CONFIG_FILE, config_text(cfg))
        write_state(out, cfg, complete=False, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
        write_json(out / "environment.json", capture_environment(
            seeds={"experiment": cfg.experiment.seed, "split": cfg.split_seed}))
        set_seeds(cfg.experiment.seed)

        manifest = _manifest(cfg, out, decision.resume, notes)
        sets = embed_step.embed_all(cfg, manifest, progress=progress)
        ids = embed_step.common_ids(sets, manifest)
        _write_embeddings_info(out, cfg, sets, len(manifest), len(ids))
        if len(ids) < len(manifest):
            notes.append(f"{len(manifest) - len(ids)} image(s) could not be embedded by every backbone and are "
                         f"left out of every method (see embeddings.json)")

        outcomes = _run_methods(cfg, manifest, ids, sets, out, progress, console, skipped, failed)
        predictions = {o.label: o.predictions for o in outcomes if o.predictions is not None}
        if not predictions:
            raise RuntimeError("no method produced predictions: " +
                               "; ".join(f"{k}: {v}" for k, v in {**skipped, **failed}.items()))
        all_pred = pd.concat(predictions.values(), ignore_index=True)
        atomic_write_csv(out / "predictions.csv", all_pred)

        log.info("evaluating %d method(s): %d bootstrap resamples", len(predictions), cfg.evaluation.n_bootstrap)
        evaluations, comparisons = evaluate_step.evaluate_all(cfg, predictions, manifest, notes)
        evaluate_step.save_evaluations(out, cfg, evaluations, comparisons, {o.label: o.folder for o in outcomes})
        info = {o.label: {"backbone": o.backbone or "(end to end)", "head": o.method.head if o.method else "",
                          **_selection_columns(o)}
                for o in outcomes if o.predictions is not None}
        board = build_leaderboard(evaluations, comparisons, info=info, primary=cfg.evaluation.primary_metric)
        atomic_write_csv(out / "leaderboard.csv", board)
        atomic_write_text(out / "leaderboard.md", to_markdown(board))
        if cfg.experiment.seeds:
            summarise_seeds(board, cfg.experiment.seeds, out)
        best = board.attrs.get("best")

        if cfg.experiment.label_fractions or cfg.experiment.shots:
            text_cache_le: dict = {}
            run_label_efficiency(cfg, manifest, ids, sets, outcomes, out,
                                 lambda plan, emb: _text_embeddings(plan, emb, manifest, text_cache_le))
            notes.append("label-efficiency curve: label_efficiency.csv and figures/label_efficiency.png")
        _fit_gate(cfg, sets, manifest, ids, out, notes)
        if cfg.report.gradcam > 0:
            from breastclip.pipeline.explain_step import run_gradcam

            for label, where in run_gradcam(cfg, out, manifest, ids, outcomes, sets).items():
                if where.startswith("failed"):
                    notes.append(f"Grad-CAM for {label} {where}")
                else:
                    notes.append(f"Grad-CAM overlays and the ROAD faithfulness check for {label}: {where}")
        report_html = _report(cfg, out, all_pred, manifest, evaluations, comparisons, outcomes, board, notes,
                              skipped, failed)
        if cfg.tracking.mlflow:
            from breastclip.pipeline.tracking import log_to_mlflow

            try:
                log_to_mlflow(cfg, out, board, evaluations)
            except Exception as e:  # the results folder is complete; the tracking server refused
                notes.append(f"MLflow logging failed: {type(e).__name__}: {e}")
                log.error("MLflow logging failed (the results folder is complete): %s", e)
        write_state(out, cfg, complete=True, finished=time.strftime("%Y-%m-%dT%H:%M:%S"), best=best,
                    skipped=skipped, failed=failed, notes=notes)
        for n in notes:
            log.info("note: %s", n)
    audit = json.loads((out / "leak_audit.json").read_text()) if (out / "leak_audit.json").is_file() else None
    return RunResult(out, board, best, report_html, 0.0, decision.resume, notes, dict(skipped), dict(failed),
                     leak_audit=audit)


# ---- steps --------------------------------------------------------------------------------------------------
def _manifest(cfg: ExperimentConfig, out: Path, resume: bool, notes: list[str]) -> Manifest:
    path = out / "manifest.csv"
    if resume and path.is_file() and (out / "leak_audit.json").is_file():
        log.info("reusing the split of the unfinished run (%s)", path)
        return Manifest.from_csv(path)
    log.info("reading %s (%s)", cfg.data.source, cfg.data.format or "format auto-detected")
    manifest = data_step.load_manifest(cfg)
    flow = data_step.reader_flow(manifest)
    if cfg.data.subset:
        n_read = len(manifest)
        manifest = data_step.subset_manifest(manifest, cfg.data.subset, cfg.experiment.seed)
        notes.append(f"tiny run: a stratified subset of {len(manifest)} images (data.subset = {cfg.data.subset})")
        flow["exclusions"].append({"reason": f"not in the stratified subset (data.subset = {cfg.data.subset})",
                                   "images": n_read - len(manifest)})
    write_json(out / data_step.FLOW_FILE, flow)
    manifest, audit = data_step.split_and_audit(manifest, cfg)
    write_json(out / "leak_audit.json", audit)
    data_step.enforce_audit(audit, cfg)
    manifest.to_csv(path)
    counts = {k: v["images"] for k, v in audit["counts"].items()}
    log.info("%d images, %d classes %s, split %s; leak audit %s", len(manifest), len(manifest.classes),
             manifest.classes, counts, "passed" if audit.get("ok") else "FAILED")
    return manifest


def _write_embeddings_info(out: Path, cfg: ExperimentConfig, sets: dict, n_manifest: int, n_common: int) -> None:
    info = {"cache_dir": str(embed_step.cache_dir_for(cfg)), "n_manifest": n_manifest, "n_used": n_common,
            "backbones": {}, "failures": embed_step.failures_table(sets)}
    for name, s in sets.items():
        e = s.entry
        info["backbones"][name] = {
            "n": len(s.ids), "dim": int(s.X.shape[1]) if s.X.ndim == 2 else None,
            "architecture": getattr(e, "architecture", None), "weights": getattr(e, "weights", None),
            "image_size": getattr(e, "image_size", None), "has_text": s.has_text, "text_aligned": s.text_aligned,
            "licence": getattr(e, "licence", None), "n_computed": s.n_computed, "n_cached": s.n_cached,
            "seconds": round(s.seconds, 3)}
    write_json(out / "embeddings.json", info)


def _run_methods(cfg, manifest, ids, sets, out, progress, console, skipped, failed) -> list:
    """Every method once, or once per seed of ``experiment.seeds`` (labels ``<method>.seed<k>``)."""
    if not cfg.experiment.seeds:
        return _run_methods_once(cfg, manifest, ids, sets, out, progress, console, skipped, failed)
    outcomes = []
    for seed in cfg.experiment.seeds:
        log.info("seed %d of %s", seed, list(cfg.experiment.seeds))
        outcomes += _run_methods_once(with_seed(cfg, seed), manifest, ids, sets, out, progress, console, skipped,
                                      failed, suffix=seed_suffix(seed))
    return outcomes


def _run_methods_once(cfg, manifest, ids, sets, out, progress, console, skipped, failed, suffix: str = "") -> list:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    plans = [replace(p, label=p.label + suffix) for p in methods.plan_methods(cfg)]
    selector = None
    if cv_selection(cfg):  # cross-validated selection; fold results are cached, so finished methods rerun cheaply
        selector = CVSelector(cfg, manifest, ids)
        plans = sorted(plans, key=lambda p: p.method.head == ENSEMBLE)  # an ensemble needs the others' CV first
    outcomes = []
    text_cache: dict = {}
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, disable=not progress, transient=True)
    with bar:
        task = bar.add_task("", total=len(plans))
        for plan in plans:
            bar.update(task, description=f"[bold]methods[/bold] {plan.label}")
            folder = methods.method_folder(out, plan.label)
            identity = methods.method_identity(cfg, plan)
            done = methods.load_finished(folder, identity) if selector is None else None
            if done is not None:
                done.method = plan.method
                log.info("%s: reusing the finished result in %s", plan.label, folder)
                outcomes.append(done)
                bar.advance(task)
                continue
            emb = sets.get(plan.backbone) if plan.backbone else None
            why = methods.skip_reason(plan, emb)
            if why:
                skipped[plan.label] = why
                log.warning("skipping %s: %s", plan.label, why)
                outcome = methods.MethodOutcome(plan.label, plan.method, plan.backbone, folder, skipped=why)
                methods.save_outcome(outcome, identity)
                bar.advance(task)
                continue
            try:
                if plan.method.head == CNN_KIND:
                    sub = bar.add_task("", total=None)

                    def step(stage, i, n, sub=sub, label=plan.label):
                        bar.update(sub, description=f"{label}: {stage}", completed=i, total=n)

                    try:
                        outcome = _run_cnn(plan, cfg, manifest, ids, folder, progress, step)
                    finally:
                        bar.remove_task(sub)
                else:
                    from breastclip.heads import torch_threads

                    text = _text_embeddings(plan, emb, manifest, text_cache)
                    with torch_threads("cpu"):  # small heads: one intra-op thread (see torch_threads)
                        if selector is not None:
                            outcome = selector.fit_predict(plan, emb, text, folder)
                        else:
                            outcome = methods.fit_predict(plan, cfg, manifest, ids, emb, text, folder)
            except Exception as e:  # one failing method must not lose the others
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                failed[plan.label] = f"{type(e).__name__}: {e}"
                log.error("%s failed: %s", plan.label, failed[plan.label], exc_info=True)
                bar.advance(task)
                if _is_config_error(e):
                    raise
                continue
            methods.save_outcome(outcome, identity)
            log.info("%s: done in %.1f s", plan.label, outcome.seconds)
            outcomes.append(outcome)
            bar.advance(task)
    return outcomes


def _selection_columns(outcome) -> dict:
    """The cross-validated selection figure of a method, as leaderboard columns (none under validation)."""
    sel = outcome.selection
    if sel is None:
        return {}
    return {"selection_metric": sel.metric, "selection_value": sel.value, "selection_sd": sel.sd,
            "selection_n_folds": sel.n_folds}


def _is_config_error(e: Exception) -> bool:
    from breastclip.config import ConfigError

    return isinstance(e, ConfigError)


def _text_embeddings(plan, emb, manifest: Manifest, cache: dict) -> dict | None:
    """Class text embeddings from the method's prompt bank, rows in sorted label order (the heads' ``classes_``)."""
    from breastclip.config import TEXT_HEADS

    if plan.method.head not in TEXT_HEADS or not emb.has_text:
        return None
    if not plan.method.prompts:
        from breastclip.config import ConfigError

        raise ConfigError(f"method '{plan.method.name}' ({plan.method.head}) needs a prompt bank: set prompts = "
                          f"\"<bank name or file>\" in its [[methods]] table")
    key = (plan.backbone, plan.method.prompts)
    if key not in cache:
        from breastclip.prompts import class_text_embeddings, load_bank

        labels = sorted(manifest.classes)
        bank = load_bank(plan.method.prompts).aligned_to(labels)
        cache[key] = {"text_embeddings": class_text_embeddings(emb.backbone, bank),
                      "text_aligned": emb.text_aligned, "classes": labels}
    return cache[key]


def _run_cnn(plan, cfg, manifest, ids, folder, progress, on_progress=None):
    """The end-to-end CNN baseline (breastclip.finetune) on the same split, writing the same predictions table."""
    from breastclip.pipeline.cnn import run_cnn_baseline

    return run_cnn_baseline(plan, cfg, manifest, ids, folder, progress=progress, on_progress=on_progress)


def _fit_gate(cfg, sets, manifest, ids, out, notes) -> None:
    if not cfg.gate.ood:
        return
    from breastclip.pipeline.gate import fit_run_gate

    try:
        fit_run_gate(cfg, sets, manifest, ids, out)
    except Exception as e:  # the gate is for `predict`; a failure must not lose the run
        notes.append(f"the out-of-distribution gate could not be fitted: {e}")
        log.warning("OOD gate not fitted: %s", e, exc_info=True)


def _report(cfg, out, all_pred, manifest, evaluations, comparisons, outcomes, board, notes, skipped, failed):
    if not cfg.report.enabled:
        return None
    from breastclip.pipeline.report_step import write_run_report

    try:
        return write_run_report(cfg, out, all_pred, manifest, evaluations, comparisons, outcomes, board, notes,
                                skipped, failed)
    except Exception as e:  # keep the metrics even when a figure fails; say so loudly
        notes.append(f"the report could not be written: {type(e).__name__}: {e}")
        log.error("report failed: %s", e, exc_info=True)
        return None
