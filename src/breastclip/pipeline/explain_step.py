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

from breastclip.backbones import create_backbone
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


def run_gradcam(ctx: RunContext, data: RunData, outcomes: list[MethodOutcome]) -> dict[str, str]:
    """Overlays of the first ``report.gradcam`` test images for each CNN method and each backbone."""
    n = int(ctx.cfg.report.gradcam)
    manifest, folder = data.manifest, ctx.folder
    df = manifest.df.set_index("id").loc[data.ids]
    test = df[df["split"] == "test"]
    paths = [manifest.resolve(p) for p in test["image"].head(n)]
    done: dict[str, str] = {}
    if not paths:
        return done
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
        cam = cam_model_for_backbone(create_backbone(backbone, run.config.embed.device or None),
                                     target_embeddings=means, labels=classes)
    res = explain_images(paths, cam, folder, faithfulness=False)
    by_image = {str(Path(r["image"])): folder / r["overlay"] for _, r in res.table.iterrows()}
    return [by_image.get(str(p)) for p in paths]
