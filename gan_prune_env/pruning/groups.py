"""Discover coupled channel groups of any ``nn.Module`` with Torch-Pruning's dependency graph.

A *channel group* is a set of output channels that must be removed together (a U-Net skip that
is concatenated into a later layer, the residual trunk of a ResNet). Groups are read off the
traced graph, never hard-coded, so a user's own generator works the same way as ours.

Each group records, once, everything the hot loop of the environment needs: which layers
produce its channels, which layers consume them (and at which input index, through
concatenations), the importance ranking of its channels, and static features for observations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from gan_prune_env.pruning.importance import Importance, L1FilterImportance
from gan_prune_env.pruning.layers import PRUNABLE_LAYERS, LayerInfo, output_layer_names, trace_layers
from gan_prune_env.pruning.macs import layer_macs, layer_params

GROUP_KINDS = ("conv", "conv_transpose", "residual", "linear")
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class Consumer:
    """A layer reading a group's channels: input channel ``in_idx[i]`` carries root channel
    ``root_idx[i]``."""

    module_name: str
    in_idx: torch.Tensor
    root_idx: torch.Tensor


@dataclass
class ChannelGroup:
    """Channels of ``producers`` that are pruned together, ranked by importance (best first)."""

    index: int
    name: str  # the root layer's module name
    kind: str
    num_channels: int
    producers: tuple[str, ...]
    norm_layers: tuple[str, ...]
    consumers: tuple[Consumer, ...]
    ranking: torch.Tensor
    root_handler: str  # "conv" or "linear": which pruning function slices the root
    in_channels: int = 0
    kernel_size: int = 1
    stride: int = 1
    spatial_size: int = 1
    depth: float = 0.0  # position of the root layer in execution order, in [0, 1]
    macs_share: float = 0.0
    params_share: float = 0.0
    extra: dict = field(default_factory=dict)

    def keep_indices(self, count: int) -> torch.Tensor:
        """Root channel indices kept when ``count`` channels survive, sorted ascending."""
        if not 1 <= count <= self.num_channels:
            raise ValueError(
                f"group {self.name!r}: keep count {count} outside [1, {self.num_channels}]"
            )
        return torch.sort(self.ranking[:count]).values


def channels_for_ratio(ratio: float, num_channels: int, divisor: int = 1) -> int:
    """METHOD 3: ``max(1, round(r * C / divisor) * divisor)``, never above C."""
    if not np.isfinite(ratio) or ratio < 0 or ratio > 1:
        raise ValueError(f"keep ratio must be in [0, 1], got {ratio}")
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    if ratio == 1:  # the full group, even when it is narrower than the divisor
        return num_channels
    count = max(1, int(round(ratio * num_channels / divisor)) * divisor)
    return min(count, num_channels)


def build_dependency_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Trace ``model`` in eval mode (BatchNorm must not update its statistics while tracing).

    Torch-Pruning follows autograd, so frozen parameters are unfrozen for the trace only.
    """
    was_training = model.training
    frozen = [p for p in model.parameters() if not p.requires_grad]
    model.eval()
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.enable_grad():  # callers may be inside torch.no_grad()
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    finally:
        for p in frozen:
            p.requires_grad_(False)
        model.train(was_training)


def discover_groups(
    model: nn.Module,
    example_input: torch.Tensor,
    importance: Importance | None = None,
    ignored_layers: list[str] | None = None,
) -> tuple[list[ChannelGroup], dict[str, LayerInfo]]:
    """Find all prunable channel groups of ``model``, in execution order of their root layers.

    Args:
        model: any network of Conv2d / ConvTranspose2d / Linear layers (plus norms, activations,
            concatenations and additions, which Torch-Pruning traces).
        example_input: one input batch; its spatial size sets the groups' spatial features.
        importance: ranks each group's channels (default: L1 norm of the producing filters).
        ignored_layers: extra module names never pruned (the output layer always is).
    """
    importance = importance or L1FilterImportance()
    layers = trace_layers(model, example_input)
    names = {module: name for name, module in model.named_modules()}
    ignored = set(output_layer_names(layers)) | set(ignored_layers or [])
    graph = build_dependency_graph(model, example_input)
    raw_groups = graph.get_all_groups(
        ignored_layers=[model.get_submodule(n) for n in ignored],
        root_module_types=list(PRUNABLE_LAYERS),
    )
    groups = []
    for raw in raw_groups:
        group = _make_group(raw, names, layers, importance)
        if group is not None:
            groups.append(group)
    groups.sort(key=lambda g: layers[g.name].order)
    for i, group in enumerate(groups):
        group.index = i
    _set_shares(groups, layers)
    return groups, layers


def _make_group(raw, names, layers, importance: Importance) -> ChannelGroup | None:
    root_module = raw[0].dep.target.module
    root_name = names[root_module]
    producers, norms, consumers = [], [], []
    for item in raw:
        module = item.dep.target.module
        name = names.get(module)
        handler = getattr(item.dep.handler, "__name__", "")
        if name is None:
            continue
        if handler == "prune_out_channels":
            if isinstance(module, PRUNABLE_LAYERS):
                producers.append(name)
            elif isinstance(module, NORM_LAYERS) or next(module.parameters(False), None) is not None:
                norms.append(name)
        elif handler == "prune_in_channels" and isinstance(module, PRUNABLE_LAYERS):
            consumers.append(
                Consumer(
                    name,
                    torch.as_tensor(list(item.idxs), dtype=torch.long),
                    torch.as_tensor(list(item.root_idxs), dtype=torch.long),
                )
            )
    info = layers[root_name]
    num_channels = info.out_channels
    scores = importance(raw, num_channels)
    ranking = torch.argsort(scores.detach().float(), descending=True, stable=True)
    if isinstance(root_module, nn.Linear):
        kind, handler = "linear", "linear"
    elif len(producers) > 1:
        kind, handler = "residual", "conv"
    else:
        kind = "conv_transpose" if isinstance(root_module, nn.ConvTranspose2d) else "conv"
        handler = "conv"
    return ChannelGroup(
        index=-1,
        name=root_name,
        kind=kind,
        num_channels=num_channels,
        producers=tuple(sorted(set(producers), key=lambda n: layers[n].order)),
        norm_layers=tuple(dict.fromkeys(norms)),
        consumers=tuple(consumers),
        ranking=ranking,
        root_handler=handler,
        in_channels=info.in_channels,
        kernel_size=info.kernel_size,
        stride=info.stride,
        spatial_size=info.out_hw[0],
        depth=float(info.order),
    )


def _set_shares(groups: list[ChannelGroup], layers: dict[str, LayerInfo]) -> None:
    """Static features: depth in [0,1]; share of MACs/params of the layers each group touches."""
    total_macs = sum(layer_macs(info) for info in layers.values()) or 1
    total_params = sum(layer_params(info) for info in layers.values()) or 1
    last = max(info.order for info in layers.values()) or 1
    for group in groups:
        touched = set(group.producers) | {c.module_name for c in group.consumers}
        group.macs_share = sum(layer_macs(layers[n]) for n in touched) / total_macs
        group.params_share = sum(layer_params(layers[n]) for n in touched) / total_params
        group.depth = group.depth / last
