"""Multi-process data-parallel training with PyTorch's own DistributedDataParallel.

Launch with ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``)::

    torchrun --nproc_per_node=4 -m live_deepz.cli train --data a.tif b.tif -o models/mine

Without those variables everything here degrades to a single process (rank 0 of 1), so the
trainer has one code path. Conventions:

* backend ``nccl`` when training on CUDA, else ``gloo`` (CPU, e.g. the tests);
* one device per process: ``cuda:LOCAL_RANK``;
* ``--batch`` is the **global** batch: every rank draws the same global batch (same seed)
  and takes its own slice ``batch[rank::world_size]`` (:func:`shard`), so with averaged
  gradients a run on N processes follows the single-process run on the same global batch;
* only rank 0 writes files and shows progress (:attr:`DistEnv.is_main`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "DistEnv",
    "all_reduce_sum",
    "barrier",
    "cleanup",
    "env_world_size",
    "init_distributed",
    "shard",
    "wrap_ddp",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    """``nccl`` / ``gloo`` when a process group was started, else None."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_type: str = "cpu") -> DistEnv:
    """Start the process group if launched by torchrun with more than one process.

    ``device_type`` is ``"cuda"`` or ``"cpu"``; on CUDA this also selects
    ``cuda:LOCAL_RANK`` as the current device.
    """
    world = env_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistEnv()
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistEnv(rank=rank, world_size=world, local_rank=local, backend=backend)


def cleanup(env: DistEnv) -> None:
    """Tear the process group down (no-op for a single process)."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def shard(items: Sequence[T] | Any, env: DistEnv) -> Any:
    """This rank's share of a global batch / list: ``items[rank::world_size]``."""
    return items[env.rank :: env.world_size]


def all_reduce_sum(values: Sequence[float], env: DistEnv, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64)."""
    if not env.distributed:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def wrap_ddp(module: torch.nn.Module, env: DistEnv, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else the module itself.

    DDP broadcasts rank 0's parameters at construction, so every rank starts identical.
    """
    if not env.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)
