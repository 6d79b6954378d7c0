"""Fitting a family's discriminators to its frozen generators.

A model trained with the reference code is sometimes shared as its generator alone
(``latest_net_G.pth``). Pruning needs a discriminator too: the env's density objective reads the
teacher's D features, and fine-tuning starts the pruned D from the teacher's. What stands in
for the missing one is a fresh discriminator trained with the family's own D loss against the
frozen generators' outputs on the training data; the generators are never updated (eval mode,
so not even BatchNorm statistics move).
"""

from __future__ import annotations

import torch
from torch import nn

from gan_prune_env.families import network_names
from gan_prune_env.losses import discriminator_terms
from gan_prune_env.teacher.base import Batch, GANTrainer, adam, set_requires_grad


def judged_pairs(family: str, networks: dict[str, nn.Module], batch: Batch
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Discriminator name -> (real input, generated input) of its update on ``batch``, with
    the generators' outputs computed without gradients."""
    real_a, real_b = batch["A"], batch["B"]
    with torch.no_grad():
        if family == "pix2pix":
            fake_b = networks["generator"](real_a)
            return {"discriminator": (torch.cat([real_a, real_b], 1),
                                      torch.cat([real_a, fake_b], 1))}
        return {"discriminator_B": (real_b, networks["generator_AB"](real_a)),
                "discriminator_A": (real_a, networks["generator_BA"](real_b))}


class DiscriminatorFitter(GANTrainer):
    """Trains the discriminators of ``networks`` (a whole family's, as in a teacher checkpoint)
    against its frozen generators. Loss names: ``D`` (Pix2Pix) or ``D_A``, ``D_B`` (CycleGAN,
    as in :class:`~gan_prune_env.teacher.CycleGANTrainer`)."""

    def __init__(self, family: str, networks: dict[str, nn.Module], lr: float = 2e-4,
                 betas: tuple[float, float] = (0.5, 0.999), gan_mode: str = "vanilla") -> None:
        self.family = family
        self.main_generator = network_names(family, "generator")[0]
        self.generators = [networks[n] for n in network_names(family, "generator")]
        discriminators = [networks[n] for n in network_names(family, "discriminator")]
        set_requires_grad(self.generators, False)
        super().__init__(dict(networks), {"discriminator": adam(discriminators, lr, betas)})
        self.gan_mode = gan_mode

    def train(self, mode: bool = True) -> None:
        """Discriminators follow ``mode``; the generators stay in eval mode."""
        super().train(mode)
        for generator in self.generators:
            generator.eval()

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        losses = {name: 0.5 * sum(discriminator_terms(self.networks[name], real, fake,
                                                      self.gan_mode))
                  for name, (real, fake) in judged_pairs(self.family, self.networks,
                                                         batch).items()}
        sum(losses.values()).backward()
        self.optimizers["discriminator"].step()
        names = {"discriminator": "D", "discriminator_A": "D_A", "discriminator_B": "D_B"}
        return {names[name]: loss.item() for name, loss in losses.items()}
