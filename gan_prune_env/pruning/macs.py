"""MACs and parameter accounting (METHOD 4).

Two conventions, both for one image:
* ``field``: what torchprofile/thop and every GAN-compression paper report. A transposed conv is
  counted at its *output* resolution, ``C_in/groups * C_out * k^2 * H_out * W_out``.
* ``true``: the multiplies actually performed; a transposed conv at its *input* resolution. This
  is what ``torch.utils.flop_counter.FlopCounterMode`` reports (as FLOPs = 2 * MACs).
Norms, activations, padding and concatenation count zero; biases are not counted.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from gan_prune_env.pruning.layers import PRUNABLE_LAYERS, LayerInfo, trace_layers

CONVENTIONS = ("field", "true")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"MACs convention {convention!r} is not one of {CONVENTIONS}")


def layer_macs(
    info: LayerInfo, in_kept: int | None = None, out_kept: int | None = None,
    convention: str = "field",
) -> int:
    """MACs of one layer when ``in_kept`` input and ``out_kept`` output channels survive."""
    _check_convention(convention)
    cin = info.in_channels if in_kept is None else in_kept
    cout = info.out_channels if out_kept is None else out_kept
    k2 = info.kernel_size**2
    if info.kind == "linear":
        return cin * cout
    if info.kind == "conv_transpose":
        h, w = info.out_hw if convention == "field" else info.in_hw
        return cin * (cout // info.groups) * k2 * h * w
    h, w = info.out_hw
    return (cin // info.groups) * cout * k2 * h * w


def layer_params(info: LayerInfo, in_kept: int | None = None, out_kept: int | None = None) -> int:
    """Weight and bias parameters of one layer under kept channel counts."""
    cin = info.in_channels if in_kept is None else in_kept
    cout = info.out_channels if out_kept is None else out_kept
    k2 = info.kernel_size**2 if info.kind != "linear" else 1
    return cin * cout * k2 // info.groups + (cout if info.has_bias else 0)


def count_macs(model: nn.Module, example_input: torch.Tensor, convention: str = "field") -> int:
    """Profile a (physically sliced) model with forward hooks, thop/torchprofile style."""
    _check_convention(convention)
    per_image = example_input[:1]
    return sum(layer_macs(info, convention=convention)
               for info in trace_layers(model, per_image).values())


def count_true_macs_profiler(model: nn.Module, example_input: torch.Tensor) -> int:
    """True MACs from PyTorch's own FlopCounterMode (FLOPs / 2), an independent profiler."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example_input[:1])
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["CONVENTIONS", "PRUNABLE_LAYERS", "count_macs", "count_params",
           "count_true_macs_profiler", "layer_macs", "layer_params"]
