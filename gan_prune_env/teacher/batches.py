"""Reproducible, resumable stream of training batches.

Batch ``s`` of a run is fully determined by (seed, s): its epoch is ``s // steps_per_epoch``,
the epoch's shuffle is a permutation seeded by (seed, epoch), and the dataset's own augmentation
is seeded by (seed, epoch, index). Resuming at step ``s`` therefore needs no saved loader state:
the stream restarts inside the right epoch at the right position.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from gan_prune_env.data import PairDataset

_SHUFFLE_STREAM = 0x5EED  # keeps shuffling apart from the dataset's (seed, epoch, index) streams


def steps_per_epoch(dataset: PairDataset, batch_size: int) -> int:
    """Full batches per pass over ``dataset`` (the last partial batch is dropped)."""
    steps = len(dataset) // batch_size
    if steps == 0:
        raise ValueError(f"the train split has {len(dataset)} items, fewer than one batch "
                         f"of {batch_size}")
    return steps


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled item order of ``epoch``."""
    return np.random.default_rng((seed, epoch, _SHUFFLE_STREAM, 1)).permutation(size)


def batch_stream(
    dataset: PairDataset, batch_size: int, seed: int, start_step: int = 0, num_workers: int = 0
) -> Iterator[dict]:
    """Endless iterator of training batches starting at global step ``start_step``."""
    per_epoch = steps_per_epoch(dataset, batch_size)
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        dataset.set_epoch(epoch)
        order = epoch_order(len(dataset), seed, epoch)[skip * batch_size: per_epoch * batch_size]
        loader = DataLoader(
            dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=num_workers,
            drop_last=True,
            # A private generator: the loader's worker seed must not consume global RNG.
            generator=torch.Generator().manual_seed(seed),
        )
        yield from loader
        epoch, skip = epoch + 1, 0
