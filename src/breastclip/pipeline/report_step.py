"""Report step of a run: the report bundle (figures, .docx, HTML, model card) from the run's evaluations."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from breastclip.data.manifest import Manifest
from breastclip.pipeline.context import Evaluated, RunContext, RunData
from breastclip.pipeline.neighbours_step import read_neighbours
from breastclip.pipeline.options import check_options
from breastclip.pipeline.run_folder import RunFolder
from breastclip.portable import portable_config, portable_path
from breastclip.report import write_report
from breastclip.report.content import fmt_threshold

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


def gradcam_payload(folder: RunFolder, manifest: Manifest) -> list[dict]:
    """Each explained model's overlays of the selected method's cases (gradcam/cases.csv), captioned with the
    case kind, the true class, the predicted probability and the threshold, and its faithfulness.json."""
    if not (folder / RunFolder.GRADCAM_CASES).is_file():
        return []
    cases = folder.read_csv(RunFolder.GRADCAM_CASES, dtype={"id": str, "y_true": str, "positive": str})
    images = manifest.df.set_index(manifest.df["id"].astype(str))["image"]
    id_of = {str(manifest.resolve(images[i])): i for i in cases["id"] if i in images.index}
    by_id = cases.set_index("id")
    items = []
    for sub in sorted(p for p in (folder / RunFolder.GRADCAM).iterdir() if p.is_dir()):
        if not (sub / "explanations.csv").is_file():
            continue
        overlays = []
        for _, r in pd.read_csv(sub / "explanations.csv").iterrows():
            i = id_of.get(str(r["image"]))
            if i is None:
                continue
            c = by_id.loc[i]
            p = float(c["p_positive"])
            caption = (f"{c['category']}: true {c['y_true']}\nP({c['positive']}) {p:.3f}, "
                       f"t={fmt_threshold(float(c['threshold']))}" if p == p else f"true {c['y_true']}")
            overlays.append({"id": i, "path": sub / str(r["overlay"]), "caption": caption, "category": c["category"]})
        faith = sub / "faithfulness.json"
        items.append({"model": sub.name, "overlays": overlays,
                      "faithfulness": json.loads(faith.read_text()) if faith.is_file() else None})
    return items


def _label_efficiency(folder: RunFolder) -> pd.DataFrame | None:
    """The run's label-efficiency rows, when the run drew the curve (experiment.shots / label_fractions)."""
    if not (folder / RunFolder.LABEL_EFFICIENCY).is_file():
        return None
    return folder.read_csv(RunFolder.LABEL_EFFICIENCY)


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
        "seed": cfg.experiment.seed, "config": portable_config(cfg.to_dict(), folder.path),
        "environment": {"git commit": (env.get("git") or {}).get("commit"),
                        "device": "cuda" if (env.get("device") or {}).get("cuda_available") else "cpu",
                        "torch": (env.get("packages") or {}).get("torch")},
        "data_source": f"{portable_path(cfg.data.source, folder.path)} ({cfg.data.format or 'auto-detected'})",
        "notes": all_notes,
    }
    extra = check_options(write_report, dict(cfg.report.options), "report.options",
                          fixed=("out_dir", "predictions", "metadata", "image_path", "evaluations", "histories", "run_info",
                                 "comparisons", "leak_audit", "overwrite", "selected_method", "flow", "study",
                                 "leaderboard", "primary_metric", "gradcam", "neighbours",
                                 "label_efficiency"))
    extra.setdefault("title", cfg.report.title or f"breastclip: {cfg.experiment.name}")
    extra.setdefault("positive_class", cfg.evaluation.positive_class or None)
    extra.setdefault("operating_policy", cfg.evaluation.operating_point)
    extra.setdefault("n_boot", cfg.evaluation.n_bootstrap)
    extra.setdefault("seed", cfg.experiment.seed)
    extra.setdefault("min_group_size", cfg.evaluation.min_group_size)
    neighbours = None
    if cfg.report.neighbours > 0:  # asked for: an empty table still gets its section, saying why it is empty
        found = read_neighbours(folder)
        neighbours = found if found is not None else pd.DataFrame()
    paths = write_report(folder.path, predictions=evaluated.predictions, metadata=manifest.df,
                         image_path=manifest.image_lookup(),
                         evaluations=evaluated.evaluations, histories=histories, run_info=run_info,
                         comparisons=evaluated.comparisons, leak_audit=audit,
                         leaderboard=evaluated.leaderboard, primary_metric=cfg.evaluation.primary_metric,
                         flow=run_flow(folder),
                         study=cfg.to_dict()["report"]["study"],
                         gradcam=gradcam_payload(folder, manifest) if cfg.report.gradcam > 0 else None,
                         neighbours=neighbours, label_efficiency=_label_efficiency(folder), overwrite=True, **extra)
    log.info("report: %s (%d figures, each as PNG and JPG)", paths.html, paths.n_figures)
    return Path(paths.html)
