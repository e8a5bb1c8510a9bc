"""torch.distributed plumbing for ``torchrun --nproc_per_node N``, shared by embedding and fine-tuning.

Under torchrun the environment holds ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``: each rank joins the process group
(NCCL on CUDA with ``cuda:LOCAL_RANK``, gloo on CPU), does its share of the work, and rank 0 writes. In a single
process every collective is a no-op. Multi-node: ``--nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT``,
with the cache on a file system every node sees (docs/multinode.md, examples/slurm_embed.sbatch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class DistContext:
    """Where this process stands: its device (None when the caller chose none), rank and world size."""

    device: torch.device | None = None
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """List of every rank's ``obj`` (rank order); ``[obj]`` when single-process."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Leave the process group if this context joined it."""
        if self.initialized_here:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.initialized_here = False


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_distributed(device: str | torch.device | None = None) -> DistContext:
    """Join (or reuse) the process group torchrun describes in the environment, or return a single-process context.

    Single process: ``ctx.device`` is ``device`` as given (None for None/"auto", so callers apply their own default).
    Under torchrun: ``cuda:LOCAL_RANK`` when CUDA is available and ``device`` is None/"auto"/"cuda[:N]", else
    ``device`` (e.g. cpu)."""
    import torch.distributed as dist

    joined = dist.is_available() and dist.is_initialized()
    if not joined and not launched_by_torchrun():
        return DistContext(None if device is None or str(device) == "auto" else torch.device(device))
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank() if joined else 0))
    dev = _rank_device(device, local)
    if joined:
        return DistContext(dev, dist.get_rank(), dist.get_world_size(), local, False)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(dev, dist.get_rank(), dist.get_world_size(), local, True)


def _rank_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    if device is None or str(device) == "auto" or torch.device(device).type == "cuda":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(device)
