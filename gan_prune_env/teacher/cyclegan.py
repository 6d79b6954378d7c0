"""CycleGAN update rule: two generators, two discriminators, least-squares GAN + cycle +
identity losses, image pools (Zhu et al., 2017; reference ``CycleGANModel``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gan_prune_env.losses import gan_loss, l1_loss
from gan_prune_env.teacher.base import Batch, GANTrainer, adam, build_networks, set_requires_grad
from gan_prune_env.teacher.config import TeacherTrainConfig
from gan_prune_env.teacher.image_pool import ImagePool


class CycleGANTrainer(GANTrainer):
    """Per step, as in the reference: the generator update first, then both discriminators on
    pooled fakes. ``discriminator_B`` judges domain B (``generator_AB``'s outputs), the
    reference's ``netD_A``.

    Loss names: ``G_AB``/``G_BA`` (adversarial), ``cycle_A`` (``|G_BA(G_AB(a)) - a|``),
    ``cycle_B``, ``idt_AB`` (``|G_AB(b) - b|``), ``idt_BA``, ``D_A``, ``D_B``; the reported cycle
    and identity terms are before weighting.
    """

    family = "cyclegan"
    main_generator = "generator_AB"

    def __init__(
        self,
        generator_AB: nn.Module,
        generator_BA: nn.Module,
        discriminator_A: nn.Module,
        discriminator_B: nn.Module,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        gan_mode: str = "lsgan",
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        seed: int = 0,
    ) -> None:
        super().__init__(
            {"generator_AB": generator_AB, "generator_BA": generator_BA,
             "discriminator_A": discriminator_A, "discriminator_B": discriminator_B},
            {"generator": adam([generator_AB, generator_BA], lr, betas),
             "discriminator": adam([discriminator_A, discriminator_B], lr, betas)},
        )
        self.gan_mode = gan_mode
        self.lambda_cycle = lambda_cycle
        self.lambda_identity = lambda_identity
        self.pools = {"A": ImagePool(pool_size, seed=seed),
                      "B": ImagePool(pool_size, seed=seed + 1)}

    @classmethod
    def from_config(cls, config: TeacherTrainConfig) -> CycleGANTrainer:
        nets = build_networks(config)
        return cls(nets["generator_AB"], nets["generator_BA"], nets["discriminator_A"],
                   nets["discriminator_B"], config.lr, config.betas, config.resolved_gan_mode,
                   config.lambda_cycle, config.lambda_identity, config.pool_size, config.seed)

    def _discriminator_loss(self, discriminator: nn.Module, real: torch.Tensor,
                            fake: torch.Tensor) -> torch.Tensor:
        """Reference ``backward_D_basic``: average of the real and (detached) fake terms."""
        real_term = gan_loss(discriminator(real), True, self.gan_mode)
        fake_term = gan_loss(discriminator(fake.detach()), False, self.gan_mode)
        return 0.5 * (real_term + fake_term)

    def train_step(self, batch: Batch) -> dict[str, float]:
        real_a, real_b = batch["A"], batch["B"]
        g_ab, g_ba = self.networks["generator_AB"], self.networks["generator_BA"]
        d_a, d_b = self.networks["discriminator_A"], self.networks["discriminator_B"]
        set_requires_grad([d_a, d_b], False)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        with self.forward_precision():
            fake_b, fake_a = g_ab(real_a), g_ba(real_b)
            losses = {
                "G_AB": gan_loss(d_b(fake_b), True, self.gan_mode),
                "G_BA": gan_loss(d_a(fake_a), True, self.gan_mode),
                "cycle_A": l1_loss(g_ba(fake_b), real_a),
                "cycle_B": l1_loss(g_ab(fake_a), real_b),
            }
            total = (self.adversarial_weight * (losses["G_AB"] + losses["G_BA"])
                     + self.lambda_cycle * (losses["cycle_A"] + losses["cycle_B"]))
            if self.lambda_identity > 0:
                losses["idt_AB"] = l1_loss(g_ab(real_b), real_b)
                losses["idt_BA"] = l1_loss(g_ba(real_a), real_a)
                weight = self.lambda_cycle * self.lambda_identity
                total = total + weight * (losses["idt_AB"] + losses["idt_BA"])
            extra, extra_terms = self.regularization(batch, fake_b)
            losses.update(extra_terms)
        (total + extra).backward()
        self.optimizers["generator"].step()

        set_requires_grad([d_a, d_b], True)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        with self.forward_precision():  # the pools keep float32 images, whatever the precision
            losses["D_B"] = self._discriminator_loss(d_b, real_b,
                                                     self.pools["B"].query(fake_b.float()))
            losses["D_A"] = self._discriminator_loss(d_a, real_a,
                                                     self.pools["A"].query(fake_a.float()))
        (losses["D_A"] + losses["D_B"]).backward()
        self.optimizers["discriminator"].step()
        return {name: value.item() for name, value in losses.items()}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(),
                "pools": {name: pool.state_dict() for name, pool in self.pools.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        for name, pool in self.pools.items():
            pool.load_state_dict(state["pools"][name])
