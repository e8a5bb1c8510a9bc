"""Grad-CAM in a run (``report.gradcam = N``) and in ``predict --gradcam``, through :mod:`breastclip.explain`.

CNN baselines are explained over their classes; frozen backbones over cosine similarity to the class-mean
training embeddings (image space, so it works with or without a text tower). Each map set comes with the ROAD
deletion faithfulness check that :func:`breastclip.explain.explain_images` writes beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from breastclip.backbones import create_backbone
from breastclip.backbones.preprocess import pixel_options
from breastclip.explain import cam_model_for_backbone, cam_model_for_finetuned, explain_images
from breastclip.method_registry import Inputs, MethodKind, method_kind
from breastclip.pipeline.context import RunContext, RunData
from breastclip.pipeline.embed_step import EmbeddingSet
from breastclip.pipeline.methods import MethodOutcome

if TYPE_CHECKING:  # predict imports the pipeline
    from breastclip.predict import RunArtifacts

log = logging.getLogger("breastclip.run")
CLASS_MEANS = "class_means.npz"


def save_class_means(folder: Path, X: np.ndarray, labels: np.ndarray, classes: list[str]) -> Path:
    """Class-mean training embeddings (the Grad-CAM targets of a frozen backbone), as npz without pickle."""
    means = np.stack([X[labels == c].mean(axis=0) if (labels == c).any() else np.zeros(X.shape[1]) for c in classes])
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / CLASS_MEANS, means=means.astype(np.float32), classes=np.asarray(classes, dtype=str))
    return folder / CLASS_MEANS


def load_class_means(folder: Path) -> tuple[np.ndarray, list[str]]:
    with np.load(folder / CLASS_MEANS, allow_pickle=False) as z:
        return z["means"], [str(c) for c in z["classes"]]


CATEGORIES = ("TP", "FP", "FN", "TN")


def choose_cases(predictions: pd.DataFrame, positive: str | None, threshold: float | None, n: int) -> pd.DataFrame:
    """``n`` test images of one method spread over true/false positives/negatives at the frozen threshold, the
    most confident of each kind first (TP, FP, FN, TN in turn); without an operating point, the first ``n``.

    Columns: id, y_true, p_positive, threshold, category, rank.
    """
    test = predictions[predictions["split"].astype(str) == "test"].drop_duplicates("id").reset_index(drop=True)
    ids = test["id"].astype(str).to_numpy()
    y_true = test["y_true"].astype(str).to_numpy()
    if positive is None or threshold is None or np.isnan(threshold) or f"p_{positive}" not in test:
        k = min(n, len(test))
        return pd.DataFrame({"id": ids[:k], "y_true": y_true[:k], "p_positive": np.nan, "threshold": np.nan,
                             "category": "-", "rank": range(k)})
    p = test[f"p_{positive}"].to_numpy(dtype=float)
    pos = y_true == str(positive)
    hit = p >= threshold
    kinds = {"TP": (hit & pos, -p), "FP": (hit & ~pos, -p), "FN": (~hit & pos, p), "TN": (~hit & ~pos, p)}
    queues = {k: [int(j) for j in np.flatnonzero(mask)[np.lexsort((ids[mask], key[mask]))]]
              for k, (mask, key) in kinds.items()}
    chosen: list[tuple[int, str]] = []
    while len(chosen) < n and any(queues.values()):
        for cat in CATEGORIES:
            if queues[cat] and len(chosen) < n:
                chosen.append((queues[cat].pop(0), cat))
    rows = [j for j, _ in chosen]
    return pd.DataFrame({"id": ids[rows], "y_true": y_true[rows], "p_positive": p[rows], "threshold": float(threshold),
                         "category": [k for _, k in chosen], "rank": range(len(chosen))})


def selected_cases(ctx: RunContext, outcomes: list[MethodOutcome], evaluations: dict | None, best: str | None,
                   n: int) -> pd.DataFrame:
    """The cases to explain, chosen on the selected method's test predictions and frozen operating point."""
    outcome = next((o for o in outcomes if o.label == best and o.predictions is not None), None)
    if outcome is None:
        outcome = next(o for o in outcomes if o.predictions is not None)
    ev = (evaluations or {}).get(outcome.label)
    positive, threshold = (ev.positive_class if ev is not None else None), None
    ops = ev.operating_points if ev is not None else None
    if ops is not None and len(ops):
        rows = ops[ops["policy"] == ctx.cfg.evaluation.operating_point]
        threshold = float((rows if len(rows) else ops)["threshold"].iloc[0])
    cases = choose_cases(outcome.predictions, positive, threshold, n)
    return cases.assign(method=outcome.label, positive=positive or "")


