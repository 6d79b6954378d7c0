"""The fixed feature space phi in which teacher-manifold neighbourhoods are measured (METHOD 5).

``discriminator`` (default): spatially pooled activations of the *frozen teacher* discriminator,
a space the teacher pair already uses to tell real from generated images. ``pixels``: images
average-pooled to a small size, a model-free alternative. Both are differentiable in the image,
so the density term can train a student through them.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_MAPS = ("discriminator", "pixels")


class DiscriminatorFeatures(nn.Module):
    """Mean and std over space of every LeakyReLU output of a frozen PatchGAN.

    For a conditional (6-channel) discriminator the generator input is fed beside the image,
    as the teacher discriminator saw it in training.
    """

    def __init__(self, discriminator: nn.Module, conditional: bool) -> None:
        super().__init__()
        self.net = copy.deepcopy(discriminator).eval().requires_grad_(False)
        self.conditional = conditional
        self._taps = [m for m in self.net.modules() if isinstance(m, nn.LeakyReLU)]
        if not self._taps:
            raise ValueError("discriminator features need a network with LeakyReLU activations")

    def train(self, mode: bool = True) -> DiscriminatorFeatures:
        return super().train(False)  # frozen: BatchNorm statistics never move

    def forward(self, images: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.cat([inputs, images], 1) if self.conditional else images
        captured: list[torch.Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _i, out: captured.append(out))
                   for m in self._taps]
        try:
            self.net(x)
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat([spatial_mean_std(a) for a in captured], 1)


def spatial_mean_std(activations: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and (unbiased) std over space, in float32, side by side.

    Two passes (the mean, then the centred squares) rather than ``Tensor.std``: on the
    channels-last activations the env scores with, its one-pass reduction is 2-10x slower
    than this (about a tenth of a bfloat16 env step), and float32 keeps a bfloat16 pass's
    statistics as exact as a float32 pass's."""
    x = activations.float()
    mean = x.mean((2, 3), keepdim=True)
    variance = (x - mean).square().sum((2, 3)) / (x.shape[2] * x.shape[3] - 1)
    return torch.cat([mean.flatten(1), variance.sqrt()], 1)


class PixelFeatures(nn.Module):
    """Images average-pooled to ``size`` x ``size`` and flattened."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.size = size

    def forward(self, images: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images, self.size).flatten(1)


class StandardisedFeatures(nn.Module):
    """Wrap a feature map so every dimension has unit scale on the teacher pool: otherwise a few
    high-variance channels would decide all distances."""

    def __init__(self, base: nn.Module, reference: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("mean", reference.mean(0))
        self.register_buffer("scale", reference.std(0).clamp_min(1e-6) * reference.shape[1] ** 0.5)

    def forward(self, images: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        return (self.base(images, inputs) - self.mean) / self.scale
