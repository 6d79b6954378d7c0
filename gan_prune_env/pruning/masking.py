"""Simulate a pruned architecture on the full network with channel masks.

A removed channel contributes nothing to any layer that reads it, so zeroing it *at every
consumer's input* computes exactly what the physically sliced network computes (norms and
activations act per channel, so the dead channel cannot leak elsewhere). Masks are forward
pre-hooks: switching architecture is a few tensor writes, with no re-instantiation, which is what
the environment's step loop needs. Gates may be soft and carry gradients (relaxed search).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from gan_prune_env.pruning.space import ChannelSpace


class ChannelMasker:
    """Attach to ``model`` (whose pruning space is ``space``) and set architectures on it.

    Use as a context manager, or call ``remove()`` to detach the hooks.
    """

    def __init__(self, model: nn.Module, space: ChannelSpace) -> None:
        self.model = model
        self.space = space
        self._consumers: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        for group in space.groups:
            for c in group.consumers:
                self._consumers.setdefault(c.module_name, []).append(
                    (group.index, c.in_idx, c.root_idx))
        self._masks: dict[str, torch.Tensor | None] = {name: None for name in self._consumers}
        self._handles = [
            model.get_submodule(name).register_forward_pre_hook(self._make_hook(name))
            for name in self._consumers
        ]
        self.counts = space.num_channels.copy()
        self._device = next(model.parameters()).device

    def _make_hook(self, name: str):
        target = self.model.get_submodule(name)

        def hook(module: nn.Module, args: tuple) -> tuple | None:
            mask = self._masks[name]
            # A deep copy of the model (e.g. the one ``slice_model`` slices) inherits this hook;
            # it must act on the layer it was attached to only.
            if mask is None or module is not target:
                return None
            x = args[0]
            shape = (1, -1) + (1,) * (x.dim() - 2)
            # a no-op when the mask already lives with the activations (set_gates puts it there)
            return (x * mask.to(device=x.device, dtype=x.dtype).view(shape),) + tuple(args[1:])

        return hook

    def set_counts(self, counts: Sequence[int] | np.ndarray) -> None:
        """Hard architecture: keep the ``counts[g]`` most important channels of each group."""
        counts = self.space.check_counts(counts)
        gates = []
        for group, n in zip(self.space.groups, counts):
            gate = torch.zeros(group.num_channels)
            gate[group.ranking[: int(n)]] = 1.0
            gates.append(gate)
        self.set_gates(gates, _all_ones=[int(n) == g.num_channels
                                        for g, n in zip(self.space.groups, counts)])
        self.counts = counts.copy()

    def set_ratios(self, ratios: Sequence[float] | np.ndarray) -> np.ndarray:
        counts = self.space.counts_for_ratios(ratios)
        self.set_counts(counts)
        return counts

    def set_gates(self, gates: Sequence[torch.Tensor], _all_ones: Sequence[bool] | None = None
                  ) -> None:
        """Per-group gates in root-channel order (values in [0, 1], may require grad)."""
        if len(gates) != self.space.num_groups:
            raise ValueError(f"expected {self.space.num_groups} gate vectors, got {len(gates)}")
        full = _all_ones or [False] * len(gates)
        for name, terms in self._consumers.items():
            if all(full[g] for g, _, _ in terms):
                self._masks[name] = None
                continue
            cin = self.space.layers[name].in_channels
            mask = torch.ones(cin, dtype=gates[terms[0][0]].dtype)
            for g, in_idx, root_idx in terms:
                mask = mask.index_put((in_idx,), gates[g][root_idx])
            self._masks[name] = mask.to(self._device)

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """The hooks pass everything through inside (e.g. for a call on already-sliced
        tensors); the architecture is back on exit."""
        masks, self._masks = self._masks, {name: None for name in self._consumers}
        try:
            yield
        finally:
            self._masks = masks

    def reset(self) -> None:
        """Back to the full network."""
        self._masks = {name: None for name in self._consumers}
        self.counts = self.space.num_channels.copy()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> ChannelMasker:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
