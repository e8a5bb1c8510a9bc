"""The end-to-end CNN baseline as a method of a run: :func:`breastclip.finetune.finetune` on the run's split."""

from __future__ import annotations

import dataclasses
import logging
import time

import pandas as pd

from breastclip.config import ConfigError, ExperimentConfig
from breastclip.data.manifest import Manifest

log = logging.getLogger("breastclip.run")


def finetune_config(plan, cfg: ExperimentConfig):
    """A :class:`FinetuneConfig` from the method's params (unknown keys are errors naming the valid ones)."""
    from breastclip.finetune import AugmentConfig, FinetuneConfig

    valid = [f.name for f in dataclasses.fields(FinetuneConfig) if f.name not in ("method",)]
    params = dict(plan.method.params)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"method '{plan.method.name}' (cnn): unknown hyperparameter(s) {unknown}; valid: "
                          f"{', '.join(valid)}")
    if isinstance(params.get("augmentation"), dict):
        aug_valid = [f.name for f in dataclasses.fields(AugmentConfig)]
        bad = sorted(set(params["augmentation"]) - set(aug_valid))
        if bad:
            raise ConfigError(f"method '{plan.method.name}': unknown augmentation key(s) {bad}; valid: "
                              f"{', '.join(aug_valid)}")
        params["augmentation"] = AugmentConfig(**params["augmentation"])
    params.setdefault("seed", cfg.experiment.seed)
    if cfg.embed.device and "device" not in params:
        params["device"] = cfg.embed.device
    try:
        return FinetuneConfig(method=plan.label, **params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"method '{plan.method.name}' (cnn): {e}") from e


def run_cnn_baseline(plan, cfg: ExperimentConfig, manifest: Manifest, ids: list[str], folder, *,
                     progress: bool = True, on_progress=None):
    """Train on the run's train rows (best epoch by validation loss), predict val + test, same table as heads."""
    from breastclip.finetune import finetune
    from breastclip.pipeline.methods import MethodOutcome

    t0 = time.perf_counter()
    fc = finetune_config(plan, cfg)
    keep = manifest.df["id"].isin(set(ids))
    sub = manifest.subset(keep.to_numpy())
    log.info("%s: fine-tuning %s end to end for up to %d epochs on %d training images", plan.label, fc.arch,
             fc.epochs, int((sub.df["split"] == "train").sum()))
    state = {"last": ""}

    def report(stage: str, i: int, n: int) -> None:
        if stage != state["last"]:
            state["last"] = stage
            log.debug("%s: %s", plan.label, stage)
        if on_progress is not None:
            on_progress(stage, i, n)

    result = finetune(sub, fc, folder / "model", overwrite=False, progress=report if progress else None)
    history = result.history.to_dict(orient="records") if isinstance(result.history, pd.DataFrame) else None
    pred = result.predictions.copy()
    pred["method"] = plan.label
    return MethodOutcome(plan.label, plan.method, None, folder, pred, history,
                         seconds=time.perf_counter() - t0, model=result)
