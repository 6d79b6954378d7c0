"""Data-parallel training across processes started by ``torchrun`` (teachers, fine-tunes,
supernets: everything ``teacher.loop.train_teacher`` trains).

``torchrun --nproc_per_node N -m gan_prune_env.train_teacher ...`` (or any command that trains)
starts N processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`current` joins them
into a process group (``nccl`` for CUDA devices, ``gloo`` on CPU) and every rank then:

* draws the same global batch stream as a single process would and trains on its own rows of
  each batch (``batch_size`` stays the global batch, which must divide by N), so a run with N
  processes sees the same samples in the same order as one with 1;
* averages gradients over the ranks before every optimiser step: the all-reduce DDP performs.
  It is done by an optimiser pre-step hook rather than by wrapping the networks in
  ``DistributedDataParallel``: a GAN update runs several forwards of each network per step with
  the other network frozen, which DDP's reducer does not follow (it expects one forward and one
  backward per wrapped module per step). The arithmetic is DDP's: ``sum(grads) / N``;
* starts from rank 0's weights (broadcast, as DDP does).

Rank 0 alone writes TensorBoard, train states and the final file; every rank resumes from the
same train state. Results equal the single-process run at the same global batch up to float
rounding when the networks treat samples independently (InstanceNorm, no dropout). BatchNorm
normalises each rank's rows with their own statistics (as the reference code's DataParallel
did), so BatchNorm networks differ slightly from the single-process run, unless
``sync_batchnorm`` (:meth:`Distributed.synchronised_batchnorm`, GPUs only) normalises with the
whole global batch's statistics.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Distributed:
    """This process's place among the ranks (``world_size`` 1: no distribution)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and logs."""
        return self.rank == 0

    def device(self, device: str) -> str:
        """``device`` for this rank: each rank on its own GPU (``cuda:<local_rank>``)."""
        if self.enabled and device.startswith("cuda") and ":" not in device:
            return f"cuda:{self.local_rank}"
        return device

    def check_batch(self, batch_size: int) -> int:
        """Rows of each global batch this rank trains on."""
        if batch_size % self.world_size:
            raise ValueError(f"batch_size {batch_size} is the global batch and must divide by "
                             f"the {self.world_size} processes: use a multiple of "
                             f"{self.world_size}")
        return batch_size // self.world_size

    def shard(self, batch: dict[str, Any]) -> dict[str, Any]:
        """This rank's rows of a global batch (tensors; other entries unchanged)."""
        if not self.enabled:
            return batch
        rows = self.check_batch(next(v for v in batch.values()
                                     if isinstance(v, torch.Tensor)).shape[0])
        part = slice(self.rank * rows, (self.rank + 1) * rows)
        return {k: v[part] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def broadcast_from_main(self, networks: Iterable[nn.Module]) -> None:
        """Every rank starts from rank 0's parameters and buffers."""
        if not self.enabled:
            return
        for network in networks:
            for tensor in (*network.parameters(), *network.buffers()):
                dist.broadcast(tensor.data, src=0)

    def average_gradients_before_steps(self, optimizers: Iterable[torch.optim.Optimizer]
                                       ) -> list:
        """Register, on each optimiser, a pre-step hook that replaces every gradient by its
        mean over the ranks. Returns the hook handles."""
        if not self.enabled:
            return []
        world = self.world_size

        def average(optimizer: torch.optim.Optimizer, *_: Any) -> None:
            grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                     if p.grad is not None]
            if not grads:
                return
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= world
            offset = 0
            for grad in grads:
                grad.copy_(flat[offset: offset + grad.numel()].view_as(grad))
                offset += grad.numel()

        return [optimizer.register_step_pre_hook(average) for optimizer in optimizers]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each scalar over the ranks (loss logs of the whole global batch)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(tensor)
        return {k: float(v) / self.world_size for k, v in zip(keys, tensor.tolist())}

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextmanager
    def synchronised_batchnorm(self, networks: Iterable[nn.Module], device: str
                               ) -> Iterator[None]:
        """Inside, every BatchNorm of ``networks`` is a ``SyncBatchNorm`` sharing its parameters
        and buffers, so in training the ranks normalise with the statistics of the whole global
        batch, as one process at that batch does; outside, the original modules are back
        (checkpoints, slicing and exports see plain BatchNorm). In one process there is nothing
        to synchronise and nothing changes. PyTorch's ``SyncBatchNorm`` runs on GPUs only, so
        CPU ranks are refused here, before a step is taken, rather than inside the first one.
        """
        if not self.enabled:
            yield
            return
        if not device.startswith("cuda"):
            raise ValueError(f"sync_batchnorm needs CUDA devices, not {device!r}: PyTorch's "
                             "SyncBatchNorm refuses CPU tensors. On CPU leave it off (each "
                             "rank then normalises its own rows of the global batch)")
        swapped = [(parent, name, child) for network in networks
                   for parent in network.modules() for name, child in parent.named_children()
                   if isinstance(child, _BatchNorm) and not isinstance(child, nn.SyncBatchNorm)]
        hooked = [name for _, name, child in swapped
                  if child._forward_hooks or child._forward_pre_hooks]
        if hooked:
            raise ValueError(f"BatchNorm layers {hooked} carry forward hooks, which a "
                             "SyncBatchNorm in their place would not run: attach them to other "
                             "layers or leave sync_batchnorm off")
        for parent, name, child in swapped:
            # the converted layer holds the very parameters and buffers of ``child``
            setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        try:
            yield
        finally:
            for parent, name, child in swapped:
                setattr(parent, name, child)


SINGLE = Distributed()


def _leave_process_group() -> None:
    """Destroy the process group while the interpreter is still whole. A rank that exits
    with its gloo group alive can abort (SIGABRT, "terminate called without an active
    exception") when the group's worker threads are torn down during interpreter finalisation,
    failing a run whose work was done."""
    if dist.is_initialized():
        dist.destroy_process_group()


def current(device: str = "cpu") -> Distributed:
    """This process's :class:`Distributed`, joining the process group on first use when
    ``torchrun`` (or another launcher setting ``RANK``/``WORLD_SIZE``) started it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    missing = [name for name in RANK_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world_size} but {missing} are not set: start the "
                           "processes with torchrun (torchrun --nproc_per_node N ...)")
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(_leave_process_group)
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ["LOCAL_RANK"]))


__all__ = ["Distributed", "SINGLE", "current"]
