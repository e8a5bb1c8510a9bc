"""Method step of a run: fit each head on the training split of each backbone's embeddings, predict every split,
and save model, predictions and loss history under ``methods/<label>/``. Finished methods are reused on resume."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from breastclip.config import ConfigError, ExperimentConfig, MethodSection
from breastclip.evaluation.selection import SelectionScore
from breastclip.heads import HEADS
from breastclip.method_registry import Inputs, MethodKind, method_kind
from breastclip.pipeline.embed_step import EmbeddingSet
from breastclip.pipeline.run_folder import ResultsFolderError, RunFolder
from breastclip.predictions import make_predictions

if TYPE_CHECKING:  # the context module imports this one
    from breastclip.pipeline.context import RunContext, RunData

log = logging.getLogger("breastclip.run")


@dataclass(frozen=True)
class Plan:
    label: str
    method: MethodSection
    backbone: str | None  # None for a method trained end to end on the images (the CNN baseline)

    @property
    def kind(self) -> MethodKind:
        """What the method needs and how it is built, saved and loaded (the method registry)."""
        return method_kind(self.method.head)


@dataclass
class MethodOutcome:
    label: str
    method: MethodSection
    backbone: str | None
    folder: Path
    predictions: pd.DataFrame | None = None
    history: list[dict[str, Any]] | None = None
    skipped: str | None = None
    reused: bool = False
    seconds: float = 0.0
    model: object = None
    selection: SelectionScore | None = None  # set by cross-validated selection (pipeline.cv_select)


def plan_methods(cfg: ExperimentConfig) -> list[Plan]:
    """Every (method, backbone) pair to run; labels read ``name`` or ``name@backbone`` when several backbones."""
    plans = []
    for m in cfg.active_methods():
        if method_kind(m.head).inputs is Inputs.IMAGES:
            plans.append(Plan(m.name, m, None))
            continue
        for b in (m.backbones or cfg.backbones):
            label = m.name if len(cfg.backbones) == 1 else f"{m.name}@{b}"
            plans.append(Plan(label, m, b))
    return plans


def validate_methods(cfg: ExperimentConfig) -> None:
    """Check every method's head and hyperparameters before any image is read (fail fast, naming the key)."""
    for plan in plan_methods(cfg):
        if plan.kind.inputs is Inputs.IMAGES:
            plan.kind.build(plan.method, cfg, None)
        else:
            method = plan.method
            run_only = sorted(set(method.params) & set(plan.kind.run_params))
            if run_only and cfg.evaluation.selection != "cv":
                raise ConfigError(f"method '{method.name}' ({method.head}): {', '.join(run_only)} pools the other "
                                  f"methods' cross-validated results; set evaluation.selection = \"cv\"")
            method = replace(method, params=plan.kind.estimator_params(method.params))  # e.g. top_k: the run's
            for point in _grid_points(method):
                build_head(Plan(plan.label, replace(method, params=point), plan.backbone), cfg, None)


def _grid_points(method: MethodSection) -> list[dict]:
    """The fixed params alone, or combined with the first and last value of each ``params_grid`` entry."""
    grid = dict(method.params_grid)
    if not grid:
        return [dict(method.params)]
    return [{**method.params, **{k: v[0] for k, v in grid.items()}},
            {**method.params, **{k: v[-1] for k, v in grid.items()}}]


def method_identity(cfg: ExperimentConfig, plan: Plan) -> str:
    d = {"run": cfg.identity(), "method": cfg.to_dict()["methods"][[m.name for m in cfg.methods].index(plan.method.name)],
         "backbone": plan.backbone}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_finished(folder: RunFolder, plan: Plan, identity: str) -> MethodOutcome | None:
    """The method's finished result from an earlier (interrupted) run of the same config, or None."""
    mdir = folder.method_dir(plan.label)
    if not (mdir / RunFolder.METHOD_RECORD).is_file() or not (mdir / RunFolder.PREDICTIONS).is_file():
        return None
    try:
        info = folder.read_method_record(plan.label)
        if info.get("identity") != identity or not info.get("complete"):
            return None
        pred = folder.read_method_predictions(plan.label)
        history = folder.read_history(plan.label)
    except ResultsFolderError as e:  # a damaged file of an unfinished run: fit the method again
        log.warning("%s: not reusing the earlier result (%s)", plan.label, e)
        return None
    sel = info.get("selection")
    return MethodOutcome(plan.label, plan.method, plan.backbone, mdir, pred, history, reused=True,
                         seconds=float(info.get("seconds", 0.0)),
                         selection=SelectionScore(**sel) if isinstance(sel, dict) else None)