def run_gradcam(ctx: RunContext, data: RunData, outcomes: list[MethodOutcome], evaluations: dict | None = None,
                best: str | None = None) -> dict[str, str]:
    """Overlays of ``report.gradcam`` test images of the selected method (true/false positives/negatives at its
    frozen threshold, see :func:`choose_cases`) for each CNN method and each backbone, and ``gradcam/cases.csv``."""
    n = int(ctx.cfg.report.gradcam)
    manifest, folder = data.manifest, ctx.folder
    done: dict[str, str] = {}
    if not any(o.predictions is not None for o in outcomes):
        return done
    cases = selected_cases(ctx, outcomes, evaluations, best, n)
    cases = cases[cases["id"].isin(set(data.ids))]
    images = manifest.df.set_index(manifest.df["id"].astype(str))["image"]
    paths = [manifest.resolve(images[i]) for i in cases["id"]]
    if not paths:
        return done
    (folder / folder.GRADCAM).mkdir(parents=True, exist_ok=True)
    folder.write_csv(folder.GRADCAM_CASES, cases)
    jobs: list[tuple[str, Callable[[], Any]]] = []
    for o in outcomes:
        kind = method_kind(o.method.head)
        if kind.inputs is Inputs.IMAGES and o.predictions is not None:  # trained end to end: over its classes
            def end_to_end(kind: MethodKind = kind, model: Path = folder.model_dir(o.label)) -> Any:
                return cam_model_for_finetuned(kind.load(model))
            jobs.append((o.label, end_to_end))
    for name, emb in data.sets.items():
        def make(name: str = name, emb: EmbeddingSet = emb) -> Any:
            means, classes = load_class_means(folder.gate_dir(name))
            return cam_model_for_backbone(emb.backbone, target_embeddings=means, labels=classes)
        if (folder.gate_dir(name) / CLASS_MEANS).is_file():
            jobs.append((f"{name} image tower", make))
    for label, make_cam in jobs:
        where = folder.gradcam_dir(label)
        try:
            res = explain_images(paths, make_cam(), where, overwrite=True)
            done[label] = str(where)
            log.info("Grad-CAM %s: %d overlays in %s", label, len(res.table), where)
        except Exception as e:  # explanations must not lose the run's results
            log.warning("Grad-CAM for %s failed: %s", label, e, exc_info=True)
            done[label] = f"failed: {type(e).__name__}: {e}"
    return done


def overlays_for_predict(run: RunArtifacts, paths: list[Path], folder: Path) -> list[Path | None]:
    """Grad-CAM overlays for ``predict --gradcam``: the CNN over its classes, or the backbone over class means."""
    if run.kind.inputs is Inputs.IMAGES:  # trained end to end: explained over its classes
        cam = cam_model_for_finetuned(run.kind.load(run.folder.model_dir(run.method)))
    else:
        backbone = run.method_info["backbone"]
        means, classes = load_class_means(run.folder.gate_dir(backbone))
        cam = cam_model_for_backbone(create_backbone(backbone, run.config.embed.device or None,
                                                     **pixel_options(run.config.embed.options)),
                                     target_embeddings=means, labels=classes)
    res = explain_images(paths, cam, folder, faithfulness=False)
    by_image = {str(Path(r["image"])): folder / r["overlay"] for _, r in res.table.iterrows()}
    return [by_image.get(str(p)) for p in paths]
