"""Plumbing shared by every paired dataset: epochs, seeded randomness, size cap and direction."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gan_prune_env.data.config import DataConfig
from gan_prune_env.data.transforms import sample_rng

Sample = dict[str, Any]
"""``{"A": input tensor, "B": target tensor, "A_path": str, "B_path": str}``."""


class PairDataset(Dataset[Sample]):
    """Base class of the datasets; subclasses implement ``_num_items`` and ``_pair``.

    ``_pair`` returns the item in the dataset's native A/B orientation, drawing any randomness
    from the generator it is given; this class applies ``config.direction`` so that ``"A"`` is
    always the generator input. Only the ``"train"`` split is augmented.
    """

    def __init__(self, split: str, config: DataConfig) -> None:
        self.split = split
        self.config = config
        self.train = split == "train"
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops/flips/pairings ``__getitem__`` returns.

        Call it before iterating a DataLoader (workers copy the dataset when iteration starts).
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self._num_items()
        cap = self.config.max_items
        return n if cap is None else min(n, cap)

    def __getitem__(self, index: int) -> Sample:
        return self.item(self.epoch, index)

    def item(self, epoch: int, index: int) -> Sample:
        """Item ``index`` as epoch ``epoch`` augments it, whatever epoch is set: a loader that
        serves several epochs asks for each item with its own."""
        index = operator.index(index)
        if not 0 <= index < len(self):
            name = type(self).__name__
            raise IndexError(f"index {index} out of range for {name} of size {len(self)}")
        rng = sample_rng(self.config.seed, epoch, index)
        a, b, a_path, b_path = self._pair(index, rng)
        if self.config.direction == "BtoA":
            a, b, a_path, b_path = b, a, b_path, a_path
        return {"A": a, "B": b, "A_path": a_path, "B_path": b_path}

    def image_files(self) -> list[Path]:
        """Every image file the dataset reads (none for generated data), for checks up front."""
        return []

    def _num_items(self) -> int:
        raise NotImplementedError

    def _pair(
        self, index: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, str, str]:
        raise NotImplementedError