def skip_reason(plan: Plan, emb: EmbeddingSet | None) -> str | None:
    """Why the method cannot run on its backbone (None when it can, or when it needs no backbone)."""
    if emb is None or plan.backbone is None:
        return None
    return plan.kind.unmet_need(plan.backbone, emb.has_text, emb.text_aligned)


def head_class(head: str) -> type:
    """The head class of a method kind trained on embeddings (unknown names: a ConfigError listing the kinds)."""
    if method_kind(head).inputs is not Inputs.EMBEDDINGS:
        raise ConfigError(f"method kind '{head}' is not a head on embeddings")
    return HEADS[head]


def build_head(plan: Plan, cfg: ExperimentConfig, text: dict | None = None) -> Any:
    """The estimator with the method's hyperparameters; unknown hyperparameters are errors naming the valid ones.

    ``text``: ``{"text_embeddings", "text_aligned", "classes"}`` for heads that use class text embeddings.
    """
    return plan.kind.build(plan.method, cfg, text)


def fit_predict(ctx: RunContext, plan: Plan, data: RunData, emb: EmbeddingSet, text: dict | None) -> MethodOutcome:
    """Fit on train (validation rows for model selection), predict every split, save the model."""
    t0 = time.perf_counter()
    manifest, ids = data.manifest, data.ids
    df = manifest.df.set_index("id").loc[ids]
    X = emb.rows(ids)
    split = df["split"].to_numpy()
    y = df["label"].to_numpy()
    tr, va = split == "train", split == "val"
    head = build_head(plan, ctx.cfg, text)
    if plan.kind.uses_validation and va.any():
        head.fit(X[tr], y[tr], X_val=X[va], y_val=y[va])
    else:
        head.fit(X[tr], y[tr])
    proba = align_proba(head.predict_proba(X), [str(c) for c in head.classes_], manifest.classes)
    pred = make_predictions(ids=ids, y_true=y, proba=proba, classes=manifest.classes, method=plan.label,
                            split=list(split), patient_id=df["patient_id"].tolist())
    history: list[dict[str, Any]] | None = getattr(head, "history_", None)  # the trained heads keep one
    head.save(ctx.folder.model_dir(plan.label), overwrite=True)
    return MethodOutcome(plan.label, plan.method, plan.backbone, ctx.folder.method_dir(plan.label), pred,
                         None if history is None else list(history), seconds=time.perf_counter() - t0, model=head)


def align_proba(proba: np.ndarray, head_classes: list[str], classes: list[str]) -> np.ndarray:
    """Reorder probability columns to the manifest's class order (a class the head never saw gets 0)."""
    proba = np.asarray(proba, dtype=float)
    out = np.zeros((proba.shape[0], len(classes)))
    for j, c in enumerate(head_classes):
        if c not in classes:
            raise ValueError(f"the head predicts class '{c}' that the data set does not have ({classes})")
        out[:, classes.index(c)] = proba[:, j]
    s = out.sum(axis=1, keepdims=True)
    return out / np.where(s > 0, s, 1.0)


def save_outcome(folder: RunFolder, outcome: MethodOutcome, identity: str) -> None:
    """Write predictions, history and the completion record (last, so a crash leaves the method unfinished)."""
    if outcome.predictions is not None:
        folder.write_method_predictions(outcome.label, outcome.predictions)
    if outcome.history is not None:
        folder.write_history(outcome.label, outcome.history)
    m = outcome.method
    folder.write_method_record(outcome.label, {
        "label": outcome.label, "name": m.name, "head": m.head, "backbone": outcome.backbone,
        "params": m.params, "prompts": m.prompts, "identity": identity, "complete": outcome.skipped is None,
        "skipped": outcome.skipped, "seconds": round(outcome.seconds, 3),
        "selection": asdict(outcome.selection) if outcome.selection is not None else None})
