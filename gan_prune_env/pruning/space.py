"""The pruning space of one network: its channel groups plus analytic compute accounting.

``ChannelSpace`` is built once per network (tracing is slow); afterwards mapping keep ratios to
channel counts, and counts to MACs and parameters, is pure arithmetic, so the environment's step
loop never profiles or re-instantiates a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from gan_prune_env.pruning.groups import ChannelGroup, channels_for_ratio, discover_groups
from gan_prune_env.pruning.importance import Importance
from gan_prune_env.pruning.layers import LayerInfo
from gan_prune_env.pruning.macs import layer_macs, layer_params

GROUP_FEATURE_NAMES = (
    "kind_conv", "kind_conv_transpose", "kind_residual", "kind_linear",
    "log2_channels", "log2_in_channels", "kernel_size", "stride", "log2_spatial",
    "depth", "macs_share", "params_share",
)


class ChannelSpace:
    """Channel groups of ``model`` and exact MACs/params for any per-group keep counts.

    Args:
        model: the unpruned network (it is traced, not modified).
        example_input: a batch of the size the network is used at; sets spatial sizes.
        importance: ranks channels inside a group (default L1 of producing filters).
        divisor: keep counts are multiples of it (METHOD 3), except the minimum of 1.
        ignored_layers: module names never pruned, besides the output layer.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        importance: Importance | None = None,
        divisor: int = 1,
        ignored_layers: list[str] | None = None,
    ) -> None:
        if divisor < 1:
            raise ValueError(f"divisor must be >= 1, got {divisor}")
        self.divisor = divisor
        self.input_shape = tuple(example_input.shape[1:])
        self.groups, self.layers = discover_groups(model, example_input[:1], importance,
                                                   ignored_layers)
        if not self.groups:
            raise ValueError("no prunable channel group found (only the output layer has channels?)")
        self.num_channels = np.array([g.num_channels for g in self.groups], dtype=np.int64)
        self._producer_group = {p: g.index for g in self.groups for p in g.producers}
        self._rank_positions = [torch.argsort(g.ranking) for g in self.groups]
        self._consumer_terms = self._index_consumers()
        self._norm_params = self._norm_params_per_channel(model)
        self.full_params = sum(p.numel() for p in model.parameters())
        self._layer_params_full = {n: layer_params(i) for n, i in self.layers.items()}
        full = self.num_channels
        self.full_macs = self.macs(full)
        self.full_true_macs = self.macs(full, convention="true")

    # -- ratios and counts -------------------------------------------------------------------
    @property
    def num_groups(self) -> int:
        return len(self.groups)

    def counts_for_ratios(self, ratios: Sequence[float] | np.ndarray) -> np.ndarray:
        """Map one keep ratio per group to channel counts (METHOD 3 rounding)."""
        ratios = np.asarray(ratios, dtype=np.float64).reshape(-1)
        if ratios.shape[0] != self.num_groups:
            raise ValueError(f"expected {self.num_groups} keep ratios, got {ratios.shape[0]}")
        return np.array([channels_for_ratio(float(r), int(c), self.divisor)
                         for r, c in zip(ratios, self.num_channels)], dtype=np.int64)

    def check_counts(self, counts: Sequence[int] | np.ndarray) -> np.ndarray:
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        if counts.shape[0] != self.num_groups:
            raise ValueError(f"expected {self.num_groups} channel counts, got {counts.shape[0]}")
        bad = np.flatnonzero((counts < 1) | (counts > self.num_channels))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"group {i} ({self.groups[i].name}): count {counts[i]} outside "
                             f"[1, {self.num_channels[i]}]")
        return counts

    def keep_indices(self, counts: Sequence[int] | np.ndarray) -> dict[str, list[int]]:
        """Kept root-channel indices per group name: the form stored in pruned checkpoints."""
        counts = self.check_counts(counts)
        return {g.name: g.keep_indices(int(n)).tolist() for g, n in zip(self.groups, counts)}

    # -- compute -------------------------------------------------------------------------------
    def kept_channels(self, counts: Sequence[int] | np.ndarray) -> dict[str, tuple[int, int]]:
        """(input, output) channels each conv/linear layer keeps under ``counts``."""
        counts = self.check_counts(counts)
        result = {}
        for name, info in self.layers.items():
            group = self._producer_group.get(name)
            out_kept = info.out_channels if group is None else int(counts[group])
            removed = sum(int(positions.size - np.searchsorted(positions, counts[g]))
                          for g, positions in self._consumer_terms.get(name, ()))
            result[name] = (info.in_channels - removed, out_kept)
        return result

    def macs(self, counts: Sequence[int] | np.ndarray, convention: str = "field") -> int:
        """MACs for one image at the traced resolution (see ``gan_prune_env.pruning.macs``)."""
        kept = self.kept_channels(counts)
        return sum(layer_macs(self.layers[n], cin, cout, convention) for n, (cin, cout) in kept.items())

    def params(self, counts: Sequence[int] | np.ndarray) -> int:
        """Parameters of the physically sliced network."""
        counts = self.check_counts(counts)
        kept = self.kept_channels(counts)
        removed = sum(self._layer_params_full[n] - layer_params(self.layers[n], cin, cout)
                      for n, (cin, cout) in kept.items())
        removed += sum(per_channel * int(c - n) for per_channel, c, n in
                       zip(self._norm_params, self.num_channels, counts))
        return self.full_params - removed

    def macs_ratio(self, counts: Sequence[int] | np.ndarray) -> float:
        return self.macs(counts) / self.full_macs

    def soft_macs_ratio(self, fractions: torch.Tensor) -> torch.Tensor:
        """Differentiable kept-MACs ratio for per-group kept *fractions* (relaxed search):
        the exact formula with channel counts replaced by ``fraction * channels``."""
        total = fractions.new_zeros(())
        for name, info in self.layers.items():
            group = self._producer_group.get(name)
            out_frac = fractions[group] if group is not None else 1.0
            in_kept = fractions.new_tensor(float(info.in_channels))
            for g, positions in self._consumer_terms.get(name, ()):
                in_kept = in_kept - positions.size * (1 - fractions[g])
            total = total + layer_macs(info) * (in_kept / info.in_channels) * out_frac
        return total / self.full_macs

    def soft_gates(self, fractions: torch.Tensor, temperature: float = 0.5) -> list[torch.Tensor]:
        """Per-group channel gates in (0, 1) for kept fractions: a sigmoid step along each
        group's importance ranking at ``fraction * channels`` (width ``temperature`` channels)."""
        gates = []
        for group, position in zip(self.groups, self._rank_positions):
            edge = fractions[group.index] * group.num_channels
            gates.append(torch.sigmoid((edge - position.to(fractions) - 0.5) / temperature))
        return gates

    # -- observations ----------------------------------------------------------------------------
    def group_features(self) -> np.ndarray:
        """Static per-group features, ``[num_groups, len(GROUP_FEATURE_NAMES)]`` float32, each in
        [0, 1]: kind one-hot, log2 sizes / 12, kernel / 7, stride / 2, depth and compute shares."""
        rows = []
        for g in self.groups:
            kind = [float(g.kind == k) for k in ("conv", "conv_transpose", "residual", "linear")]
            rows.append(kind + [
                np.log2(g.num_channels) / 12, np.log2(max(g.in_channels, 1)) / 12,
                g.kernel_size / 7, g.stride / 2, np.log2(max(g.spatial_size, 1)) / 12,
                g.depth, g.macs_share, g.params_share,
            ])
        return np.clip(np.asarray(rows, dtype=np.float32), 0.0, 1.0)

    def describe(self, counts: Sequence[int] | np.ndarray | None = None) -> list[dict]:
        """One dict per group (for logs, JSON exports and ``render``)."""
        counts = self.num_channels if counts is None else self.check_counts(counts)
        return [{"group": g.index, "name": g.name, "kind": g.kind, "channels": int(g.num_channels),
                 "kept": int(n), "ratio": float(n / g.num_channels)}
                for g, n in zip(self.groups, counts)]

    # -- construction helpers ----------------------------------------------------------------
    def _index_consumers(self) -> dict[str, list[tuple[int, np.ndarray]]]:
        """For each consumer layer and group: sorted ranking positions of the channels it reads,
        so the kept input count for ``n`` kept channels is one ``searchsorted``."""
        terms: dict[str, list[tuple[int, np.ndarray]]] = {}
        for g in self.groups:
            position = torch.empty_like(g.ranking)
            position[g.ranking] = torch.arange(g.num_channels)
            for c in g.consumers:
                positions = np.sort(position[c.root_idx].numpy())
                terms.setdefault(c.module_name, []).append((g.index, positions))
        return terms

    def _norm_params_per_channel(self, model: nn.Module) -> list[int]:
        per_group = []
        for g in self.groups:
            total = 0
            for name in g.norm_layers:
                module = model.get_submodule(name)
                numel = sum(p.numel() for p in module.parameters(recurse=False))
                total += numel // g.num_channels if numel else 0
            per_group.append(total)
        return per_group

    def layer_info(self, name: str) -> LayerInfo:
        return self.layers[name]


def group_by_name(space: ChannelSpace, name: str) -> ChannelGroup:
    for group in space.groups:
        if group.name == name:
            return group
    raise KeyError(f"no channel group rooted at {name!r}")
