"""Adversarial and reconstruction losses of Pix2Pix and CycleGAN.

``gan_loss`` matches the reference ``GANLoss`` (pytorch-CycleGAN-and-pix2pix): ``"vanilla"`` is
binary cross-entropy on discriminator logits, ``"lsgan"`` is the mean squared distance of the
predictions to 1 (real) or 0 (fake). On top of the reference it accepts optional per-sample
weights, which the kernel-weighted adversarial objective of the local-density method needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GAN_MODES = ("vanilla", "lsgan")


def _per_sample(prediction: torch.Tensor, target_is_real: bool, mode: str) -> torch.Tensor:
    """Loss of every sample, averaged over its patches: shape ``[N]``."""
    target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
    if mode == "vanilla":
        elementwise = F.binary_cross_entropy_with_logits(prediction, target, reduction="none")
    elif mode == "lsgan":
        elementwise = F.mse_loss(prediction, target, reduction="none")
    else:
        raise ValueError(f"gan mode {mode!r} is not one of {GAN_MODES}")
    return elementwise.reshape(prediction.shape[0], -1).mean(dim=1)


def gan_loss(
    prediction: torch.Tensor,
    target_is_real: bool,
    mode: str = "vanilla",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Adversarial loss of discriminator outputs against an all-real or all-fake target.

    Args:
        prediction: discriminator output ``[N, ...]`` (PatchGAN logits ``[N, 1, h, w]``).
        target_is_real: compare against "real" (1) or "fake" (0).
        mode: ``"vanilla"`` (BCE with logits) or ``"lsgan"`` (least squares).
        weights: optional non-negative per-sample weights ``[N]``; they are normalised to sum to
            one, so the result is the weighted mean over samples of each sample's mean over
            patches. Without weights this equals the reference's plain mean.

    Returns:
        A scalar tensor.
    """
    per_sample = _per_sample(prediction, target_is_real, mode)
    if weights is None:
        return per_sample.mean()
    weights = weights.reshape(-1).to(per_sample)
    if weights.shape[0] != per_sample.shape[0]:
        raise ValueError(f"expected {per_sample.shape[0]} sample weights, got {weights.shape[0]}")
    total = weights.sum()
    if not torch.isfinite(total) or total <= 0 or bool((weights < 0).any()):
        raise ValueError("sample weights must be finite, non-negative and not all zero")
    return (per_sample * (weights / total)).sum()


class GANLoss(nn.Module):
    """Module form of :func:`gan_loss` with the mode fixed at construction (reference API)."""

    def __init__(self, mode: str = "vanilla") -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"gan mode {mode!r} is not one of {GAN_MODES}")
        self.mode = mode

    def forward(
        self, prediction: torch.Tensor, target_is_real: bool, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        return gan_loss(prediction, target_is_real, self.mode, weights)


def discriminator_terms(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                        mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(real term, fake term)`` of a discriminator update: what it says of real images
    against "real", of (detached) generated images against "fake". The reference's Pix2Pix
    ``backward_D`` minimises their mean; as there, the fake batch goes through first (the order
    in which a BatchNorm discriminator updates its running statistics)."""
    fake_term = gan_loss(discriminator(fake.detach()), False, mode)
    return gan_loss(discriminator(real), True, mode), fake_term


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (pixel units of the [-1, 1] image range)."""
    return F.l1_loss(output, target)
