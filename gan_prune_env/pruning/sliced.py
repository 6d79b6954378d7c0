"""Run an architecture at its true width without building a new network.

Masks (``masking``) compute a pruned network's outputs at the full network's cost. For scoring
many architectures with frozen weights, slicing each weight and norm tensor to the kept channels
and calling the *same* modules on them (``torch.func.functional_call``) computes the same outputs
at the pruned network's cost, with no copy of any module and no dependency-graph pass: an
architecture is one ``index_select`` per tensor. ``slicing.slice_model`` stays the way to build a
standalone network (checkpoints, fine-tuning).

A model this cannot slice exactly (a layer with per-channel parameters outside the groups'
producers, norms and consumers, grouped convolutions) is refused at construction by
:meth:`ArchitectureSlicer.check`, which compares sliced with masked outputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from gan_prune_env.pruning.masking import ChannelMasker
from gan_prune_env.pruning.space import ChannelSpace

_NORMS = nn.modules.batchnorm._NormBase
# (output dim, input dim) of each layer kind's weight
_WEIGHT_DIMS = {nn.Conv2d: (0, 1), nn.Conv1d: (0, 1), nn.Linear: (0, 1),
                nn.ConvTranspose2d: (1, 0), nn.ConvTranspose1d: (1, 0)}


class SlicingUnsupported(ValueError):
    """The model has a layer whose channels the slicer would not cut consistently."""


class ArchitectureSlicer:
    """Sliced parameters and buffers of ``model`` for any channel counts of ``space``."""

    def __init__(self, model: nn.Module, space: ChannelSpace) -> None:
        self.model, self.space = model, space
        self._out_group: dict[str, int] = {}
        self._in_terms: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        for group in space.groups:
            for name in (*group.producers, *group.norm_layers):
                self._out_group[name] = group.index
            for consumer in group.consumers:
                self._in_terms.setdefault(consumer.module_name, []).append(
                    (group.index, consumer.in_idx, consumer.root_idx))
        self._modules = dict(model.named_modules())
        for name in {*self._out_group, *self._in_terms}:
            module = self._modules[name]
            if not isinstance(module, (*_WEIGHT_DIMS, _NORMS)):
                raise SlicingUnsupported(f"layer {name!r} ({type(module).__name__}) is not a "
                                         "convolution, linear layer or norm")
            if getattr(module, "groups", 1) != 1:
                raise SlicingUnsupported(f"layer {name!r} is a grouped convolution")
        self._norms = [m for m in model.modules() if isinstance(m, _NORMS)
                       and m.track_running_stats]
        self._sliceable = sorted({*self._out_group, *self._in_terms})
        # norms outside every group, whose statistics a recalibration still starts afresh
        self._ungrouped_norms = [(f"{name}." if name else "", module)
                                 for name, module in self._modules.items()
                                 if isinstance(module, _NORMS) and module.track_running_stats
                                 and name not in self._out_group]

    @property
    def has_running_stats(self) -> bool:
        """Whether the model has norms with running statistics (adaptive BN applies)."""
        return bool(self._norms)

    def tensors(self, counts: Sequence[int] | np.ndarray, fresh_statistics: bool = False
                ) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of a layer whose width ``counts`` changes, sliced; with
        ``fresh_statistics`` the norms' running statistics start afresh (for recalibration)."""
        counts = self.space.check_counts(counts)
        kept = {g.index: g.keep_indices(int(n)) for g, n in zip(self.space.groups, counts)
                if int(n) < g.num_channels}
        result: dict[str, torch.Tensor] = {}
        for name in self._sliceable:
            out_idx = self._out_indices(name, kept)
            in_idx = self._in_indices(name, kept)
            if out_idx is None and in_idx is None and not fresh_statistics:
                continue
            result.update(self._slice_module(name, out_idx, in_idx, fresh_statistics))
        if fresh_statistics:
            for prefix, module in self._ungrouped_norms:
                result.update(self._fresh_statistics(prefix, module.num_features,
                                                     module.running_mean))
        return result

    def _out_indices(self, name: str, kept: dict[int, torch.Tensor]) -> torch.Tensor | None:
        group = self._out_group.get(name)
        return None if group is None or group not in kept else kept[group]

    def _in_indices(self, name: str, kept: dict[int, torch.Tensor]) -> torch.Tensor | None:
        terms = [t for t in self._in_terms.get(name, ()) if t[0] in kept]
        if not terms:
            return None
        info = self.space.layers[name]
        keep = torch.ones(info.in_channels, dtype=torch.bool)
        for group, in_idx, root_idx in terms:
            keep[in_idx[~torch.isin(root_idx, kept[group])]] = False
        return keep.nonzero().flatten()

    def _slice_module(self, name: str, out_idx: torch.Tensor | None,
                      in_idx: torch.Tensor | None, fresh: bool) -> dict[str, torch.Tensor]:
        module = self._modules[name]
        prefix = f"{name}." if name else ""
        result = {}
        if isinstance(module, _NORMS):
            for key in ("weight", "bias", "running_mean", "running_var"):
                tensor = getattr(module, key, None)
                if tensor is not None:
                    result[prefix + key] = _select(tensor, 0, out_idx)
            if fresh and module.track_running_stats:
                width = module.num_features if out_idx is None else len(out_idx)
                result.update(self._fresh_statistics(prefix, width, module.running_mean))
            return result
        out_dim, in_dim = _WEIGHT_DIMS[type(module)]
        weight = _select(module.weight, out_dim, out_idx)
        result[prefix + "weight"] = _select(weight, in_dim, in_idx)
        if module.bias is not None:
            result[prefix + "bias"] = _select(module.bias, 0, out_idx)
        return result

    @staticmethod
    def _fresh_statistics(prefix: str, width: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        return {prefix + "running_mean": like.new_zeros(width),
                prefix + "running_var": like.new_ones(width),
                prefix + "num_batches_tracked": torch.zeros((), dtype=torch.long,
                                                            device=like.device)}

    def __call__(self, tensors: dict[str, torch.Tensor], *args, **kwargs):
        """``model(*args)`` with ``tensors`` in place of the full ones."""
        with warnings.catch_warnings():
            # an InstanceNorm without affine reads its width from the input: it warns that the
            # width differs from ``num_features``, which is what slicing means
            warnings.filterwarnings("ignore", message=".*num_features.*")
            return functional_call(self.model, tensors, args, kwargs, strict=False)

    @contextmanager
    def recalibrating(self) -> Iterator[None]:
        """Forward passes inside estimate the norms' running statistics of the tensors passed
        (cumulative average, as ``envs.game.recalibrating``); the model's own are untouched."""
        momenta = [m.momentum for m in self._norms]
        was_training = self.model.training
        self.model.eval()
        for m in self._norms:
            m.momentum = None
            m.train()
        try:
            yield
        finally:
            for m, momentum in zip(self._norms, momenta):
                m.momentum = momentum
            self.model.train(was_training)

    @torch.no_grad()
    def check(self, masker: ChannelMasker, example: torch.Tensor, seed: int = 0,
              tolerance: float = 1e-4) -> None:
        """Raise :class:`SlicingUnsupported` unless sliced and masked outputs agree on a random
        architecture (each group at a random width) in eval mode."""
        rng = np.random.default_rng(seed)
        counts = np.array([rng.integers(1, c + 1) for c in self.space.num_channels])
        was_training = self.model.training
        self.model.eval()
        try:
            masker.set_counts(counts)
            expected = self.model(example)
            masker.reset()
            try:
                got = self(self.tensors(counts), example)
            except RuntimeError as err:
                raise SlicingUnsupported(f"the sliced model does not run: {err}") from err
        finally:
            masker.reset()
            self.model.train(was_training)
        scale = expected.abs().max().clamp_min(1.0)
        if got.shape != expected.shape or (got - expected).abs().max() > tolerance * scale:
            raise SlicingUnsupported("sliced and masked outputs differ: a layer with "
                                     "per-channel state lies outside the pruning groups")


def _select(tensor: torch.Tensor, dim: int, index: torch.Tensor | None) -> torch.Tensor:
    return tensor if index is None else tensor.index_select(dim, index.to(tensor.device))


__all__ = ["ArchitectureSlicer", "SlicingUnsupported"]
