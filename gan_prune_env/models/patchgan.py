"""PatchGAN discriminator (``NLayerDiscriminator`` of pytorch-CycleGAN-and-pix2pix)."""

from __future__ import annotations

import functools

import torch
from torch import nn

from gan_prune_env.models.norms import uses_bias


class NLayerDiscriminator(nn.Module):
    """Classifies overlapping patches (70x70 receptive field at ``n_layers=3``) as real or fake.

    Input: ``[N, input_nc, H, W]`` (6 channels for conditional Pix2Pix: input image and output
    image concatenated; 3 for CycleGAN). Output: ``[N, 1, H/8 - 2, W/8 - 2]`` logits.
    """

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm_layer: type[nn.Module] | functools.partial = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        use_bias = uses_bias(norm_layer)
        kw, padw = 4, 1
        sequence: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, True),
        ]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            sequence += [
                nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw,
                          bias=use_bias),
                norm_layer(ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
        sequence += [
            nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw,
                      bias=use_bias),
            norm_layer(ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*sequence)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
