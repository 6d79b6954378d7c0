"""The project's own fixed feature space for the *proxy* Fréchet distance and KID.

Why a seeded random-weight network (and not, e.g., the teacher's discriminator):

- **No downloads, no checkpoint.** The weights are drawn from NumPy's legacy ``RandomState``
  stream, which NumPy guarantees never to change, so every machine and every version of this
  package builds bit-identical weights from the same seed (:meth:`RandomConvFeatures.fingerprint`
  lets results record and check that).
- **Independent of what is being evaluated.** The teacher discriminator was trained against the
  teacher's own outputs, is task-specific (6 input channels for conditional Pix2Pix) and its
  pruned copy is fine-tuned alongside the student: scoring students in that space would be
  circular and incomparable across tasks. A random network has no stake in any of the models.
- **A known, if weaker, proxy.** Untrained convolutional networks already give useful
  perceptual statistics (Ulyanov et al., "Deep Image Prior", 2018; Naeem et al., "Reliable
  Fidelity and Diversity Metrics for Generative Models", ICML 2020, evaluate random embeddings
  for FID-style metrics). Random features react to colour, local texture energy and blur, but
  carry no semantics: proxy numbers rank models of one task; they are **not FID** and must never
  be compared with published FID values.

The extractor follows torchmetrics' contract for custom feature modules, so it can be passed as
``FrechetInceptionDistance(feature=RandomConvFeatures())`` or
``KernelInceptionDistance(feature=RandomConvFeatures())``: it exposes an int ``num_features`` and
maps a batch ``[N, 3, H, W]`` to ``[N, num_features]``. torchmetrics hands custom modules the
images unchanged, so the module accepts both of its input conventions: ``uint8`` in [0, 255]
(``normalize=False``) and floats in [0, 1] (``normalize=True``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PROXY_NAME = "random-conv-v1"
"""Identifier of the proxy feature space, recorded next to every proxy number."""


def images_to_unit(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` [0, 255] or float [0, 1] images -> float32 in [0, 1], three channels.

    Grey-scale (one-channel) images are repeated to RGB, as FID pipelines do.
    """
    if images.dim() != 4:
        raise ValueError(f"expected a batch of images [N, C, H, W], got shape {list(images.shape)}")
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif not images.is_floating_point():
        raise TypeError(f"expected uint8 or floating-point images, got {images.dtype}")
    else:
        images = images.float()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 image channels, got {images.shape[1]}")
    return images


class RandomConvFeatures(nn.Module):
    """Fixed random convolutional features (the proxy space, see the module docstring).

    Images are resized (bilinear, antialiased) to ``input_size`` and scaled to [-1, 1], then go
    through ``len(widths)`` stride-2 4x4 convolutions with LeakyReLU(0.2) (a PatchGAN-like
    trunk). The features are the spatial means of the activations of the layers in ``pooled``,
    concatenated: ``num_features = sum(widths[i] for i in pooled)`` (448 by default), i.e. a
    multi-scale descriptor of colour and texture statistics.

    Weights are He-normal for LeakyReLU(0.2) from ``numpy.random.RandomState(seed)``; biases are
    zero. They are buffers, not parameters: nothing can train them and ``state_dict`` carries
    them.
    """

    def __init__(self, seed: int = 0, widths: Sequence[int] = (32, 64, 128, 256),
                 pooled: Sequence[int] = (1, 2, 3), input_size: int = 256) -> None:
        super().__init__()
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be positive channel counts, got {list(widths)}")
        if not pooled or any(not 0 <= i < len(widths) for i in pooled):
            raise ValueError(f"pooled must index widths (0..{len(widths) - 1}), got {list(pooled)}")
        if input_size < 2 ** len(widths):
            raise ValueError(f"input_size {input_size} is too small for {len(widths)} stride-2 "
                             "layers")
        self.seed = int(seed)
        self.widths = tuple(int(w) for w in widths)
        self.pooled = tuple(sorted(int(i) for i in pooled))
        self.input_size = int(input_size)
        self.num_features = int(sum(self.widths[i] for i in self.pooled))
        rng = np.random.RandomState(self.seed)
        in_channels = 3
        for i, width in enumerate(self.widths):
            fan_in = in_channels * 16
            std = math.sqrt(2.0 / ((1.0 + 0.2**2) * fan_in))
            weight = rng.standard_normal((width, in_channels, 4, 4)) * std
            self.register_buffer(f"weight{i}", torch.from_numpy(weight.astype(np.float32)))
            in_channels = width
        self.requires_grad_(False)
        self.eval()

    @property
    def name(self) -> str:
        """Identifier of this feature space, e.g. ``random-conv-v1(seed=0,...)``."""
        return (f"{PROXY_NAME}(seed={self.seed},widths={list(self.widths)},"
                f"pooled={list(self.pooled)},size={self.input_size})")

    def fingerprint(self) -> str:
        """Short SHA-256 of the weights: equal fingerprints mean the same feature space."""
        digest = hashlib.sha256()
        for i in range(len(self.widths)):
            digest.update(getattr(self, f"weight{i}").detach().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` uint8 [0, 255] or float [0, 1] -> ``[N, num_features]`` float32."""
        x = images_to_unit(images).to(self.weight0.device)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        x = 2.0 * x - 1.0
        features = []
        for i in range(len(self.widths)):
            x = F.leaky_relu(F.conv2d(x, getattr(self, f"weight{i}"), stride=2, padding=1), 0.2)
            if i in self.pooled:
                features.append(x.mean(dim=(2, 3)))
        return torch.cat(features, dim=1)


class PrecomputedFeatures(nn.Module):
    """Identity "extractor" for torchmetrics: lets FID/KID metrics consume features computed
    once elsewhere (``metric.update(features, real=...)`` with ``features`` ``[N, num_features]``)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"expected features [N, {self.num_features}], got "
                             f"{list(features.shape)}")
        return features
