"""Center-conditioned discriminators (METHOD 6): D judges a candidate *given its center*.

Pix2Pix's conditional PatchGAN already takes two images; the center takes the input image's
place. CycleGAN's 3-channel PatchGAN gets three extra input channels for the center,
zero-initialised, so before any training it judges exactly as the teacher did.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def first_conv(net: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError("discriminator has no Conv2d layer")


def widen_for_center(discriminator: nn.Module) -> nn.Module:
    """Copy of a 3-channel D whose first conv also reads 3 center channels (zero weights)."""
    net = copy.deepcopy(discriminator)
    name, conv = first_conv(net)
    wide = nn.Conv2d(conv.in_channels * 2, conv.out_channels, conv.kernel_size, conv.stride,
                     conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, : conv.in_channels] = conv.weight
        if conv.bias is not None:
            wide.bias.copy_(conv.bias)
    parent_name, _, attr = name.rpartition(".")
    setattr(net.get_submodule(parent_name) if parent_name else net, attr, wide)
    return net


def pair_input(center: torch.Tensor, candidate: torch.Tensor, center_first: bool) -> torch.Tensor:
    """Stack center and candidate the way the conditioned D expects them."""
    return torch.cat([center, candidate] if center_first else [candidate, center], 1)
