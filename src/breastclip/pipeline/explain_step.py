"""Grad-CAM in a run (``report.gradcam = N``) and in ``predict --gradcam``, through :mod:`breastclip.explain`.

CNN baselines are explained over their classes; frozen backbones over cosine similarity to the class-mean
training embeddings (image space, so it works with or without a text tower). Each map set comes with the ROAD
deletion faithfulness check that :func:`breastclip.explain.explain_images` writes beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

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


CASES_FILE = "cases.csv"
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
        for k in CATEGORIES:
            if queues[k] and len(chosen) < n:
                chosen.append((queues[k].pop(0), k))
    rows = [j for j, _ in chosen]
    return pd.DataFrame({"id": ids[rows], "y_true": y_true[rows], "p_positive": p[rows], "threshold": float(threshold),
                         "category": [k for _, k in chosen], "rank": range(len(chosen))})


def selected_cases(cfg: ExperimentConfig, outcomes: list, evaluations: dict | None, best: str | None,
                   n: int) -> tuple[pd.DataFrame, str | None]:
    """The cases to explain, chosen on the selected method's test predictions and frozen operating point."""
    outcome = next((o for o in outcomes if o.label == best and o.predictions is not None), None)
    if outcome is None:
        outcome = next(o for o in outcomes if o.predictions is not None)
    ev = (evaluations or {}).get(outcome.label)
    positive, threshold = (getattr(ev, "positive_class", None), None)
    ops = getattr(ev, "operating_points", None)
    if ops is not None and len(ops):
        rows = ops[ops["policy"] == cfg.evaluation.operating_point]
        threshold = float((rows if len(rows) else ops)["threshold"].iloc[0])
    cases = choose_cases(outcome.predictions, positive, threshold, n)
    return cases.assign(method=outcome.label, positive=positive or ""), outcome.label


def run_gradcam(cfg: ExperimentConfig, out: Path, manifest: Manifest, ids: list[str], outcomes: list,
                sets: dict, evaluations: dict | None = None, best: str | None = None) -> dict[str, str]:
    """Overlays of ``report.gradcam`` test images of the selected method (true/false positives/negatives at its
    frozen threshold, see :func:`choose_cases`) for each CNN method and each backbone, and ``gradcam/cases.csv``."""
    from breastclip.explain import cam_model_for_backbone, cam_model_for_finetuned, explain_images
    from breastclip.finetune import load_finetuned

    n = int(cfg.report.gradcam)
    done: dict[str, str] = {}
    if not any(o.predictions is not None for o in outcomes):
        return done
    cases, _ = selected_cases(cfg, outcomes, evaluations, best, n)
    cases = cases[cases["id"].isin(set(ids))]
    images = manifest.df.set_index(manifest.df["id"].astype(str))["image"]
    paths = [manifest.resolve(images[i]) for i in cases["id"]]
    if not paths:
        return done
    (out / "gradcam").mkdir(parents=True, exist_ok=True)
    cases.to_csv(out / "gradcam" / CASES_FILE, index=False)
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
