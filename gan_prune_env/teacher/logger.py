"""TensorBoard output of a training run: loss scalars and preview image grids."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from gan_prune_env.teacher.base import GANTrainer
from gan_prune_env.teacher.images import image_grid


class TrainLogger:
    """Writes ``loss/<name>`` scalars and a ``preview`` grid (input | output | target).

    Args:
        log_dir: TensorBoard event folder.
        start_step: first step of this (possibly resumed) run; events at or after it left by an
            interrupted run are discarded, so curves do not double back.
        preview: fixed ``(inputs, targets)`` batch shown in every preview, or None for none.
    """

    def __init__(self, log_dir: str | Path, start_step: int = 0,
                 preview: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.writer = SummaryWriter(str(log_dir), purge_step=start_step or None)
        self.preview = preview

    def scalars(self, step: int, values: dict[str, float], prefix: str = "loss") -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def images(self, step: int, trainer: GANTrainer) -> None:
        if self.preview is None:
            return
        inputs, targets = self.preview
        grid = image_grid([inputs, trainer.translate(inputs), targets])
        self.writer.add_image("preview", grid, step)

    def close(self) -> None:
        self.writer.close()


class NullLogger:
    """What ranks other than 0 log to in a distributed run: nothing."""

    def scalars(self, step: int, values: dict[str, float], prefix: str = "loss") -> None:
        pass

    def images(self, step: int, trainer: GANTrainer) -> None:
        pass

    def close(self) -> None:
        pass
