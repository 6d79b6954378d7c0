"""Quick quality number of a paired task: mean L1 between generated and target images."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def mean_l1(generator: nn.Module, dataset: Dataset, batch_size: int = 16,
            device: str = "cpu") -> float:
    """Mean absolute pixel difference (on the [-1, 1] scale) of ``generator(A)`` to ``B``,
    with the generator in eval mode; its mode is restored afterwards."""
    was_training = generator.training
    generator.eval()
    total, count = 0.0, 0
    try:
        for batch in DataLoader(dataset, batch_size=batch_size):
            output = generator(batch["A"].to(device))
            total += (output - batch["B"].to(device)).abs().mean(dim=(1, 2, 3)).sum().item()
            count += output.shape[0]
    finally:
        generator.train(was_training)
    if count == 0:
        raise ValueError("mean_l1 needs a non-empty dataset")
    return total / count
