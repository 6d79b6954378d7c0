"""Paired image data for Pix2Pix/CycleGAN generators.

``build_dataset(DataConfig(...), split)`` returns a torch Dataset of
``{"A": input [3,H,W] in [-1,1], "B": target, "A_path": str, "B_path": str}``. With the default
``root=None`` it is the built-in procedural label-map -> photo task, which needs no files.
Standard datasets are fetched with ``python -m gan_prune_env.data.download NAME --root DIR``
(``gan_prune_env.data.download.download_dataset``; not imported here so ``-m`` runs cleanly).
"""

from gan_prune_env.data.base import PairDataset, Sample
from gan_prune_env.data.config import DataConfig
from gan_prune_env.data.datasets import (
    AlignedDataset,
    UnalignedDataset,
    build_dataset,
    evaluation_split,
    seeded_inputs,
    split_pair,
)
from gan_prune_env.data.images import (
    EmptyFolderError,
    ImageLoadError,
    list_images,
    load_image,
    load_rgb,
)
from gan_prune_env.data.procedural import ProceduralPairs, render_scene
from gan_prune_env.data.transforms import Augmentation, ImageTransform, sample_rng, to_tensor

__all__ = [
    "AlignedDataset",
    "Augmentation",
    "DataConfig",
    "EmptyFolderError",
    "ImageLoadError",
    "ImageTransform",
    "PairDataset",
    "ProceduralPairs",
    "Sample",
    "UnalignedDataset",
    "build_dataset",
    "evaluation_split",
    "list_images",
    "load_image",
    "load_rgb",
    "render_scene",
    "sample_rng",
    "seeded_inputs",
    "split_pair",
    "to_tensor",
]
