"""Several processes, one atlas: ``torchrun --nproc-per-node=N -m sitegen compute``.

Each rank takes its share of the work (probe chunks, featured images, patch
sets), keeps what it computed in memory, and hands it to rank 0, the only
process that writes the cache.  Each neuron's top k is merged exactly from
the ranks' own top k.  NCCL on GPUs, gloo on CPUs; without torchrun's
environment it is one process and none of this does anything.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from ..store.cache import Cache


class Group:
    def __init__(self, device: torch.device) -> None:
        """Join torchrun's group: NCCL when computing on GPUs, gloo on CPUs."""
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.started = False
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group(backend)
            self.started = True
        self.pending: list[tuple[str, str, dict[str, Any], bool]] = []

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def device(self, choice: torch.device) -> torch.device:
        """Each rank on its own GPU."""
        if self.active and choice.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return choice

    def share(self, work: list) -> list:
        """This rank's part of a work list that every rank built the same way."""
        return work[self.rank::self.world] if self.active else work

    def write(self, cache: Cache, kind: str, key: str, members: dict[str, Any], add: bool = False) -> None:
        """Write a cache entry, or keep it for rank 0 to write at the next :meth:`flush`."""
        if self.active:
            self.pending.append((kind, key, members, add))
        elif add:
            cache.add(kind, key, members)
        else:
            cache.put(kind, key, members)

    def flush(self, cache: Cache) -> None:
        """Rank 0 writes every rank's pending entries; then all ranks go on together."""
        if not self.active:
            return
        gathered: list | None = [None] * self.world if self.leader else None
        dist.gather_object(self.pending, gathered, dst=0)
        self.pending = []
        if gathered is not None:  # on the leader
            for entries in gathered:
                for kind, key, members, add in entries:
                    (cache.add if add else cache.put)(kind, key, members)
        dist.barrier()

    def gather_to_all(self, value: Any) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.active:
            return [value]
        gathered: list = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def close(self) -> None:
        if self.started:
            dist.barrier()
            dist.destroy_process_group()
