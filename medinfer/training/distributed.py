"""Distributed data parallel training when launched by ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with more than one process the trainer joins
the process group (``nccl`` on GPUs, ``gloo`` on the CPU) and wraps the model in
``DistributedDataParallel``. Every global batch is the same as in a single-process run (same permutation
of the data, same batch boundaries) and is dealt out to the ranks — rank r takes rows r, r + W, r + 2W,
... of it — so the ranks see disjoint shards whose union is the global batch; gradients are averaged
across ranks, which for equal shards is the gradient of the mean loss over the global batch. A global
batch is cut to a multiple of the world size (at most W − 1 samples of an epoch's last batch are left out).
BatchNorm statistics are per rank, so weights still differ slightly from a single-process run. Only rank
0 validates and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True, kw_only=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch of indices (empty when the batch is smaller than the world)."""
        usable = len(batch) - len(batch) % self.world
        return batch[:usable][self.rank :: self.world]

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def setup(device: str | None) -> tuple[Dist, str]:
    """Join the process group when torchrun launched several processes; returns it and the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if world <= 1:
        return Dist(), device or ("cuda" if cuda else "cpu")
    dist = Dist(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(dist.local_rank)
        return dist, f"cuda:{dist.local_rank}"
    return dist, "cpu"


def teardown(dist: Dist) -> None:
    if dist.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
