"""A discriminator supernet: the env's critic, trained to judge at every width of its space.

Why. The env's generator reward judges G's outputs with genD's *pruned* discriminator. With the
teacher's weights a pruned D's adversarial verdicts rank G architectures against fine-tuning
(Spearman -0.21 and -0.32 with the final FID over two sets of 16 architectures on the default
task, where the whole D's verdicts rank them at +0.30 and +0.59; ``docs/RESULTS.md``, session
49): the peer's pruning is noise in G's reward. MGGC prunes G and D together, so each of D's
sub-networks should be a critic in its own right. This trains them the way the generator
supernet trains G's (the sandwich rule), on the env's own adversarial game:

* the critic starts as the env's center-conditioned discriminator (Pix2Pix's conditional
  PatchGAN, the teacher's weights); its sub-networks are the env's D architectures (the same
  channel ranking; the supernet file records it and the env checks it);
* every step pairs each of the step's generator sub-networks (largest, smallest, random) with a
  discriminator sub-network of the same place in D's own sandwich, on ``centers`` neighbourhoods
  of the objective's pool drawn for it: the objective's discriminator loss (real pairs (center,
  teacher neighbour), fake pairs (center, that G sub-network's output), kernel-weighted), the
  losses summed into one Adam step;
* the critic stays in eval mode: its BatchNorm layers normalise with the teacher's running
  statistics while training, exactly as the env (which never recalibrates D) judges with it;
  only weights and affine parameters learn;
* it is a critic only: the generator supernet is not trained against it (its own loss is
  unchanged, so with the same settings and seed it trains the same G as without a critic).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gan_prune_env.objective import LocalDensityObjective, NeighbourhoodBatch, TeacherPool
from gan_prune_env.pruning import ChannelMasker, ChannelSpace


class CriticSandwich:
    """The discriminator supernet's side of a supernet step (a trainer extension: its
    neighbourhood and architecture draws resume exactly).

    Args:
        critic: the center-conditioned discriminator being trained (a trainer network).
        space: the env's channel space of that discriminator.
        sampler: draws D's sub-networks (a ``SandwichSampler`` over ``space``; not imported:
            the package imports this module).
        objective, pool: the env's objective and its training pool (neighbourhoods).
        centers: neighbourhoods per sub-network and step.
        seed: of the neighbourhood draws.
    """

    def __init__(self, critic: nn.Module, space: ChannelSpace, sampler: Any,
                 objective: LocalDensityObjective, pool: TeacherPool, centers: int,
                 seed: int) -> None:
        self.critic, self.sampler = critic, sampler
        self.masker = ChannelMasker(critic, space)
        self.objective, self.pool, self.centers = objective, pool, centers
        self.rng = torch.Generator().manual_seed(seed)

    def draw(self) -> NeighbourhoodBatch:
        """Neighbourhoods for one generator sub-network's outputs to be judged on."""
        chosen = torch.randperm(len(self.pool), generator=self.rng)[: self.centers]
        return self.pool.batch(chosen)

    def loss(self, judged: list[tuple[NeighbourhoodBatch, torch.Tensor]]
             ) -> tuple[torch.Tensor, dict[str, list[float]]]:
        """The mean over the step's pairs of the objective's discriminator loss, each
        generator sub-network's outputs (``judged``, in sandwich order) judged by the
        discriminator sub-network of the same place; gradients flow into the critic only."""
        architectures = self.sampler.step_architectures()
        if len(architectures) != len(judged):
            raise ValueError(f"{len(judged)} generator outputs for {len(architectures)} "
                             "discriminator sub-networks")
        self.critic.eval()  # the teacher's running statistics, as the env judges
        total, losses = torch.zeros(()), {}
        try:
            for (name, counts), (batch, outputs) in zip(architectures, judged):
                self.masker.set_counts(counts)
                loss, parts = self.objective.discriminator_loss(self.critic, batch, outputs)
                losses.setdefault(f"D_density_{name}", []).append(parts["d_loss"])
                total = total + loss / len(architectures)
        finally:
            self.masker.reset()
        return total, losses

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.rng.set_state(state["rng"])

    def remove(self) -> None:
        self.masker.remove()


__all__ = ["CriticSandwich"]
