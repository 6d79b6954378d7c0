"""Cache of FID Inception features of real images (GAN Compression's and OMGD's ``real_stat``).

The real side of an FID never changes between the models compared on one split, yet it costs
as much as the generated side (one Inception pass per image: about 0.3 s per image on a CPU
core). Its features are cached under ``<cache_dir>/fid_real_features/<key>.pt``, keyed by a
SHA-1 of the exact uint8 images (in order) and of the Inception weights: any change of data,
split, resolution, preprocessing or image count gives another key, so a stale entry is never
read. Features (not only mean and covariance) are kept because KID and the bootstrap need them.
Files are written atomically; an unreadable entry is recomputed.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import torch
from torch import nn

from gan_prune_env.checkpoint import save_checkpoint
from gan_prune_env.evaluation.inception import cache_dir

FOLDER = "fid_real_features"
FORMAT = 1


class RealFeatureCache:
    """Collects real uint8 images, then returns their features from the cache or computes them.

    Only extractors carrying a ``weights_sha1`` (verified FID Inception weights, see
    :func:`~gan_prune_env.evaluation.inception.load_fid_inception`) are cached: features of
    unverified or random weights are recomputed every time.
    """

    def __init__(self, extractor: nn.Module, batch_size: int, enabled: bool = True) -> None:
        self.extractor, self.batch_size = extractor, batch_size
        self.weights = getattr(extractor, "weights_sha1", None)
        self.enabled = enabled and self.weights is not None
        self.images: list[torch.Tensor] = []
        self.digest = hashlib.sha1(f"format={FORMAT};weights={self.weights}".encode())
        self.hit: bool | None = None

    def add(self, images: torch.Tensor) -> None:
        """``images``: uint8 ``[N, C, H, W]``."""
        images = images.cpu().contiguous()
        self.digest.update(str(tuple(images.shape)).encode())
        self.digest.update(images.numpy().tobytes())
        self.images.append(images)

    @property
    def path(self) -> Path:
        return cache_dir() / FOLDER / f"{self.digest.hexdigest()}.pt"

    def features(self) -> torch.Tensor:
        """Features ``[N, D]`` (float64) of every image added, in order."""
        if self.enabled:
            cached = self._read()
            if cached is not None:
                self.hit = True
                return cached
        self.hit = False
        features = self._compute()
        if self.enabled:
            save_checkpoint(self.path, {"format": FORMAT, "weights_sha1": self.weights,
                                        "features": features})
        return features

    def _read(self) -> torch.Tensor | None:
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
            features = payload["features"]
        except Exception:  # noqa: BLE001 - a broken cache entry is recomputed, never trusted
            return None
        count = sum(i.shape[0] for i in self.images)
        return features if features.shape[0] == count else None

    @torch.inference_mode()
    def _compute(self) -> torch.Tensor:
        images = torch.cat(self.images) if self.images else torch.empty(0, 3, 1, 1, dtype=torch.uint8)
        device = next(itertools.chain(self.extractor.parameters(),
                                      self.extractor.buffers())).device
        parts = [self.extractor(images[i:i + self.batch_size].to(device)).double().cpu()
                 for i in range(0, images.shape[0], self.batch_size)]
        return torch.cat(parts)
