"""DistributedDataParallel helpers for fine-tuning, on top of the shared :class:`breastclip.distributed.DistContext`.

Each rank trains on its shard (DistributedSampler); gradients and the epoch loss are averaged across ranks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from breastclip.distributed import DistContext


def wrap(ctx: DistContext, model: nn.Module) -> nn.Module:
    """``model`` in DistributedDataParallel under torchrun; unchanged in a single process."""
    if not ctx.active:
        return model
    ids = [ctx.device.index] if ctx.device is not None and ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def train_sampler(ctx: DistContext, ds: Dataset, seed: int) -> DistributedSampler | None:
    """This rank's shuffled shard of ``ds``; None (plain loader) in a single process."""
    if not ctx.active:
        return None
    return DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)


def all_reduce_mean(ctx: DistContext, total: float, count: int) -> float:
    """Mean over every rank's samples."""
    if not ctx.active:
        return total / max(count, 1)
    import torch.distributed as dist

    on_cuda = ctx.device is not None and ctx.device.type == "cuda"
    t = torch.tensor([total, float(count)], dtype=torch.float64, device=ctx.device if on_cuda else "cpu")
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp_min(1))


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 where supported, else float16 on CUDA; None (full precision) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
