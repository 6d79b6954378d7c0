"""Checkpoint files that carry their own architecture, written atomically.

A checkpoint is a ``torch.save``-d dict::

    {
      "format": "gan_prune_env.checkpoint/1",
      "kind": "teacher" | "pruned" | "train_state",
      "family": "pix2pix" | "cyclegan",
      "generator_config": {...},      # GeneratorConfig of the main (A -> B) generator
      "discriminator_config": {...},  # DiscriminatorConfig of the main discriminator
      "<network name>": state_dict,   # one entry per network, see NETWORKS
      "kept": {"<network name>": {"<group root layer>": [kept channel indices]}},  # pruned only
      "input_shape": {"<network name>": [C, H, W]},  # the shape the network was sliced at
      "weights_dtype": "float32" | "float16",  # storage dtype; loading casts to the model's
      "train_state": {...},           # train_state only: optimisers, step, RNG states, ...
      "metadata": {...},              # free-form provenance (losses, test scores, ...)
    }

The networks of each family and their names are those of :mod:`gan_prune_env.families`.

Loading rebuilds each network from the embedded config (and slices it to the stored ``kept``
channels), then loads the weights strictly; anything that does not fit raises
:class:`CheckpointError` with the expected and found architecture and the offending keys.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from gan_prune_env.atomic import write_atomically
from gan_prune_env.config import ConfigError, from_dict, to_dict
from gan_prune_env.families import (
    FAMILIES,
    build_network,
    check_family_configs,
    network_config,
    network_names,
)
from gan_prune_env.models import DiscriminatorConfig, GeneratorConfig
from gan_prune_env.pruning import slice_by_indices

FORMAT = "gan_prune_env.checkpoint/1"
KINDS = ("teacher", "pruned", "train_state")
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16}
Source = Union[str, os.PathLike, Mapping[str, Any]]
"""A checkpoint path, or a payload already read with :func:`read_checkpoint`."""

_LIST_LIMIT = 5  # keys listed per category in mismatch errors


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable, not ours, or does not fit the network it is loaded into."""


# --- writing ----------------------------------------------------------------------------------


def _stored_state(module_or_state: nn.Module | Mapping[str, torch.Tensor],
                  dtype: torch.dtype) -> dict[str, torch.Tensor]:
    state = (module_or_state.state_dict() if isinstance(module_or_state, nn.Module)
             else module_or_state)
    return {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
            for k, v in state.items()}


def make_checkpoint(
    kind: str,
    family: str,
    networks: Mapping[str, nn.Module | Mapping[str, torch.Tensor]],
    generator_config: GeneratorConfig,
    discriminator_config: DiscriminatorConfig,
    *,
    kept: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
    input_shape: Mapping[str, Sequence[int]] | None = None,
    train_state: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    weights_dtype: str = "float32",
) -> dict[str, Any]:
    """Assemble a checkpoint payload (see the module docstring) for :func:`save_checkpoint`.

    Args:
        networks: modules or state dicts by network name (a subset of ``network_names(family)``).
        kept: for physically sliced networks, the kept root-channel indices per channel group
            (``ChannelSpace.keep_indices``); ``input_shape`` must then name the example input
            shape ``[C, H, W]`` the network was sliced with.
        weights_dtype: ``"float16"`` halves the file size; loading casts back to float32.
    """
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind {kind!r} is not one of {KINDS}")
    check_family_configs(family, generator_config, discriminator_config)
    if weights_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype {weights_dtype!r} is not one of {list(WEIGHT_DTYPES)}")
    unknown = sorted(set(networks) - set(network_names(family)))
    if unknown:
        raise ValueError(f"{family} has no network(s) {unknown}; it has {network_names(family)}")
    kept = {name: {g: [int(i) for i in idx] for g, idx in groups.items()}
            for name, groups in (kept or {}).items()}
    input_shape = {name: [int(s) for s in shape] for name, shape in (input_shape or {}).items()}
    lacking = sorted(set(kept) - set(input_shape))
    if lacking:
        raise ValueError(f"pruned network(s) {lacking} need an input_shape to be rebuilt")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "family": family,
        "generator_config": to_dict(generator_config),
        "discriminator_config": to_dict(discriminator_config),
        "weights_dtype": weights_dtype,
        "metadata": dict(metadata or {}),
    }
    dtype = WEIGHT_DTYPES[weights_dtype]
    payload.update({name: _stored_state(net, dtype) for name, net in networks.items()})
    if kept:
        payload["kept"], payload["input_shape"] = kept, input_shape
    if train_state is not None:
        payload["train_state"] = dict(train_state)
    return payload


