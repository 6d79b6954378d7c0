"""Physically slice a network to an architecture with Torch-Pruning.

The sliced network keeps the original module names (so checkpoints stay readable) and computes
what the masked network computes. Pruned checkpoints store the kept indices per group, so a
sliced model can be rebuilt from the base architecture without the importance ranking.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from gan_prune_env.pruning.groups import build_dependency_graph
from gan_prune_env.pruning.importance import Importance, is_depthwise
from gan_prune_env.pruning.layers import trace_once
from gan_prune_env.pruning.space import ChannelSpace


def slice_by_indices(
    model: nn.Module, example_input: torch.Tensor, kept: dict[str, Sequence[int]],
    inplace: bool = False,
) -> nn.Module:
    """Remove every channel of each group (named by its root layer) not listed in ``kept``."""
    model = model if inplace else copy.deepcopy(model)
    graph = build_dependency_graph(model, example_input[:1])
    for root_name, keep in kept.items():
        try:
            root = model.get_submodule(root_name)
        except AttributeError as err:
            raise KeyError(f"architecture names layer {root_name!r}, which the model lacks") from err
        channels = root.out_features if isinstance(root, nn.Linear) else root.out_channels
        keep_set = {int(i) for i in keep}
        if not keep_set or min(keep_set) < 0 or max(keep_set) >= channels:
            raise ValueError(f"group {root_name!r}: kept indices must be a non-empty subset of "
                             f"[0, {channels})")
        pruned = [i for i in range(channels) if i not in keep_set]
        if not pruned:
            continue
        pruner = graph.get_pruner_of_module(root)
        group = graph.get_pruning_group(root, pruner.prune_out_channels, idxs=pruned)
        group.prune()
    _sync_stateless_norms(model, example_input[:1])
    return model


def _sync_stateless_norms(model: nn.Module, example_input: torch.Tensor) -> None:
    """InstanceNorm without affine has no tensors for Torch-Pruning to slice, but keeps a stale
    ``num_features``; read the true width off one forward pass."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm)]
    if not norms:
        return

    def hook(module, args):
        module.num_features = args[0].shape[1]

    trace_once(model, example_input, [m.register_forward_pre_hook(hook) for m in norms])


def slice_model(
    model: nn.Module, space: ChannelSpace, counts: Sequence[int] | np.ndarray,
    example_input: torch.Tensor | None = None,
) -> nn.Module:
    """A new, smaller copy of ``model`` keeping ``counts[g]`` best channels of group g."""
    if example_input is None:
        example_input = torch.zeros((1, *space.input_shape),
                                    device=next(model.parameters()).device)
    return slice_by_indices(model, example_input, space.keep_indices(counts))


def slice_separable_unet(net: nn.Module, ngf: int, example_input: torch.Tensor,
                         importance: Importance | None = None) -> nn.Module:
    """A new copy of the separable U-Net ``net`` (``models.separable_unet``) narrowed to width
    ``ngf``: the separable U-Net of width ``ngf``, MAC for MAC, keeping in every level the best
    channels of the skip and of the up path alike, best by ``importance`` (default: L1 of the
    filters producing them; ``NormScaleImportance`` for a start trained with network
    slimming's sparsity term).

    Why not :func:`slice_model` at a uniform ratio: a depthwise up-convolution carries each
    channel of its concatenated input through, so Torch-Pruning puts a level's skip and up path
    into one channel group; one keep count over that group may take every channel from one
    path and none from the other. Here each path of a group (each producer that is not a
    depthwise convolution) keeps its share, as a narrower separable U-Net has it."""
    width = _stem(net).out_channels
    if not 1 <= ngf <= width:
        raise ValueError(f"cannot narrow a separable U-Net of width {width} to {ngf}")
    space = ChannelSpace(net, example_input[:1], importance)
    kept = {}
    for group in space.groups:
        paths = sum(not is_depthwise(net.get_submodule(p)) for p in group.producers)
        path_width = group.num_channels // paths
        if path_width * paths != group.num_channels or path_width * ngf % width:
            raise ValueError(f"group {group.name!r} ({group.num_channels} channels, {paths} "
                             f"paths) does not narrow evenly from width {width} to {ngf}; "
                             "is this a separable_unet?")
        ranked = group.ranking.tolist()
        kept[group.name] = sorted(
            i for path in range(paths)
            for i in [j for j in ranked if j // path_width == path][:path_width * ngf // width])
    return slice_by_indices(net, example_input, kept)


def _stem(net: nn.Module) -> nn.Conv2d:
    """The first convolution of ``net``: a U-Net's RGB stem, whose width is its ``ngf``."""
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))

