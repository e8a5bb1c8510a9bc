"""The end-to-end CNN baseline as a method of a run: :func:`breastclip.finetune.finetune` on the run's split."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from breastclip.config import ConfigError, ExperimentConfig
from breastclip.finetune import AugmentConfig, FinetuneConfig, finetune
from breastclip.pipeline.methods import MethodOutcome, Plan

if TYPE_CHECKING:  # the context module imports the method step
    from breastclip.pipeline.context import RunContext, RunData

log = logging.getLogger("breastclip.run")


def finetune_config(plan: Plan, cfg: ExperimentConfig) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from the method's params (unknown keys are errors naming the valid ones)."""
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


def run_cnn_baseline(ctx: RunContext, plan: Plan, data: RunData,
                     on_progress: Callable[[str, int, int], None] | None = None) -> MethodOutcome:
    """Train on the run's train rows (best epoch by validation loss), predict val + test, same table as heads."""
    t0 = time.perf_counter()
    fc = finetune_config(plan, ctx.cfg)
    keep = data.manifest.df["id"].isin(set(data.ids))
    sub = data.manifest.subset(keep.to_numpy())
    log.info("%s: fine-tuning %s end to end for up to %d epochs on %d training images", plan.label, fc.arch,
             fc.epochs, int((sub.df["split"] == "train").sum()))
    state = {"last": ""}

    def report(stage: str, i: int, n: int) -> None:
        if stage != state["last"]:
            state["last"] = stage
            log.debug("%s: %s", plan.label, stage)
        if on_progress is not None:
            on_progress(stage, i, n)

    result = finetune(sub, fc, ctx.folder.model_dir(plan.label), overwrite=False,
                      progress=report if ctx.progress else None)
    pred = result.predictions.copy()
    pred["method"] = plan.label
    return MethodOutcome(plan.label, plan.method, None, ctx.folder.method_dir(plan.label), pred,
                         result.history.to_dict(orient="records"), seconds=time.perf_counter() - t0, model=result)
