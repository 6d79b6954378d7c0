"""Trace the MAC-carrying layers of a model: shapes, strides and execution order."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gan_prune_env.devices import module_device

PRUNABLE_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


@dataclass(frozen=True)
class LayerInfo:
    """A MAC-carrying layer with the shapes seen at the example input."""

    name: str
    kind: str  # "conv" | "conv_transpose" | "linear"
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    groups: int
    has_bias: bool
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    order: int  # execution order in the forward pass


def trace_layers(model: nn.Module, example_input: torch.Tensor) -> dict[str, LayerInfo]:
    """Run one forward pass and record every conv/linear layer's shapes and execution order."""
    infos: dict[str, LayerInfo] = {}
    handles = []

    def make_hook(name: str, module: nn.Module):
        def hook(mod, inputs, output):
            x = inputs[0]
            if isinstance(mod, nn.Linear):
                kind, k, s, g, in_hw, out_hw = "linear", 1, 1, 1, (1, 1), (1, 1)
                cin, cout = mod.in_features, mod.out_features
            else:
                kind = "conv_transpose" if isinstance(mod, nn.ConvTranspose2d) else "conv"
                k, s, g = mod.kernel_size[0], mod.stride[0], mod.groups
                in_hw, out_hw = tuple(x.shape[-2:]), tuple(output.shape[-2:])
                cin, cout = mod.in_channels, mod.out_channels
            infos[name] = LayerInfo(
                name, kind, cin, cout, k, s, g, mod.bias is not None, in_hw, out_hw, len(infos)
            )

        return hook

    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_LAYERS):
            handles.append(module.register_forward_hook(make_hook(name, module)))
    trace_once(model, example_input, handles)
    if not infos:
        raise ValueError("model has no Conv2d/ConvTranspose2d/Linear layer to prune")
    return infos


def trace_once(model: nn.Module, example_input: torch.Tensor,
               handles: list[torch.utils.hooks.RemovableHandle]) -> None:
    """One forward pass of ``model`` in eval mode without gradients, for the hooks behind
    ``handles`` to read shapes off; the model's mode comes back and the hooks are removed,
    whatever happens. The example goes to the model's device (shapes do not depend on it, and
    callers build CPU examples for networks on any device)."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input.to(module_device(model)))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def output_layer_names(layers: dict[str, LayerInfo]) -> list[str]:
    """The layer that writes the model's output is never pruned: the last one executed."""
    return [max(layers.values(), key=lambda info: info.order).name]


