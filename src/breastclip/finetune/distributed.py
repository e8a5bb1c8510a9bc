"""Device choice and DistributedDataParallel plumbing; a no-op in a single process.

Under ``torchrun --nproc_per_node=N`` the environment holds ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; each rank
takes ``cuda:LOCAL_RANK`` (NCCL) or runs on CPU (gloo), trains on its shard (DistributedSampler), and rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler


@dataclass
class DistContext:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistContext:
    """Pick the device; join the process group when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistContext(dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local)
    here = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        here = True
    return DistContext(torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu"), rank, world, here)


def teardown(ctx: DistContext) -> None:
    if ctx.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def wrap(ctx: DistContext, model: nn.Module) -> nn.Module:
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def train_sampler(ctx: DistContext, ds: Dataset, seed: int) -> DistributedSampler | None:
    if not ctx.distributed:
        return None
    return DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(ctx: DistContext, total: float, count: int) -> float:
    """Mean over every rank's samples."""
    if not ctx.distributed:
        return total / max(count, 1)
    t = torch.tensor([total, float(count)], dtype=torch.float64,
                     device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp_min(1))


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 where supported, else float16 on CUDA; None (full precision) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
