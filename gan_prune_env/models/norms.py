"""Normalisation layers as the reference code builds them."""

from __future__ import annotations

import functools

from torch import nn

NORM_TYPES = ("batch", "instance", "none")


class Identity(nn.Module):
    def forward(self, x):  # noqa: D102 - trivially the identity
        return x


def get_norm_layer(norm_type: str) -> type[nn.Module] | functools.partial:
    """``batch``: BatchNorm with affine and running stats; ``instance``: InstanceNorm without
    either (reference defaults); ``none``: identity."""
    if norm_type == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm_type == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm_type == "none":
        return lambda _channels: Identity()
    raise ValueError(f"unknown norm {norm_type!r}; expected one of {NORM_TYPES}")


def uses_bias(norm_layer) -> bool:
    """Convs carry a bias only before InstanceNorm (the reference rule, kept for checkpoint keys)."""
    base = norm_layer.func if isinstance(norm_layer, functools.partial) else norm_layer
    return base is nn.InstanceNorm2d
