"""Image -> tensor transforms with explicit, reproducible randomness.

Random choices are *sampled* once (``ImageTransform.sample``) and then *applied* to any number of
images, which is how an aligned pair gets the same crop and flip on both halves. Randomness comes
from ``sample_rng(seed, epoch, index)``, never from global state, so a sample depends only on
those three numbers and not on the number of DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from gan_prune_env.data.config import DataConfig


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator behind every random choice made for item ``index`` in ``epoch``."""
    return np.random.default_rng((seed, epoch, index))


def to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """uint8 image (PIL, HxWxC or HxW array) -> float32 tensor [C, H, W] with values in [-1, 1];
    a grayscale image (PIL mode "L", HxW array) gives C = 1."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def hflip(tensor: torch.Tensor) -> torch.Tensor:
    """Mirror a [..., H, W] tensor left-right."""
    return tensor.flip(-1)


@dataclass(frozen=True)
class Augmentation:
    """One draw of the random augmentation: crop offset (pixels) and horizontal flip."""

    left: int = 0
    top: int = 0
    flip: bool = False


class ImageTransform:
    """Resize / crop / flip a PIL image into a network-ready tensor.

    Train (``train=True``): resize to ``load_size`` (bicubic), crop ``crop_size`` at the sampled
    offset, optionally flip. Eval: resize straight to ``crop_size`` and never flip, as in the
    pytorch-CycleGAN-and-pix2pix test protocol. ``preprocess="none"`` keeps the native size.
    """

    def __init__(self, config: DataConfig, train: bool) -> None:
        self.config = config
        self.train = train

    @property
    def _crops(self) -> bool:
        return self.train and self.config.preprocess == "resize_and_crop"

    def sample(self, rng: np.random.Generator) -> Augmentation:
        """Draw crop offset and flip; eval transforms draw nothing and return the identity."""
        if not self.train:
            return Augmentation()
        left = top = 0
        if self._crops:
            slack = self.config.load_size - self.config.crop_size
            left, top = (int(v) for v in rng.integers(0, slack + 1, size=2))
        flip = bool(self.config.flip and rng.random() < 0.5)
        return Augmentation(left=left, top=top, flip=flip)

    def __call__(self, image: Image.Image, aug: Augmentation) -> torch.Tensor:
        """Apply the (already sampled) augmentation ``aug`` to ``image``."""
        image = self._resize(image)
        if self._crops:
            size = self.config.crop_size
            image = image.crop((aug.left, aug.top, aug.left + size, aug.top + size))
        tensor = to_tensor(image)
        return hflip(tensor) if aug.flip else tensor

    def _resize(self, image: Image.Image) -> Image.Image:
        if self.config.preprocess == "none":
            return image
        size = self.config.load_size if self._crops else self.config.crop_size
        if image.size == (size, size):
            return image
        return image.resize((size, size), Image.Resampling.BICUBIC)
