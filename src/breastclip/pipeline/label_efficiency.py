"""Label efficiency: each method refitted on stratified subsets of its training pool, scored on test.

``experiment.label_fractions = [0.01, 0.1, 1.0]`` keeps that share of every class of the pool (at least one image
per class); ``experiment.shots = [1, 2, 4, 8, 16]`` keeps that many images per class (the few-shot convention of
eva, MedMNIST+ and Mammo-CLIP). The pool is what the main fit was trained on: train+val under
``evaluation.selection = "cv"`` (the chosen model is refitted there), else train, with the validation rows going to
heads that tune on them, as in the main run. So the 100 % point is the leaderboard's own fit. Each method keeps the
hyperparameters of its main fit (chosen by CV under ``selection = "cv"``); an ensemble keeps its members and pools
their fits on each subset, as the main run pools their main fits. Subsets are drawn per seed (``experiment.seeds``, else ``experiment.seed``) and nested: a
larger subset contains the smaller. Writes ``label_efficiency.csv`` (method, seed, budget, n_train, test AUC /
accuracy, or the error of a refit that failed) and ``figures/label_efficiency.png``. Test figures here describe the
curve; they choose nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from breastclip.config import ExperimentConfig
from breastclip.evaluation.leaderboard import split_seed_label
from breastclip.evaluation.metrics import headline_metrics, resolve_positive_class
from breastclip.heads import registry_name, torch_threads
from breastclip.method_registry import Inputs, method_kind
from breastclip.pipeline import methods
from breastclip.pipeline.context import RunData
from breastclip.pipeline.cv_select import SELECTION_ROWS, cv_selection
from breastclip.pipeline.run_folder import RunFolder
from breastclip.report.figures import save_figure
from breastclip.report.label_efficiency import draw

log = logging.getLogger("breastclip.run")

#: label_efficiency.csv: one row per method, seed and budget (``error`` says why a refit gave no figure).
COLUMNS = ("method", "label", "seed", "budget", "value", "n_train", "pool", "n_pool", "roc_auc", "accuracy",
           "auc_definition", "error")


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


def training_pool(cfg: ExperimentConfig, split: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """(name, pool rows, validation rows for heads that tune on them): the rows the main fit was trained on."""
    if cv_selection(cfg):
        return "+".join(SELECTION_ROWS), np.flatnonzero(np.isin(split, SELECTION_ROWS)), np.array([], dtype=int)
    return "train", np.flatnonzero(split == "train"), np.flatnonzero(split == "val")


def auc_definition(classes: list[str], positive: str | None) -> str:
    """What the AUC column means: ``macro one-vs-rest, 3 classes`` or ``'malignant' vs rest``."""
    return f"macro one-vs-rest, {len(classes)} classes" if len(classes) > 2 else f"'{positive}' vs rest"


def member_key(head) -> tuple[str, str]:
    """A fitted head as a pooled method names its members: registry name and non-array hyperparameters."""
    params = {k: v for k, v in head.get_params(deep=False).items() if not isinstance(v, np.ndarray)}
    return registry_name(type(head)), repr(sorted(params.items()))


def _pooled(plan: methods.Plan, fitted: dict[tuple, object]):
    """A pooling method (the ensemble) on one subset: its fixed members' heads fitted on that subset, pooled as
    the main run pools them (nothing is fitted twice)."""
    assert plan.kind.pool is not None
    members = plan.method.params.get("members") or ()
    heads = []
    for name, params in members:
        key = (name, repr(sorted(params.items())))
        if key not in fitted:
            raise RuntimeError(f"member {name} {params} has no fit on this subset")
        heads.append(fitted[key])
    return plan.kind.pool(heads)


def refittable(o) -> bool:
    """A finished embedding-head method whose main fit can be repeated on a subset (an ensemble once its members
    are fixed, as CV selection fixes them)."""
    if o.method is None or o.predictions is None or not o.backbone:
        return False
    kind = method_kind(o.method.head)
    if kind.inputs is not Inputs.EMBEDDINGS:
        return False
    return not kind.pools_methods or bool(o.method.params.get("members"))


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
    pool_name, tr, va = training_pool(cfg, split)
    te = np.flatnonzero(split == "test")
    classes = list(manifest.classes)
    positive, _ = resolve_positive_class(classes, cfg.evaluation.positive_class or None)
    pos = classes.index(positive) if positive is not None else None
    definition = auc_definition(classes, positive)
    t0 = time.perf_counter()
    rows = []
    fitted: dict[tuple, dict[tuple, object]] = {}  # (backbone, seed, budget) -> member key -> head fitted there
    y_te = np.array([classes.index(c) for c in y[te]])
    # members before the methods pooled from them, so an ensemble is built from its members' fits on each subset
    for o in sorted(outcomes, key=lambda o: o.method is not None and method_kind(o.method.head).pools_methods):
        if not refittable(o):
            if o.method is not None and o.predictions is not None:
                log.info("label efficiency: %s (%s) is not refitted on subsets", o.label, o.method.head)
            continue
        emb = sets[o.backbone]
        X = emb.rows(ids)
        base, own_seed = split_seed_label(o.label)  # <method>.seed<k> in a seeded run
        seed = own_seed if cfg.experiment.seeds and own_seed is not None else cfg.experiment.seed
        plan = methods.Plan(o.label, o.method, o.backbone)
        text = text_for(plan, emb)
        for kind, value in todo:
            sub = tr[nested_subset(y[tr], kind, value, seed)]
            row = {"method": base, "label": o.label, "seed": seed, "budget": kind, "value": value,
                   "n_train": len(sub), "pool": pool_name, "n_pool": len(tr), "roc_auc": np.nan,
                   "accuracy": np.nan, "auc_definition": definition, "error": ""}
            here = fitted.setdefault((o.backbone, seed, kind, value), {})
            try:
                with torch_threads("cpu"):
                    if plan.kind.pools_methods:
                        head = _pooled(plan, here)
                    else:
                        head = methods.build_head(plan, replace(cfg, experiment=replace(cfg.experiment, seed=seed)),
                                                  text)
                        kw = {"X_val": X[va], "y_val": y[va]} if len(va) and plan.kind.uses_validation else {}
                        head.fit(X[sub], y[sub], **kw)
                        here[member_key(head)] = head
                    proba = methods.align_proba(head.predict_proba(X[te]), [str(c) for c in head.classes_], classes)
            except Exception as e:  # e.g. a head that cannot learn from one image per class: the curve goes on
                log.warning("label efficiency: %s at %s=%g failed: %s", o.label, kind, value, e)
                rows.append({**row, "error": f"{type(e).__name__}: {e}"})
                continue
            m = headline_metrics(y_te, proba, pos)
            rows.append({**row, "roc_auc": m.get("roc_auc"), "accuracy": m.get("accuracy")})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    log.info("label efficiency: %d refits (%d failed) of %d method(s) on %d budget(s) in %.1f s", len(table),
             int(table["roc_auc"].isna().sum()), table["label"].nunique(), len(todo), time.perf_counter() - t0)
    folder.write_csv(RunFolder.LABEL_EFFICIENCY, table)
    if len(table) and table["roc_auc"].notna().any():
        plot_label_efficiency(table, folder / RunFolder.LABEL_EFFICIENCY_FIGURE)
    return table


def plot_label_efficiency(table: pd.DataFrame, stem: Path) -> Path:
    """The curve of ``table`` (rows of label_efficiency.csv) as ``<stem>.png`` / ``.jpg``; the report draws the
    same figure from the same rows."""
    fig = draw(table)
    try:
        png, _ = save_figure(fig, stem)
    finally:
        plt.close(fig)
    return png
