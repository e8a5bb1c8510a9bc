"""Label efficiency: each method refitted on stratified subsets of the training split, scored on test.

``experiment.label_fractions = [0.01, 0.1, 1.0]`` keeps that share of every class of train (at least one image per
class); ``experiment.shots = [1, 2, 4, 8, 16]`` keeps that many images per class (the few-shot convention of eva,
MedMNIST+ and Mammo-CLIP). Each method keeps the hyperparameters its main fit used (those chosen by CV under
``evaluation.selection = "cv"``); validation rows go to heads that tune on them, as in the main run. Subsets are
drawn per seed (``experiment.seeds``, else ``experiment.seed``) and nested: a larger subset contains the smaller.
Writes ``label_efficiency.csv`` (method, budget, n_train, seed, test AUC / accuracy) and the curve figure
``figures/label_efficiency.png``. Test figures here describe the curve; they choose nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from breastclip.config import ExperimentConfig
from breastclip.evaluation.metrics import headline_metrics, resolve_positive_class
from breastclip.heads import torch_threads
from breastclip.method_registry import Inputs, method_kind
from breastclip.pipeline import methods
from breastclip.pipeline.context import RunData
from breastclip.pipeline.run_folder import RunFolder

log = logging.getLogger("breastclip.run")


def budgets(cfg: ExperimentConfig) -> list[tuple[str, float]]:
    """(kind, value) pairs: ("fraction", 0.1) and ("shots", 4)."""
    return ([("fraction", float(f)) for f in cfg.experiment.label_fractions]
            + [("shots", float(n)) for n in cfg.experiment.shots])


def nested_subset(y: np.ndarray, kind: str, value: float, seed: int) -> np.ndarray:
    """Indices into ``y`` of a stratified subset: per class the first ``n`` of one seeded permutation (so subsets
    of one seed are nested). ``fraction``: n = max(1, round(value * class size)); ``shots``: n = value."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in sorted(set(y.tolist())):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n = max(1, round(value * len(idx))) if kind == "fraction" else int(value)
        keep.append(idx[: min(n, len(idx))])
    return np.sort(np.concatenate(keep))


def run_label_efficiency(cfg: ExperimentConfig, data: RunData, outcomes: list, folder: RunFolder,
                         text_for: Callable) -> pd.DataFrame | None:
    """Refit every finished head method on each training budget; write the table and the figure."""
    todo = budgets(cfg)
    if not todo:
        return None
    manifest, ids, sets = data.manifest, data.ids, data.sets
    df = manifest.df.set_index("id").loc[ids]
    split = df["split"].to_numpy()
    y = df["label"].astype(str).to_numpy()
    tr, va, te = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    classes = list(manifest.classes)
    positive, _ = resolve_positive_class(classes, cfg.evaluation.positive_class or None)
    pos = classes.index(positive) if positive is not None else None
    rows = []
    for o in outcomes:
        if o.method is None or o.predictions is None or not o.backbone:
            continue
        spec = method_kind(o.method.head)
        if spec.inputs is not Inputs.EMBEDDINGS or spec.pools_methods:  # a pooling method's members have curves
            continue
        emb = sets[o.backbone]
        X = emb.rows(ids)
        base, seed = o.label, cfg.experiment.seed
        if cfg.experiment.seeds and ".seed" in o.label:  # <method>.seed<k> (pipeline.seeds)
            base, k = o.label.rsplit(".seed", 1)
            seed = int(k)
        plan = methods.Plan(o.label, o.method, o.backbone)
        text = text_for(plan, emb)
        for kind, value in todo:
            sub = tr[nested_subset(y[tr], kind, value, seed)]
            head = methods.build_head(replace(plan, method=replace(o.method, params=dict(o.method.params))),
                                      replace(cfg, experiment=replace(cfg.experiment, seed=seed)), text)
            kw = {"X_val": X[va], "y_val": y[va]} if len(va) else {}
            try:
                with torch_threads("cpu"):
                    head.fit(X[sub], y[sub], **kw)
                    proba = methods.align_proba(head.predict_proba(X[te]), [str(c) for c in head.classes_], classes)
            except Exception as e:  # e.g. a head that cannot learn from one image per class: the curve goes on
                log.warning("label efficiency: %s at %s=%g failed: %s", o.label, kind, value, e)
                continue
            m = headline_metrics(np.array([classes.index(c) for c in y[te]]), proba, pos)
            rows.append({"method": base, "label": o.label, "seed": seed, "budget": kind, "value": value,
                         "n_train": len(sub), "roc_auc": m.get("roc_auc"), "accuracy": m.get("accuracy")})
    table = pd.DataFrame(rows)
    folder.write_csv(RunFolder.LABEL_EFFICIENCY, table)
    if len(table):
        plot_label_efficiency(table, folder / RunFolder.LABEL_EFFICIENCY_FIGURE)
    return table


def plot_label_efficiency(table: pd.DataFrame, stem: Path, metric: str = "roc_auc") -> Path:
    """Test ``metric`` against training images per method (mean over seeds, error bars = sd), log x axis."""
    from breastclip.report.figures import _subplots, color, save_figure

    fig, ax = _subplots(width=6.4, height=4.4)
    agg = (table.groupby(["method", "budget", "value"], sort=True)
           .agg(n=("n_train", "mean"), m=(metric, "mean"), sd=(metric, "std")).reset_index())
    for i, (name, g) in enumerate(agg.groupby("method", sort=True)):
        g = g.sort_values("n")
        ax.errorbar(g["n"], g["m"], yerr=g["sd"].fillna(0), marker="o", capsize=3, color=color(i), label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training images (stratified subset of train)")
    ax.set_ylabel(f"test {'AUC' if metric == 'roc_auc' else metric}")
    ax.set_title("Label efficiency")
    ax.legend(fontsize=7, loc="lower right")
    png, _ = save_figure(fig, stem)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return png
