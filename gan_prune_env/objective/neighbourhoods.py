"""Local neighbourhoods on the teacher's learned manifold (METHOD 5).

Each teacher output is a potential *center*; its k nearest other outputs (in phi space) are its
*neighbours*; a Gaussian kernel with the median k-NN distance as bandwidth weights them, as one
kernel of a KDE over the teacher's output distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Neighbourhoods:
    """k-NN structure of a pool of teacher outputs.

    Attributes:
        neighbours: ``[N, k]`` pool indices of each center's neighbours (nearest first).
        distances: ``[N, k]`` phi-space distances to them.
        weights: ``[N, k]`` kernel weights ``exp(-d^2 / 2h^2)``, normalised per center.
        bandwidth: h, the median k-NN distance of the pool (or the configured value).
    """

    neighbours: torch.Tensor
    distances: torch.Tensor
    weights: torch.Tensor
    bandwidth: float

    @property
    def k(self) -> int:
        return self.neighbours.shape[1]

    def __len__(self) -> int:
        return self.neighbours.shape[0]


def build_neighbourhoods(
    features: torch.Tensor, k: int, bandwidth: float | None = None
) -> Neighbourhoods:
    """k-NN graph of ``features`` ``[N, D]`` (self excluded) and its kernel weights."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for a pool of {n} samples, got {k}")
    dist = torch.cdist(features.double(), features.double())
    dist.fill_diagonal_(float("inf"))
    distances, neighbours = torch.topk(dist, k, dim=1, largest=False)
    h = float(distances.median()) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"kernel bandwidth must be positive, got {h} (duplicate pool samples?)")
    weights = kernel_weights(distances, h)
    return Neighbourhoods(neighbours, distances.float(), weights.float(), h)


def kernel_weights(distances: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Gaussian kernel weights per row, normalised to sum to one (a softmax of -d^2/2h^2)."""
    return torch.softmax(-distances.double() ** 2 / (2 * bandwidth**2), dim=1)