def save_checkpoint(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` with ``torch.save`` so that ``path`` is never half-written
    (:func:`gan_prune_env.atomic.write_atomically`)."""
    return write_atomically(path, lambda handle: torch.save(payload, handle))


# --- reading ----------------------------------------------------------------------------------


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        export = _export_kind(path)
        if export is not None:
            raise CheckpointError(
                f"{path}: a {export} export of a generator, not a checkpoint; exports run with "
                "python -m gan_prune_env.translate --checkpoint FILE --input DIR --out DIR"
            ) from err
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt, truncated or not a "
                              f"torch file): {_load_failure(err)}") from err


def _load_failure(err: Exception) -> str:
    """torch's reason in one line, without its advice (which suggests ``weights_only=False``,
    i.e. running code from the file)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        lines = [line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines()]
        detail = next((line for line in lines if line), "unsupported content")
        return f"weights-only unpickling refused its contents ({detail})"
    return (text.strip().splitlines() or [type(err).__name__])[0]


def _export_kind(path: Path) -> str | None:
    """"TorchScript" or "ONNX" when ``path`` holds one of the exports a run writes, by content:
    a TorchScript archive is a zip with a ``code/`` folder; an ONNX model is a protobuf whose
    first field is ``ir_version`` (byte 0x08)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return "TorchScript" if any("/code/" in n for n in archive.namelist()) else None
    with open(path, "rb") as handle:
        return "ONNX" if handle.read(1) == b"\x08" else None


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint payload; any problem raises CheckpointError naming ``path``.

    The returned dict gains a ``"path"`` entry (the file it came from) for later messages.
    """
    path = Path(path)
    payload = _torch_load(path)
    if not isinstance(payload, dict) or "format" not in payload:
        raise CheckpointError(
            f"{path}: not a gan_prune_env checkpoint (no 'format' entry); a bare state dict "
            "of the reference code is imported with python -m gan_prune_env.import_reference "
            "CHECKPOINT_FOLDER --out DIR (or loaded with load_reference_state_dict)"
        )
    if payload["format"] != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {payload['format']!r}, "
                              f"this version reads {FORMAT!r}")
    missing = [k for k in ("kind", "family", "generator_config", "discriminator_config")
               if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks entries {missing}")
    if payload["kind"] not in KINDS or payload["family"] not in FAMILIES:
        raise CheckpointError(f"{path}: unknown kind {payload['kind']!r} or family "
                              f"{payload['family']!r} (expected one of {KINDS} / {FAMILIES})")
    payload["path"] = str(path)
    return payload


def _payload(source: Source) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    return read_checkpoint(source)


def embedded_configs(source: Source) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    """The main generator's and discriminator's configs stored in a checkpoint."""
    payload = _payload(source)
    where = payload.get("path", "checkpoint")
    try:
        return (from_dict(GeneratorConfig, payload["generator_config"]),
                from_dict(DiscriminatorConfig, payload["discriminator_config"]))
    except ConfigError as err:
        raise CheckpointError(f"{where}: invalid embedded architecture config: {err}") from err


def _load_network(source: Source, which: str | None, role: str, device: str) -> nn.Module:
    payload = _payload(source)
    where, family = payload.get("path", "checkpoint"), payload["family"]
    names = network_names(family, role)
    name = which or names[0]
    if name not in names:
        raise CheckpointError(f"{where}: a {family} checkpoint's {role}s are {list(names)}, "
                              f"not {name!r}")
    if name not in payload:
        present = [n for n in network_names(family) if n in payload]
        raise CheckpointError(f"{where}: holds no {name!r} network (it holds {present})")
    config = network_config(family, name, *embedded_configs(payload))
    model, expected = build_network(config), repr(config)
    if payload.get("kept", {}).get(name):
        model = _slice_to_kept(model, payload, name)
        expected += " sliced to the stored kept channels"
    load_state_dict_checked(model, payload[name], source=f"{where} [{name}]", expected=expected)
    return model.to(device).eval()


def _slice_to_kept(model: nn.Module, payload: Mapping[str, Any], name: str) -> nn.Module:
    """Physically slice a freshly built network to a pruned checkpoint's kept channels."""
    where = payload.get("path", "checkpoint")
    shape = payload.get("input_shape", {}).get(name)
    if shape is None:
        raise CheckpointError(f"{where}: pruned network {name!r} has no input_shape")
    try:
        return slice_by_indices(model, torch.zeros(1, *shape), payload["kept"][name], inplace=True)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{where}: kept channels of {name!r} do not fit its "
                              f"architecture: {err}") from err


def load_generator(source: Source, which: str | None = None, device: str = "cpu") -> nn.Module:
    """Rebuild a generator from a checkpoint (sliced if pruned) and load its weights strictly.

    Args:
        source: checkpoint path or a payload from :func:`read_checkpoint`.
        which: network name; default the main one (``generator`` / ``generator_AB``).

    Returns:
        The generator in eval mode on ``device``.
    """
    return _load_network(source, which, "generator", device)


def load_discriminator(source: Source, which: str | None = None, device: str = "cpu") -> nn.Module:
    """Like :func:`load_generator` for discriminators (default ``discriminator`` /
    ``discriminator_B``, the one judging the main generator's outputs)."""
    return _load_network(source, which, "discriminator", device)


# --- strict loading with readable errors ------------------------------------------------------


def describe_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Best-effort architecture of a state dict in our (= the reference's) naming."""
    keys = list(state_dict)
    if any(".conv_block." in k for k in keys):
        blocks = {k.split(".")[1] for k in keys if ".conv_block." in k}
        stem = state_dict.get("model.1.weight")
        ngf = stem.shape[0] if stem is not None else "?"
        return f"ResNet generator ({len(blocks)} blocks, ngf={ngf})"
    if "model.model.0.weight" in state_dict:
        levels = max(k.count("model.") for k in keys) - 1
        first = state_dict["model.model.0.weight"]
        return f"U-Net generator ({levels} levels, ngf={first.shape[0]}, input_nc={first.shape[1]})"
    convs = [k for k in keys if k.startswith("model.") and k.endswith(".weight")
             and state_dict[k].dim() == 4]
    if "model.0.weight" in state_dict and state_dict["model.0.weight"].shape[-1] == 4:
        first = state_dict["model.0.weight"]
        return (f"PatchGAN discriminator ({len(convs) - 2} layers, ndf={first.shape[0]}, "
                f"input_nc={first.shape[1]})")
    return f"unrecognised architecture ({len(keys)} tensors)"


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def load_state_dict_checked(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
    expected: str | None = None,
) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with an explanation on mismatch.

    Raises:
        CheckpointError: naming ``source``, the expected architecture (``expected`` or a
            description of ``model``), the architecture the state dict looks like, and a few
            missing keys, unexpected keys and shape mismatches.
    """
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise CheckpointError(f"{source}: expected a state dict (names -> tensors)")
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k}: file {list(state_dict[k].shape)} vs model {list(own[k].shape)}"
                  for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        problems = [f"{len(items)} {label} ({_examples(items)})" for label, items in
                    (("missing keys", missing), ("unexpected keys", unexpected),
                     ("shape mismatches", mismatched)) if items]
        raise CheckpointError(
            f"{source}: weights do not fit the model. Expected architecture: "
            f"{expected or describe_state_dict(own)}; found: {describe_state_dict(state_dict)}. "
            + "; ".join(problems)
        )
    model.load_state_dict(state_dict, strict=True)


def _patch_instance_norm_keys(state_dict: dict[str, torch.Tensor], model: nn.Module) -> None:
    """The reference's ``__patch_instance_norm_state_dict``: checkpoints from before PyTorch 0.4
    carry running statistics for InstanceNorm layers that track none; drop them."""
    for key in list(state_dict):
        prefix, _, leaf = key.rpartition(".")
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            continue
        if not isinstance(module, nn.modules.instancenorm._InstanceNorm):
            continue
        stale_stat = leaf in ("running_mean", "running_var") and getattr(module, leaf) is None
        if stale_stat or leaf == "num_batches_tracked":
            del state_dict[key]


def read_reference_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The bare state dict of a pytorch-CycleGAN-and-pix2pix ``.pth``, with the ``module.``
    prefix ``DataParallel`` leaves stripped; an unreadable file or one of ours raises
    CheckpointError naming it."""
    state_dict = _torch_load(Path(path))
    if isinstance(state_dict, Mapping) and "format" in state_dict:
        raise CheckpointError(f"{path}: this is a gan_prune_env checkpoint, not a reference "
                              "state dict; use load_generator/load_discriminator")
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors), got "
                              f"{type(state_dict).__name__}")
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def load_reference_state_dict(
    path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor], model: nn.Module
) -> nn.Module:
    """Load a released pytorch-CycleGAN-and-pix2pix ``.pth`` (a bare state dict) into ``model``.

    Only the reference's own compatibility fixes are applied: a ``module.`` prefix left by
    ``DataParallel`` is stripped and stale InstanceNorm statistics are dropped; everything else
    must match exactly (``strict=True``). Returns ``model``.
    """
    if isinstance(path_or_state_dict, Mapping):
        source = "state dict"
        state_dict = {k.removeprefix("module."): v for k, v in path_or_state_dict.items()}
    else:
        source = str(path_or_state_dict)
        state_dict = read_reference_state_dict(path_or_state_dict)
    _patch_instance_norm_keys(state_dict, model)
    load_state_dict_checked(model, state_dict, source=source)
    return model
