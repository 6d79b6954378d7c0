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
    """Sliced parameters and buffers of ``model`` for any channel counts of ``space``.

    Args:
        model: the network whose tensors are sliced (its modules run them).
        space: its pruning space.
        widths_per_group: 0 cuts each group to exactly its kept channels. ``n > 0`` runs a
            group at the smallest of ``n`` evenly spaced widths (multiples of
            ``ceil(channels / n)``) that holds its kept channels; the extra channels are the
            next ones by rank, and no layer reads them (their input weights are zeroed in every
            consumer), so the outputs are the same up to float rounding. Why: oneDNN builds a
            kernel for every new shape of a convolution and keeps the most recent ones; on a CPU
            at 64 px building it costs more than running it, and an agent that tries a new
            channel count every round would pay that in every layer. With ``n`` widths per
            group the shapes repeat and their kernels are reused, for a little more arithmetic
            than the exact widths.
    """

    def __init__(self, model: nn.Module, space: ChannelSpace, widths_per_group: int = 0) -> None:
        if widths_per_group < 0:
            raise ValueError(f"widths_per_group must be >= 0 (0: exact widths), got "
                             f"{widths_per_group}")
        self.model, self.space = model, space
        self.widths_per_group = widths_per_group
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
        kept: dict[int, torch.Tensor] = {}  # group -> root channels run (kept and idle)
        idle: dict[int, torch.Tensor] = {}  # group -> root channels run but read by no layer
        for group, count in zip(self.space.groups, counts):
            width = self.run_width(group.num_channels, int(count))
            if width < group.num_channels:
                kept[group.index] = group.keep_indices(width)
            if width > count:
                idle[group.index] = group.ranking[int(count):width]
        result: dict[str, torch.Tensor] = {}
        for name in self._sliceable:
            out_idx = self._out_indices(name, kept)
            in_idx = self._in_indices(name, kept)
            idle_in = self._idle_inputs(name, in_idx, idle)
            if out_idx is None and in_idx is None and idle_in is None and not fresh_statistics:
                continue
            result.update(self._slice_module(name, out_idx, in_idx, idle_in, fresh_statistics))
        if fresh_statistics:
            for prefix, module in self._ungrouped_norms:
                result.update(self._fresh_statistics(prefix, module.num_features,
                                                     module.running_mean))
        return result

    def run_width(self, channels: int, count: int) -> int:
        """The width a group of ``channels`` keeping ``count`` runs at (``widths_per_group``)."""
        if not self.widths_per_group:
            return int(count)
        step = -(-int(channels) // self.widths_per_group)
        return min(-(-int(count) // step) * step, int(channels))

    def _idle_inputs(self, name: str, in_idx: torch.Tensor | None,
                     idle: dict[int, torch.Tensor]) -> torch.Tensor | None:
        """Which of the (sliced) inputs of layer ``name`` are idle channels, or None if none."""
        terms = [t for t in self._in_terms.get(name, ()) if t[0] in idle]
        if not terms:
            return None
        is_idle = torch.zeros(self.space.layers[name].in_channels, dtype=torch.bool)
        for group, in_pos, root_idx in terms:
            is_idle[in_pos[torch.isin(root_idx, idle[group])]] = True
        return is_idle if in_idx is None else is_idle[in_idx]

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
                      in_idx: torch.Tensor | None, idle_in: torch.Tensor | None, fresh: bool
                      ) -> dict[str, torch.Tensor]:
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
        weight = _select(_select(module.weight, out_dim, out_idx), in_dim, in_idx)
        if idle_in is not None:  # idle channels are read by nothing
            shape = [1] * weight.dim()
            shape[in_dim] = -1
            weight = weight * (~idle_in).to(weight).view(shape)
        result[prefix + "weight"] = weight
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
