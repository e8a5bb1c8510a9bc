"""torch.distributed plumbing for ``torchrun --nproc_per_node N``: ranks split the work, rank 0 merges the index.

Launch: ``torchrun --nproc_per_node 4 -m breastclip embed manifest.csv --backbone clip-vit-b32`` (multi-node: add
``--nnodes/--node_rank/--rdzv_endpoint`` as usual). The cache folder must be shared by every rank (same path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistContext:
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

    def all_gather(self, obj):
        """List of every rank's ``obj`` (rank order); ``[obj]`` when single-process."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.initialized_here = False


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_distributed(device: str | torch.device | None = None) -> tuple[DistContext, torch.device | None]:
    """Join (or start) the process group that torchrun describes in the environment; gloo on CPU, nccl on CUDA.

    Returns the context and the device this rank should use (``cuda:LOCAL_RANK`` on GPU machines)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return DistContext(rank, world, local, False), _rank_device(device, local)
    if not launched_by_torchrun():
        return DistContext(), None if device is None else torch.device(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _rank_device(device, local)
    backend = "nccl" if dev is not None and dev.type == "cuda" else "gloo"
    if dev is not None and dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, True), dev


def _rank_device(device, local_rank: int) -> torch.device:
    if device is None or str(device) in ("auto", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(device)
