"""Report step of a run: the report bundle (figures, .docx, HTML, model card) from the run's evaluations."""

from __future__ import annotations

import logging
from pathlib import Path

from breastclip.pipeline.context import Evaluated, RunContext, RunData
from breastclip.pipeline.options import check_options
from breastclip.pipeline.run_folder import RunFolder
from breastclip.report import write_report

log = logging.getLogger("breastclip.run")


UNDECODABLE = "could not be decoded or embedded (each file and its error: embeddings.json)"


def run_flow(folder: RunFolder) -> dict:
    """The flow of images of the run: what the data step excluded (flow.json) and the images no backbone could
    embed (embeddings.json), by id, with the decoder's reason."""
    flow = folder.read_json_or(RunFolder.FLOW, {})
    emb = folder.read_json_or(RunFolder.EMBEDDINGS, {})
    excluded: dict[str, list[str]] = {}
    for f in emb.get("failures") or []:
        if f.get("id"):
            excluded.setdefault(UNDECODABLE, []).append(str(f["id"]))
    flow["excluded_ids"] = {k: sorted(set(v)) for k, v in excluded.items()}
    return flow


def write_run_report(ctx: RunContext, data: RunData, evaluated: Evaluated) -> Path:
    """Write the bundle into the results folder and return the HTML report's path."""
    cfg, folder, manifest = ctx.cfg, ctx.folder, data.manifest
    outcomes = evaluated.outcomes
    histories = {o.label: o.history for o in outcomes if o.history and o.predictions is not None}
    env = folder.read_json_or(RunFolder.ENVIRONMENT, {})
    audit = folder.read_json_or(RunFolder.LEAK_AUDIT, None)
    all_notes = list(ctx.notes)
    all_notes += [f"{k} skipped: {v}" for k, v in ctx.skipped.items()]
    all_notes += [f"{k} failed: {v}" for k, v in ctx.failed.items()]
    all_notes += list(manifest.notes)
    if cfg.experiment.description:
        all_notes.insert(0, cfg.experiment.description)
    heads = sorted({o.method.head for o in outcomes if o.predictions is not None})
    run_info = {
        "dataset": manifest.name, "backbone": ", ".join(cfg.backbones), "head": ", ".join(heads),
        "seed": cfg.experiment.seed, "config": cfg.to_dict(),
        "environment": {"git commit": (env.get("git") or {}).get("commit"),
                        "device": "cuda" if (env.get("device") or {}).get("cuda_available") else "cpu",
                        "torch": (env.get("packages") or {}).get("torch")},
        "leak_audit": audit, "data_source": f"{cfg.data.source} ({cfg.data.format or 'auto-detected'})",
        "notes": all_notes,
    }
    extra = check_options(write_report, dict(cfg.report.options), "report.options",
                          fixed=("out_dir", "predictions", "manifest_df", "evaluations", "histories", "run_info",
                                 "comparisons", "leak_audit", "overwrite", "selected_method", "flow", "study"))
    extra.setdefault("title", cfg.report.title or f"breastclip: {cfg.experiment.name}")
    extra.setdefault("positive_class", cfg.evaluation.positive_class or None)
    extra.setdefault("operating_policy", cfg.evaluation.operating_point)
    extra.setdefault("n_boot", cfg.evaluation.n_bootstrap)
    extra.setdefault("seed", cfg.experiment.seed)
    extra.setdefault("min_group_size", cfg.evaluation.min_group_size)
    paths = write_report(folder.path, predictions=evaluated.predictions, manifest_df=manifest.df,
                         evaluations=evaluated.evaluations, histories=histories, run_info=run_info,
                         comparisons=evaluated.comparisons, leak_audit=audit,
                         selected_method=evaluated.leaderboard.attrs.get("best"), flow=run_flow(folder),
                         study=cfg.to_dict()["report"]["study"], overwrite=True, **extra)
    log.info("report: %s (%d figures, each as PNG and JPG)", paths.html, paths.n_figures)
    return Path(paths.html)
