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

import copy
import functools
from collections import OrderedDict

import torch
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
    _make_separable(net, norm_layer if mid_norm else None)
    return net


def _make_separable(net: UnetGenerator, middle, source: UnetGenerator | None = None) -> None:
    """Replace, in place, every 4x4 (transposed) conv of ``net`` but the RGB stem by its
    separable form (``middle``: the norm class between the parts, or None); with ``source``
    (``net``'s layout), each is :func:`factorise`-d from ``source``'s conv."""
    originals = _levels(source if source is not None else net)
    for block, original in zip(_levels(net), originals):
        for i, layer in enumerate(original.model):
            if isinstance(layer, nn.ConvTranspose2d):
                block.model[i] = SeparableConvTranspose2d(layer, middle)
            elif isinstance(layer, nn.Conv2d) and not original.outermost:
                block.model[i] = SeparableConv2d(layer, middle)
            else:
                continue
            if source is not None:
                factorise(layer, block.model[i])


@torch.no_grad()
def factorise(conv: nn.Conv2d | nn.ConvTranspose2d,
              separable: SeparableConv2d | SeparableConvTranspose2d) -> None:
    """Set ``separable``'s depthwise and pointwise weights to the closest factorisation of
    ``conv`` it can express: per input channel ``i`` the kernel matrix ``W_i`` (``C_out x k^2``)
    is replaced by its best rank-1 approximation ``s u v^T`` (SVD), with ``sqrt(s) v`` the
    depthwise filter of channel ``i`` and ``sqrt(s) u`` the pointwise column. Exact when every
    ``W_i`` has rank 1; the bias moves to the pointwise conv."""
    weight = conv.weight  # Conv2d: (out, in, k, k); ConvTranspose2d: (in, out, k, k)
    per_output = weight.transpose(0, 1) if isinstance(conv, nn.ConvTranspose2d) else weight
    c_out, c_in = per_output.shape[:2]
    if (separable.depthwise.in_channels, separable.pointwise.out_channels) != (c_in, c_out):
        raise ValueError(f"cannot factorise a {c_in}->{c_out} conv into a "
                         f"{separable.depthwise.in_channels}->"
                         f"{separable.pointwise.out_channels} separable one")
    matrices = per_output.transpose(0, 1).reshape(c_in, c_out, -1)  # (in, out, k*k)
    u, s, vh = torch.linalg.svd(matrices, full_matrices=False)
    root = s[:, :1].sqrt()
    separable.depthwise.weight.copy_((vh[:, 0, :] * root).reshape_as(separable.depthwise.weight))
    separable.pointwise.weight.copy_((u[:, :, 0] * root).t().reshape_as(
        separable.pointwise.weight))
    if conv.bias is not None:
        separable.pointwise.bias.copy_(conv.bias)


@torch.no_grad()
def factorised_unet(source: UnetGenerator, inputs: torch.Tensor, mid_norm: bool = True
                    ) -> UnetGenerator:
    """A separable copy of the U-Net ``source`` (:func:`separable_unet`'s layout at
    ``source``'s widths) that starts from its weights: every separable layer is
    :func:`factorise`-d from ``source``'s conv, the stem and the norms are copied, and each
    middle norm (``mid_norm``) is set to pass its input through unchanged on the batch
    ``inputs`` (weight = the batch std, bias = the batch mean, in forward order), so the copy
    computes what the factorised convolutions compute. The student then inherits the teacher's
    filters the way a pruned network does, instead of starting from a random init."""
    net = copy.deepcopy(source)
    _make_separable(net, _norm_like(source, mid_norm), source)
    # modules() lists a nested U-Net in forward order; each norm's input depends on those before
    middles = [m.norm for m in net.modules()
               if isinstance(m, (SeparableConv2d, SeparableConvTranspose2d)) and mid_norm]
    kept = {m: copy.deepcopy(dict(m.named_buffers())) for m in net.modules()
            if isinstance(m, nn.BatchNorm2d) and m not in middles}  # passes below update them
    was_training = net.training
    net.train()
    for norm in middles:
        seen: list[torch.Tensor] = []
        hook = norm.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
        net(inputs)
        hook.remove()
        mean, var = seen[0].mean(dim=(0, 2, 3)), seen[0].var(dim=(0, 2, 3), unbiased=False)
        norm.weight.copy_((var + norm.eps).sqrt())
        norm.bias.copy_(mean)
        norm.running_mean.copy_(mean)  # the same pass-through in eval mode
        norm.running_var.copy_(var)
    for module, buffers in kept.items():
        for name, value in buffers.items():
            getattr(module, name).copy_(value)
    return net.train(was_training)


def _levels(net: UnetGenerator) -> list[UnetSkipConnectionBlock]:
    return [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock)]


def _norm_like(net: UnetGenerator, wanted: bool):
    """A BatchNorm like ``net``'s for a middle norm, or None when not ``wanted``."""
    if not wanted:
        return None
    if not any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
        raise ValueError("factorised_unet calibrates BatchNorm middle norms and the source "
                         "U-Net has none; pass mid_norm=False")
    return nn.BatchNorm2d
