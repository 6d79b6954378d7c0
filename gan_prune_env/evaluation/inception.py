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

Weights are never fetched implicitly: :func:`load_fid_inception` reads a file the user gave or
the one ``python -m gan_prune_env.evaluation download-inception`` put into the cache directory
(``$GAN_PRUNE_CACHE`` or ``~/.cache/gan_prune_env``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
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
        x = self.preprocess(images.to(self.fc.weight.device))
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


# --- weights ----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$GAN_PRUNE_CACHE`` or ``~/.cache/gan_prune_env``."""
    env = os.environ.get("GAN_PRUNE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gan_prune_env"


def default_inception_path() -> Path:
    """Where ``download-inception`` puts the weights: ``<cache_dir>/inception/<file>``."""
    return cache_dir() / "inception" / FID_WEIGHTS_FILE


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


def load_fid_inception(path: str | os.PathLike | None = None,
                       device: str | torch.device = "cpu") -> FIDInceptionV3:
    """The FID Inception with the public weights, in eval mode on ``device``.

    Args:
        path: the ``.pth`` file; ``None`` looks in the cache (:func:`default_inception_path`).

    Raises:
        InceptionWeightsError: the file is missing (the message gives the download command),
            unreadable, or its keys/shapes do not match (the message names them).
    """
    if path is None:
        file = default_inception_path()
        if not file.is_file():
            raise InceptionWeightsError(
                f"FID Inception weights not found at {file}. Download them once with\n"
                f"    {DOWNLOAD_COMMAND}\n"
                f"(fetches {FID_WEIGHTS_URL} into $GAN_PRUNE_CACHE or ~/.cache/gan_prune_env), "
                "or pass the path of a copy of that file. Without them only the proxy metrics "
                "are available."
            )
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise InceptionWeightsError(
                f"FID Inception weights not found at {file}. Get {FID_WEIGHTS_FILE} with\n"
                f"    {DOWNLOAD_COMMAND}\n"
                f"or download {FID_WEIGHTS_URL} yourself."
            )
    try:
        state_dict = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, not a torch file
        raise InceptionWeightsError(f"{file}: not a readable torch weights file: {err}") from err
    model = FIDInceptionV3()
    model.load_state_dict(check_inception_state_dict(state_dict, model, source=str(file)),
                          strict=True)
    return model.to(device).eval()


def _file_hashes(path: Path) -> dict[str, str]:
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
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
