"""Grad-CAM in a run (``report.gradcam = N``) and in ``predict --gradcam``, through :mod:`breastclip.explain`.

CNN baselines are explained over their classes; frozen backbones over cosine similarity to the class-mean
training embeddings (image space, so it works with or without a text tower). Each map set comes with the ROAD
deletion faithfulness check that :func:`breastclip.explain.explain_images` writes beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from breastclip.config import CNN_KIND, ExperimentConfig
from breastclip.data.manifest import Manifest
from breastclip.pipeline.results import safe_name

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


def run_gradcam(cfg: ExperimentConfig, out: Path, manifest: Manifest, ids: list[str], outcomes: list,
                sets: dict) -> dict[str, str]:
    """Overlays of the first ``report.gradcam`` test images for each CNN method and each backbone."""
    from breastclip.explain import cam_model_for_backbone, cam_model_for_finetuned, explain_images
    from breastclip.finetune import load_finetuned

    n = int(cfg.report.gradcam)
    df = manifest.df.set_index("id").loc[ids]
    test = df[df["split"] == "test"]
    paths = [manifest.resolve(p) for p in test["image"].head(n)]
    done: dict[str, str] = {}
    if not paths:
        return done
    jobs = []
    for o in outcomes:
        if o.method is not None and o.method.head == CNN_KIND and o.predictions is not None:
            jobs.append((o.label, lambda o=o: cam_model_for_finetuned(load_finetuned(o.folder / "model"))))
    for name, emb in sets.items():
        def make(name=name, emb=emb):
            means, classes = load_class_means(out / "gate" / safe_name(name))
            return cam_model_for_backbone(emb.backbone, target_embeddings=means, labels=classes)
        if (out / "gate" / safe_name(name) / CLASS_MEANS).is_file():
            jobs.append((f"{name} image tower", make))
    for label, make in jobs:
        folder = out / "gradcam" / safe_name(label)
        try:
            res = explain_images(paths, make(), folder, overwrite=True)
            done[label] = str(folder)
            log.info("Grad-CAM %s: %d overlays in %s", label, len(res.table), folder)
        except Exception as e:  # explanations must not lose the run's results
            log.warning("Grad-CAM for %s failed: %s", label, e, exc_info=True)
            done[label] = f"failed: {type(e).__name__}: {e}"
    return done


def overlays_for_predict(run, paths: list[Path], folder: Path) -> list[Path | None]:
    """Grad-CAM overlays for ``predict --gradcam``: the CNN over its classes, or the backbone over class means."""
    from breastclip.explain import cam_model_for_backbone, cam_model_for_finetuned, explain_images

    if run.method_info.get("head") == CNN_KIND:
        from breastclip.finetune import load_finetuned

        cam = cam_model_for_finetuned(load_finetuned(run.method_dir / "model"))
    else:
        from breastclip.backbones import create_backbone

        backbone = run.method_info["backbone"]
        means, classes = load_class_means(run.run_dir / "gate" / safe_name(backbone))
        cam = cam_model_for_backbone(create_backbone(backbone, run.config.embed.device or None),
                                     target_embeddings=means, labels=classes)
    res = explain_images(paths, cam, folder, faithfulness=False)
    by_image = {str(Path(r["image"])): folder / r["overlay"] for _, r in res.table.iterrows()}
    return [by_image.get(str(p)) for p in paths]
