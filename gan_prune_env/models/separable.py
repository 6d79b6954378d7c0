"""Depthwise-separable U-Net: GAN Compression's "mobile" convolutions in Pix2Pix's U-Net.

At equal MACs the strongest student a user can distil from scratch is not a narrower copy of the
teacher but one whose convolutions are factorised: GAN Compression's ``MobileResnetGenerator``
and CAT's students replace each k x k convolution by a depthwise k x k (one filter per input
channel) followed by a pointwise 1x1, which costs ``C_in * k^2 + C_in * C_out`` MACs per pixel
instead of ``C_in * C_out * k^2``. For the U-Net's 4x4 convolutions that buys about 2.3 times
the channels of a plain thin U-Net of the same MACs. The compression frontier measures such a
student against pruning (``benchmarks/compare/spec.py``).

Only the layout changes: every level keeps the reference U-Net's module names and positions
(``UnetSkipConnectionBlock.model``), with each 4x4 (transposed) convolution replaced in place
by a :class:`SeparableConv2d` / :class:`SeparableConvTranspose2d`, so the feature-distillation
layers (the norm after each up-convolution) are addressed as in the teacher. The RGB stem (3
input channels, where a depthwise filter sees one colour each) stays a full convolution.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

from torch import nn

from gan_prune_env.models.unet import UnetGenerator, UnetSkipConnectionBlock


class SeparableConv2d(nn.Sequential):
    """``depthwise`` k x k (stride, padding as the conv it replaces) -> ``norm`` (optional) ->
    ``pointwise`` 1x1, GAN Compression's ``SeparableConv2d`` with a channel multiplier of 1."""

    def __init__(self, conv: nn.Conv2d, norm_layer=None) -> None:
        cin, cout = conv.in_channels, conv.out_channels
        depthwise = nn.Conv2d(cin, cin, conv.kernel_size, conv.stride, conv.padding,
                              groups=cin, bias=False)
        super().__init__(_parts(depthwise, cin, cout, conv.bias is not None, norm_layer))


class SeparableConvTranspose2d(nn.Sequential):
    """``depthwise`` transposed k x k (up-sampling as the layer it replaces) -> ``norm``
    (optional) -> ``pointwise`` 1x1."""

    def __init__(self, conv: nn.ConvTranspose2d, norm_layer=None) -> None:
        cin, cout = conv.in_channels, conv.out_channels
        depthwise = nn.ConvTranspose2d(cin, cin, conv.kernel_size, conv.stride, conv.padding,
                                       groups=cin, bias=False)
        super().__init__(_parts(depthwise, cin, cout, conv.bias is not None, norm_layer))


def _parts(depthwise: nn.Module, cin: int, cout: int, bias: bool, norm_layer
           ) -> OrderedDict[str, nn.Module]:
    parts: OrderedDict[str, nn.Module] = OrderedDict(depthwise=depthwise)
    if norm_layer is not None:
        parts["norm"] = norm_layer(cin)
    parts["pointwise"] = nn.Conv2d(cin, cout, 1, bias=bias)
    return parts


def is_up_sampling(module: nn.Module) -> bool:
    """Whether ``module`` is a U-Net level's up-convolution, plain or separable."""
    return isinstance(module, (nn.ConvTranspose2d, SeparableConvTranspose2d))


def separable_unet(
    input_nc: int,
    output_nc: int,
    num_downs: int,
    ngf: int,
    norm_layer: type[nn.Module] | functools.partial = nn.BatchNorm2d,
    mid_norm: bool = True,
) -> UnetGenerator:
    """The reference U-Net (:class:`UnetGenerator`, width ``ngf``) with every 4x4 convolution
    but the RGB stem made depthwise-separable; ``mid_norm`` puts a ``norm_layer`` between the
    depthwise and the pointwise part, as GAN Compression does. Weights are PyTorch's default
    init: call ``init_weights`` for the reference one."""
    net = UnetGenerator(input_nc, output_nc, num_downs, ngf=ngf, norm_layer=norm_layer)
    middle = norm_layer if mid_norm else None
    for block in net.modules():
        if not isinstance(block, UnetSkipConnectionBlock):
            continue
        for i, layer in enumerate(block.model):
            if isinstance(layer, nn.ConvTranspose2d):
                block.model[i] = SeparableConvTranspose2d(layer, middle)
            elif isinstance(layer, nn.Conv2d) and not block.outermost:
                block.model[i] = SeparableConv2d(layer, middle)
    return net
