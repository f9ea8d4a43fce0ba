"""Multi-process training on torch.distributed (gloo on CPU, nccl on CUDA).

Each rank trains on its slice of every global batch; DistributedDataParallel averages the
gradients. The code store stays consistent by **all-gathering** each step's fresh codes:
every rank holds the whole store (N x d floats: 150 MiB at 1.2M codes of 32 dimensions,
small beside the images) and searches it for its own queries. The alternative, sharding the
store and merging each shard's top-K, saves that memory but adds a second all-gather of
candidates per step; it pays only when N x d no longer fits on one device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .config import check_device_name
from .errors import UsageError


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: Tensor) -> Tensor:
        """This rank's part of a global batch (every rank sees the same global order)."""
        return idx[self.rank:: self.world] if self.enabled else idx

    def all_gather(self, t: Tensor) -> Tensor:
        """Concatenate ``t`` from every rank along dim 0; sizes may differ between ranks."""
        if not self.enabled:
            return t
        size = torch.tensor([t.shape[0]], device=t.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
        padded[: t.shape[0]] = t
        parts = [torch.zeros_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])

    def sum(self, value: float, device: torch.device) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def shutdown(clean: bool = True) -> None:
    """Leave the process group: a rank that exits with the group still up can abort in
    the backend's destructors ("terminate called without an active exception"). After a
    failure (``clean=False``) there is no barrier: the other ranks may never reach it."""
    if dist.is_available() and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def _env_int(name: str, default: str | None = None) -> int:
    value = os.environ.get(name, default)
    if value is None:
        raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} is set but {name} is not; "
                         f"start several processes with --nproc N or torchrun, or unset "
                         f"WORLD_SIZE")
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not a whole number; "
                         f"unset it or start the processes with --nproc N") from None


def env_rank() -> int:
    """This process's rank as the environment gives it, without joining the group."""
    return _env_int("RANK") if _env_int("WORLD_SIZE", "1") > 1 else 0


def from_environment(device: str) -> DistContext:
    """Join the process group that ``torchrun`` (or ``--nproc``) describes in the
    environment, if any."""
    world = _env_int("WORLD_SIZE", "1")
    if world <= 1:
        return DistContext()
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", "0")
    if not 0 <= rank < world:
        raise UsageError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise UsageError(f"WORLD_SIZE={world} is set but {name} is not; start several "
                             f"processes with --nproc N or torchrun, or unset WORLD_SIZE")
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return DistContext(rank, world, local_rank)


def resolve_device(name: str, dist: DistContext | None = None) -> torch.device:
    """The torch device of ``--device``; a missing GPU is a usage error. Under several
    processes on CUDA each rank takes its own GPU."""
    check_device_name(name)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available; "
                         "use --device cpu")
    if name == "cuda" and dist is not None and dist.enabled:
        return torch.device("cuda", dist.local_rank)  # one GPU per process
    return torch.device(name)
