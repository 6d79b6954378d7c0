"""Pix2Pix update rule: conditional PatchGAN + L1 (Isola et al., 2017; the reference
``Pix2PixModel``)."""

from __future__ import annotations

import torch
from torch import nn

from gan_prune_env.losses import discriminator_terms, gan_loss, l1_loss
from gan_prune_env.teacher.base import Batch, GANTrainer, adam, build_networks, set_requires_grad
from gan_prune_env.teacher.config import TeacherTrainConfig


class Pix2PixTrainer(GANTrainer):
    """``D`` sees ``cat(input, image)`` (6 channels). Per step, as in the reference: first the
    discriminator update, then the generator update with ``w * GAN + lambda_l1 * L1`` (``w``: the
trainer's ``adversarial_weight``, 1 unless a warm-up is running).

    Loss names: ``D_real``, ``D_fake``, ``G_GAN``, ``G_L1`` (the L1 term before weighting).
    """

    family = "pix2pix"
    main_generator = "generator"

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        gan_mode: str = "vanilla",
        lambda_l1: float = 100.0,
    ) -> None:
        super().__init__(
            {"generator": generator, "discriminator": discriminator},
            {"generator": adam([generator], lr, betas),
             "discriminator": adam([discriminator], lr, betas)},
        )
        self.gan_mode = gan_mode
        self.lambda_l1 = lambda_l1

    @classmethod
    def from_config(cls, config: TeacherTrainConfig) -> Pix2PixTrainer:
        nets = build_networks(config)
        return cls(nets["generator"], nets["discriminator"], config.lr, config.betas,
                   config.resolved_gan_mode, config.lambda_l1)

    def train_step(self, batch: Batch) -> dict[str, float]:
        real_a, real_b = batch["A"], batch["B"]
        generator, discriminator = self.networks["generator"], self.networks["discriminator"]
        set_requires_grad([discriminator], True)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        with self.forward_precision():
            fake_b = generator(real_a)
            d_real, d_fake = discriminator_terms(discriminator, torch.cat([real_a, real_b], 1),
                                                 torch.cat([real_a, fake_b], 1), self.gan_mode)
        (0.5 * (d_fake + d_real)).backward()
        self.optimizers["discriminator"].step()

        set_requires_grad([discriminator], False)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        with self.forward_precision():
            g_gan = gan_loss(discriminator(torch.cat([real_a, fake_b], 1)), True, self.gan_mode)
            g_l1 = l1_loss(fake_b, real_b)
            extra, extra_terms = self.regularization(batch, fake_b)
        (self.adversarial_weight * g_gan + self.lambda_l1 * g_l1 + extra).backward()
        self.optimizers["generator"].step()
        set_requires_grad([discriminator], True)

        return {"D_real": d_real.item(), "D_fake": d_fake.item(), "G_GAN": g_gan.item(),
                "G_L1": g_l1.item(), **{k: v.item() for k, v in extra_terms.items()}}
