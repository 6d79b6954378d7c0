"""Torch devices checked before any work: a name that cannot run here is a one-line error."""

from __future__ import annotations

import torch
from torch import nn


class DeviceError(ValueError):
    """A device name that is not a device, or one this machine's torch cannot use."""


def check_device(device: str | torch.device, name: str = "device") -> torch.device:
    """The parsed ``device``; a :class:`DeviceError` naming the fix when it cannot run here
    (``tpu``, ``cuda`` on a CPU-only torch, an absent ``cuda:3``): a long run should not find
    that out at its first tensor, after its run folder exists. ``name`` is what the user set
    (``--device`` on a command line), so the message names it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"{name} {str(device)!r} is not a device (cpu, cuda, cuda:1, mps, "
                          "...)") from err
    if parsed.type == "cuda" and not torch.cuda.is_available():
        build = " (a CPU-only build)" if torch.version.cuda is None else ""
        raise DeviceError(f"{name} {parsed}: torch {torch.__version__}{build} sees no CUDA GPU; "
                          f"use {name} cpu")
    try:
        torch.zeros(1, device=parsed)
    except (RuntimeError, AssertionError) as err:
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise DeviceError(f"{name} {parsed} cannot be used here: {first_line}") from err
    return parsed


def module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters (else buffers) live; the CPU for a module with neither."""
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def has_native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively (a CPU with AMX or AVX512-BF16, as
    oneDNN reports it; any CUDA GPU counts, its support being per kernel): elsewhere bfloat16 is
    emulated and slower than float32, which is worth a warning, not an error."""
    if device.type != "cpu":
        return True
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(supported is not None and supported())
