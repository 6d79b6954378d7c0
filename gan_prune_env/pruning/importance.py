"""Channel importance: which channels of a group survive a given keep count.

An importance is any callable ``(torch_pruning Group, num_channels) -> Tensor[num_channels]``
(higher = keep first), scored once on the pretrained teacher. Channels are indexed like the
group's root layer.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch_pruning as tp
from torch import nn

_FILTER_LAYERS = (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)


class Importance(Protocol):
    def __call__(self, group: tp.dependency.Group, num_channels: int) -> torch.Tensor: ...


class L1FilterImportance:
    """METHOD 3 default: L1 norm of the filters that *produce* the group's channels, summed over
    coupled producers (e.g. every conv writing into a residual trunk)."""

    def __call__(self, group: tp.dependency.Group, num_channels: int) -> torch.Tensor:
        scores = torch.zeros(num_channels, dtype=torch.float64)
        for item in group:
            module = item.dep.target.module
            handler = getattr(item.dep.handler, "__name__", "")
            if handler != "prune_out_channels" or type(module) not in _FILTER_LAYERS:
                continue
            l1 = filter_l1(module)
            idxs = torch.as_tensor(list(item.idxs), dtype=torch.long)
            roots = torch.as_tensor(list(item.root_idxs), dtype=torch.long)
            scores.index_add_(0, roots, l1[idxs])
        return scores


def filter_l1(module: nn.Conv2d | nn.ConvTranspose2d | nn.Linear) -> torch.Tensor:
    """L1 norm of the weights producing each output channel of ``module``, on the CPU.

    A grouped transposed convolution (the depthwise up-sampling of a separable U-Net) stores its
    weight as ``(in, out / groups, k, k)``: output channel ``j`` is column ``j % (out / groups)``
    of the rows of group ``j // (out / groups)``, not row or column ``j``."""
    weight = module.weight.detach().double().cpu().abs()  # rankings live on the CPU
    if isinstance(module, nn.ConvTranspose2d):
        groups, (c_in, per_group) = module.groups, weight.shape[:2]
        weight = weight.reshape(groups, c_in // groups, per_group, -1).transpose(1, 2)
        return weight.reshape(groups * per_group, -1).sum(1)
    return weight.flatten(1).sum(1)


class NormScaleImportance:
    """Network slimming (Liu et al. 2017): ``|gamma|`` of the affine norms that normalise the
    group's channels, summed over them. After a norm the producing filter's scale is divided
    out, so its L1 norm says little about what the channel passes on; ``gamma`` sets that
    scale. A group with no affine norm (an output layer, a non-affine InstanceNorm) is ranked by
    ``fallback`` (default: L1 of the producing filters)."""

    def __init__(self, fallback: Importance | None = None) -> None:
        self.fallback = fallback or L1FilterImportance()

    def __call__(self, group: tp.dependency.Group, num_channels: int) -> torch.Tensor:
        scores = torch.zeros(num_channels, dtype=torch.float64)
        found = False
        for item in group:
            module = item.dep.target.module
            if not isinstance(module, nn.modules.batchnorm._NormBase) or module.weight is None:
                continue
            found = True
            gamma = module.weight.detach().double().abs().cpu()
            idxs = torch.as_tensor(list(item.idxs), dtype=torch.long)
            roots = torch.as_tensor(list(item.root_idxs), dtype=torch.long)
            scores.index_add_(0, roots, gamma[idxs])
        return scores if found else self.fallback(group, num_channels)


class TorchPruningImportance:
    """Adapter for any Torch-Pruning importance, e.g. ``tp.importance.GroupMagnitudeImportance``
    (which also counts the consumers' input weights and the norms)."""

    def __init__(self, importance: tp.importance.Importance | None = None) -> None:
        self.importance = importance or tp.importance.GroupMagnitudeImportance(p=1)

    def __call__(self, group: tp.dependency.Group, num_channels: int) -> torch.Tensor:
        scores = self.importance(group)
        if scores is None or scores.numel() != num_channels:
            raise ValueError(f"importance gave {None if scores is None else scores.numel()} "
                             f"scores for {num_channels} channels")
        return scores.detach().double().cpu()


class RandomImportance:
    """Seeded random ranking: the control for any importance-based claim."""

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, group: tp.dependency.Group, num_channels: int) -> torch.Tensor:
        return torch.rand(num_channels, generator=self.generator, dtype=torch.float64)


class PositionImportance:
    """Slimmable networks' fixed channel order (Yu et al., 2019): within each path of a group
    (the channels one non-depthwise filter produces; two in a separable U-Net level whose skip
    and up path meet in a depthwise convolution) the first channels rank first, the paths
    interleaved, so a group's best ``paths * k`` are the first ``k`` of every path. A network
    trained with its narrower copies masked to those channels (``FinetuneConfig.slimmable_widths``)
    is narrowed by it to exactly the sub-networks it was trained as; for any other network the
    order is arbitrary."""

    def __call__(self, group: tp.dependency.Group, num_channels: int) -> torch.Tensor:
        position = torch.full((num_channels,), float("nan"), dtype=torch.float64)
        paths = 0
        for item in group:
            module = item.dep.target.module
            handler = getattr(item.dep.handler, "__name__", "")
            if (handler != "prune_out_channels" or type(module) not in _FILTER_LAYERS
                    or is_depthwise(module)):
                continue
            roots = sorted(int(i) for i in item.root_idxs)
            position[roots] = -(torch.arange(len(roots), dtype=torch.float64) + 1e-3 * paths)
            paths += 1
        if torch.isnan(position).any():  # channels no filter produces: after the others
            position[torch.isnan(position)] = -float(num_channels) - torch.arange(
                int(torch.isnan(position).sum()), dtype=torch.float64)
        return position


def is_depthwise(module: nn.Module) -> bool:
    """Whether ``module`` is a depthwise convolution (one filter per channel, in = out)."""
    return (isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.groups > 1
            and module.groups == module.in_channels == module.out_channels)


IMPORTANCES = {"l1": L1FilterImportance, "norm_scale": NormScaleImportance,
               "group_l1": TorchPruningImportance, "random": RandomImportance,
               "position": PositionImportance}


def make_importance(name: str) -> Importance:
    """Importance by config name: ``l1`` (default), ``norm_scale`` (network slimming),
    ``group_l1`` (Torch-Pruning), ``random``, ``position`` (slimmable networks' order)."""
    if name not in IMPORTANCES:
        raise ValueError(f"unknown importance {name!r}; expected one of {sorted(IMPORTANCES)}")
    return IMPORTANCES[name]()
