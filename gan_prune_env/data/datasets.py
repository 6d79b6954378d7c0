"""Image-folder datasets in the pix2pix (aligned) and CycleGAN (unaligned) layouts."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gan_prune_env.data.base import PairDataset
from gan_prune_env.data.config import DataConfig
from gan_prune_env.data.images import CHANNEL_MODES, list_images, load_image
from gan_prune_env.data.procedural import ProceduralPairs
from gan_prune_env.data.transforms import ImageTransform

MIN_HALF_SIZE = 2
"""Smallest width and height (pixels) of each half of an aligned A|B image."""


def split_folder(root: str | Path, name: str) -> Path:
    """``root/name``, or FileNotFoundError naming the missing folder (and the ones that exist)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    folder = root / name
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(f"split folder not found: {folder} (folders in {root}: {present})")
    return folder


EVAL_SPLITS = ("test", "val")
"""Held-out splits, in the order :func:`evaluation_split` looks for them."""


def evaluation_split(config: DataConfig) -> str:
    """The split that evaluates models: ``config.eval_split`` if set, else the first of
    ``EVAL_SPLITS`` the dataset has (the procedural task always has ``test``).

    Raises:
        FileNotFoundError: the dataset folder has none of them, naming the folders it has and
            the setting that picks another.
    """
    if config.eval_split is not None or config.root is None:
        return config.eval_split or "test"
    root = Path(config.root)
    suffix = "A" if config.mode == "unaligned" else ""
    for split in EVAL_SPLITS:
        if (root / f"{split}{suffix}").is_dir():
            return split
    present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    raise FileNotFoundError(
        f"dataset {root} has no held-out split ({' or '.join(s + suffix for s in EVAL_SPLITS)}; "
        f"folders there: {present}); name the one to evaluate on with data.eval_split"
    )


def split_pair(image: Image.Image, path: str | Path) -> tuple[Image.Image, Image.Image]:
    """Cut a pix2pix side-by-side image into its left (A) and right (B) halves."""
    width, height = image.size
    if width % 2 or width < 2 * MIN_HALF_SIZE or height < MIN_HALF_SIZE:
        raise ValueError(
            f"{path}: an aligned image holds A|B side by side, so it needs an even width of at "
            f"least {2 * MIN_HALF_SIZE} px and a height of at least {MIN_HALF_SIZE} px; "
            f"got {width}x{height}"
        )
    half = width // 2
    if half != height:
        _warn_once(str(Path(path).parent), f"{path}: an aligned image is usually two square halves (width = 2 x height), "
                   f"this one is {width}x{height}: each {half}x{height} half is resized to a "
                   "square, which stretches it. Check that the folder holds A|B pairs")
    return image.crop((0, 0, half, height)), image.crop((half, 0, width, height))


_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    """One warning per ``key`` (a folder), not one per image of a dataset."""
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, stacklevel=3)


class AlignedDataset(PairDataset):
    """pix2pix pairs: ``root/<split>/*.jpg|png``, each image A on the left half, B on the right.

    A and B receive the same crop and flip, so pixel correspondence survives augmentation.
    """

    def __init__(self, root: str | Path, split: str, config: DataConfig) -> None:
        super().__init__(split, config)
        self.folder = split_folder(root, split)
        self.files = list_images(self.folder)
        self.transform = ImageTransform(config, self.train)

    def image_files(self) -> list[Path]:
        return list(self.files)

    def _num_items(self) -> int:
        return len(self.files)

    def _pair(
        self, index: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, str, str]:
        path = self.files[index]
        left, right = split_pair(load_image(path), path)
        channels = self.config.channels
        left, right = (half.convert(CHANNEL_MODES[channels[side]])
                       for half, side in ((left, "A"), (right, "B")))
        aug = self.transform.sample(rng)
        return self.transform(left, aug), self.transform(right, aug), str(path), str(path)


class UnalignedDataset(PairDataset):
    """CycleGAN domains: ``root/<split>A`` and ``root/<split>B`` (e.g. trainA, testB).

    The length is that of the larger domain. Item ``i`` takes A file ``i % len_A``; its B file is
    drawn pseudo-randomly from (seed, epoch, i) on the train split, so pairings change per epoch
    but not per worker count, and is ``i % len_B`` on other splits. A and B are augmented
    independently, as there is no pixel correspondence to preserve.
    """

    def __init__(self, root: str | Path, split: str, config: DataConfig) -> None:
        super().__init__(split, config)
        self.files_a = list_images(split_folder(root, f"{split}A"))
        self.files_b = list_images(split_folder(root, f"{split}B"))
        self.transform = ImageTransform(config, self.train)

    def image_files(self) -> list[Path]:
        return [*self.files_a, *self.files_b]

    def _num_items(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def _pair(
        self, index: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, str, str]:
        path_a = self.files_a[index % len(self.files_a)]
        b_index = int(rng.integers(len(self.files_b))) if self.train else index
        path_b = self.files_b[b_index % len(self.files_b)]
        return (self._load(path_a, "A", rng), self._load(path_b, "B", rng), str(path_a),
                str(path_b))

    def _load(self, path: Path, domain: str, rng: np.random.Generator) -> torch.Tensor:
        image = load_image(path, self.config.channels[domain])
        return self.transform(image, self.transform.sample(rng))


def build_dataset(config: DataConfig, split: str) -> PairDataset:
    """The dataset ``config`` describes: procedural when ``root`` is None, else by ``mode``."""
    if config.root is None:
        return ProceduralPairs(split, config)
    if config.mode == "aligned":
        return AlignedDataset(config.root, split, config)
    return UnalignedDataset(config.root, split, config)


def seeded_inputs(dataset: PairDataset, count: int, seed: int) -> torch.Tensor:
    """The generator inputs (``"A"``) of ``count`` images of ``dataset`` chosen by a permutation
    seeded by ``seed``: every user of a task's image pools (the env, the supernet's density
    term) draws the same images for the same seed. Callers check ``count`` against the split
    first, to name the option that sets it."""
    if count > len(dataset):
        raise ValueError(f"{count} images asked of a split of {len(dataset)}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return torch.stack([dataset[int(i)]["A"] for i in order[:count]])
