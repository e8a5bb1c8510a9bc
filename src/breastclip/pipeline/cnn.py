"""The end-to-end CNN baseline as a method of a run: :func:`breastclip.finetune.finetune` on the run's split."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from breastclip.finetune import FinetuneConfig, finetune
from breastclip.pipeline.methods import MethodOutcome, Plan

if TYPE_CHECKING:  # the context module imports the method step
    from breastclip.pipeline.context import RunContext, RunData

log = logging.getLogger("breastclip.run")


def run_cnn_baseline(ctx: RunContext, plan: Plan, data: RunData,
                     on_progress: Callable[[str, int, int], None] | None = None) -> MethodOutcome:
    """Train on the run's train rows (best epoch by validation loss), predict val + test, same table as heads."""
    t0 = time.perf_counter()
    fc: FinetuneConfig = plan.kind.build(plan.method, ctx.cfg, None)
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
