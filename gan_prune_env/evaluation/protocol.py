"""The evaluation protocols of METHOD section 10 (those of the published GAN-compression work).

- Paired (Pix2Pix) tasks, :func:`evaluate_paired`: the generator's outputs on the test (or val)
  inputs against the real test targets: PSNR/SSIM to the ground truth, proxy Fréchet distance
  and KID, FID/KID when FID Inception weights are given; PSNR/SSIM (and proxy FD/KID) to the
  teacher's outputs when a teacher is given.
- CycleGAN tasks, :func:`evaluate_cyclegan`: the generator's outputs on the test images of
  domain A against the real train+test images of domain B (there is no ground truth; PSNR/SSIM
  only to the teacher). :func:`cyclegan_eval_sets` builds both sets from a DataConfig.

Every run is deterministic: networks in eval mode (their modes are restored afterwards), no
shuffling, ``torch.inference_mode``, KID subsets from a seeded private RNG. Result keys:

- ``num_images``: generated images evaluated; ``num_real``: real images they are compared with.
- ``psnr`` (dB), ``ssim``: to the ground truth (paired only), mean over images.
- ``psnr_teacher``, ``ssim_teacher``: to the teacher's outputs on the same inputs (when a
  teacher is given; ``inf`` dB when the images are identical).
- ``proxy_fd``, ``proxy_kid``, ``proxy_kid_std``: Fréchet distance and KID (mean, std over
  subsets) in the project's fixed random-feature space
  (:mod:`gan_prune_env.evaluation.features`). **Not FID**: only for ranking models of one task.
- ``proxy_fd_teacher``, ``proxy_kid_teacher``, ``proxy_kid_teacher_std``: the same between the
  generated images and the teacher's outputs.
- ``fid``, ``fid_std``, ``kid``, ``kid_std``: the standard FID (std: over bootstrap resamples of
  the images) and KID (mean and std over subsets) in the FID Inception's pool3 space, only when
  FID Inception weights are given. Real images' features come from a cache
  (:mod:`~gan_prune_env.evaluation.real_features`) when they were computed before.

plus descriptive string entries: ``protocol``, ``proxy_space`` (name and weight fingerprint),
``fid_weights`` (file used, if any) and ``fid_real_features`` ("cached" or "computed").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from gan_prune_env.data import DataConfig, build_dataset, evaluation_split
from gan_prune_env.data.datasets import split_folder
from gan_prune_env.data.images import list_images, load_image
from gan_prune_env.data.transforms import Augmentation, ImageTransform
from gan_prune_env.devices import module_device
from gan_prune_env.evaluation.features import RandomConvFeatures
from gan_prune_env.evaluation.inception import load_fid_inception
from gan_prune_env.evaluation.metrics import (
    FID_BOOTSTRAP,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    FeatureDistance,
    ImageSimilarity,
    to_uint8,
)
from gan_prune_env.evaluation.real_features import RealFeatureCache

# --- image sets -------------------------------------------------------------------------------


class DomainImages(Dataset):
    """The images of one domain of one split, with the evaluation transform (no crop, no flip).

    Items are ``{"image": [C, H, W] in [-1, 1], "path": str}`` (C: the domain's channels). For a folder dataset (``root``
    set) ``domain`` "A" is the generator's input domain and "B" its output domain, whatever
    ``config.direction`` says; each file appears once, even in the unaligned layout where a
    split's length is that of its larger domain. For the procedural task (``root=None``) the
    items are the split's ``A`` or ``B`` images, unflipped. ``config.max_items`` caps the count.
    """

    def __init__(self, config: DataConfig, split: str, domain: str) -> None:
        if domain not in ("A", "B"):
            raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
        self.config, self.split, self.domain = config, split, domain
        self.files: list | None = None
        self.pairs: Dataset | None = None
        if config.root is None:
            self.pairs = build_dataset(replace(config, flip=False), split)
            count = len(self.pairs)
        else:
            self.folder_domain = (domain if config.direction == "AtoB"
                                  else "BA"["AB".index(domain)])
            if config.mode == "unaligned":
                self.files = list_images(split_folder(config.root,
                                                      f"{split}{self.folder_domain}"))
                self.transform = ImageTransform(config, train=False)
            else:  # aligned pairs: one image per pair, so the pair dataset has no duplicates
                self.pairs = build_dataset(replace(config, flip=False, preprocess=_eval_pre(config)),
                                           split)
            count = len(self.files) if self.files is not None else len(self.pairs)
        self.count = count if config.max_items is None else min(count, config.max_items)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} images")
        if self.files is not None:
            path = self.files[index]
            image = load_image(path, self.config.channels[self.folder_domain])
            return {"image": self.transform(image, Augmentation()), "path": str(path)}
        item = self.pairs[index]
        return {"image": item[self.domain], "path": item[f"{self.domain}_path"]}


def _eval_pre(config: DataConfig) -> str:
    """Evaluation-style preprocessing (resize to crop_size, no random crop)."""
    return "resize" if config.preprocess == "resize_and_crop" else config.preprocess


def cyclegan_eval_sets(config: DataConfig, test_split: str = "test",
                       real_splits: Sequence[str] = ("train", "test")) -> tuple[Dataset, Dataset]:
    """``(test_A, real_B)`` of the CycleGAN protocol: the ``test_split`` images of the input
    domain and the ``real_splits`` (train + test) images of the output domain, un-augmented."""
    test_a = DomainImages(config, test_split, "A")
    splits = list(dict.fromkeys(real_splits))  # each split once
    real_b = ConcatDataset([DomainImages(config, split, "B") for split in splits])
    return test_a, real_b


class _Images(Dataset):
    """A view of ``source`` yielding bare image tensors (items may be tensors or dicts holding
    ``"image"`` or ``key``)."""

    def __init__(self, source: Dataset | torch.Tensor, key: str) -> None:
        self.source, self.key = source, key

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.source[index]
        if isinstance(item, torch.Tensor):
            return item
        if isinstance(item, dict):
            for key in ("image", self.key):
                if key in item:
                    return item[key]
            raise KeyError(f"dataset items have neither 'image' nor {self.key!r}: {list(item)}")
        raise TypeError(f"dataset items must be tensors or dicts, got {type(item).__name__}")


def _capped(dataset: Dataset, max_images: int | None) -> Dataset:
    if max_images is None or max_images >= len(dataset):
        return dataset
    if max_images < 1:
        raise ValueError(f"max_images must be positive, got {max_images}")
    return Subset(dataset, range(max_images))


def _concat(sources: Dataset | torch.Tensor | Sequence[Dataset]) -> Dataset | torch.Tensor:
    if isinstance(sources, (torch.Tensor, Dataset)):
        return sources
    return ConcatDataset(list(sources))


# --- shared machinery -------------------------------------------------------------------------


@contextmanager
def _eval_mode(*modules: nn.Module | None):
    """Put modules in eval mode and restore their previous (per-submodule) modes afterwards."""
    saved = [(m, m.training) for module in modules if module is not None
             for m in module.modules()]
    for module in modules:
        if module is not None:
            module.eval()
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training


def _resolve_device(generator: nn.Module, device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else module_device(generator)


def _fid_extractor(fid_weights: Any, device: torch.device) -> nn.Module | None:
    """``None`` (no FID), ``"auto"`` (:func:`find_inception_weights`), a path, or a module."""
    if fid_weights is None:
        return None
    if isinstance(fid_weights, nn.Module):
        return fid_weights.to(device).eval()
    path = None if isinstance(fid_weights, str) and fid_weights == "auto" else fid_weights
    return load_fid_inception(path, device=device)


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` images for the feature extractors: a grayscale batch (one channel, e.g.
    an edge map) is replicated to three, as FID tools do for grayscale images."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class _Scores:
    """Every accumulator of one evaluation run (distances on RGB features, similarities on the
    images as they are)."""

    def __init__(self, device: torch.device, teacher: bool, fid_weights: Any,
                 proxy: nn.Module | None, options: dict[str, Any], ground_truth: bool) -> None:
        self.proxy = (proxy if proxy is not None else RandomConvFeatures()).to(device).eval()
        kw = {"kid_subsets": options["kid_subsets"], "kid_subset_size": options["kid_subset_size"],
              "seed": options["seed"]}
        self.proxy_real = FeatureDistance(self.proxy, "proxy_fd", "proxy_kid", **kw)
        self.proxy_teacher = (FeatureDistance(self.proxy, "proxy_fd_teacher", "proxy_kid_teacher",
                                              **kw) if teacher else None)
        inception = _fid_extractor(fid_weights, device)
        self.fid = self.real_cache = None
        if inception is not None:
            self.fid = FeatureDistance(inception, "fid", "kid",
                                       fd_bootstrap=options["fid_bootstrap"], **kw)
            self.real_cache = RealFeatureCache(inception, options["batch_size"],
                                               enabled=options["real_cache"])
        self.to_truth = ImageSimilarity() if ground_truth else None
        self.to_teacher = ImageSimilarity() if teacher else None
        self.num_images = 0

    def add_generated(self, fake: torch.Tensor, target: torch.Tensor | None,
                      teacher_out: torch.Tensor | None) -> None:
        self.num_images += fake.shape[0]
        features = self.proxy_real.update(as_rgb(fake), real=False)
        if self.fid is not None:
            self.fid.update(as_rgb(fake), real=False)
        if self.to_truth is not None and target is not None:
            self.to_truth.update(fake, target)
        if self.to_teacher is not None and teacher_out is not None:
            self.to_teacher.update(fake, teacher_out)
            self.proxy_teacher.add_features(features, real=False)
            self.proxy_teacher.update(as_rgb(teacher_out), real=True)

    def add_real(self, real: torch.Tensor) -> None:
        real = as_rgb(real)
        self.proxy_real.update(real, real=True)
        if self.real_cache is not None:
            self.real_cache.add(to_uint8(real))

    def results(self, protocol: str) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": protocol, "num_images": self.num_images,
                               "num_real": self.proxy_real.num_samples(real=True)}
        if self.to_truth is not None:
            out.update(self.to_truth.compute())
        if self.to_teacher is not None:
            out.update({f"{k}_teacher": v for k, v in self.to_teacher.compute().items()})
        out.update(self.proxy_real.compute())
        if self.proxy_teacher is not None:
            out.update(self.proxy_teacher.compute())
        if self.fid is not None:
            self.fid.add_features(self.real_cache.features(), real=True)
            out.update(self.fid.compute())
            extractor = self.fid.extractor
            out["fid_weights"] = getattr(extractor, "weights_file", None) or type(extractor).__name__
            out["fid_real_features"] = "cached" if self.real_cache.hit else "computed"
        name = getattr(self.proxy, "name", type(self.proxy).__name__)
        fingerprint = getattr(self.proxy, "fingerprint", None)
        out["proxy_space"] = f"{name} #{fingerprint()}" if callable(fingerprint) else name
        return out


def _options(kid_subsets: int, kid_subset_size: int, fid_bootstrap: int, real_cache: bool,
             batch_size: int, seed: int) -> dict[str, Any]:
    """The scoring options of an ``evaluate_*`` call, by name."""
    return {"kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size,
            "fid_bootstrap": fid_bootstrap, "real_cache": real_cache, "batch_size": batch_size,
            "seed": seed}


def _loader(dataset: Dataset, batch_size: int) -> DataLoader:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


# --- protocols --------------------------------------------------------------------------------


def evaluate_paired(
    generator: nn.Module,
    dataset: Dataset,
    teacher: nn.Module | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    fid_weights: str | os.PathLike | nn.Module | None = None,
    *,
    max_images: int | None = None,
    proxy: nn.Module | None = None,
    kid_subsets: int = KID_SUBSETS,
    kid_subset_size: int = KID_SUBSET_SIZE,
    fid_bootstrap: int = FID_BOOTSTRAP,
    real_cache: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a Pix2Pix-style generator on a paired split (METHOD 10).

    Args:
        generator: maps ``dataset[i]["A"]`` batches to images in [-1, 1].
        dataset: items ``{"A": input, "B": real target}`` (e.g. ``build_dataset(cfg, "test")``).
        teacher: the original generator; adds ``psnr_teacher``, ``ssim_teacher`` and
            ``proxy_fd_teacher``/``proxy_kid_teacher``.
        device: where the networks run (they are moved there); default the generator's device.
        fid_weights: ``"auto"`` (the installed weights, see
            :func:`~gan_prune_env.evaluation.inception.find_inception_weights`), a weights file
            (either published format) or a loaded :class:`FIDInceptionV3`, to also report
            ``fid``/``fid_std``/``kid``/``kid_std``; ``None``: no FID.
        max_images: evaluate only the first ``max_images`` items.
        proxy: feature module of the proxy metrics (default ``RandomConvFeatures()``).
        kid_subsets, kid_subset_size, seed: KID subsets (size capped at the set sizes) and the
            seed of their private RNG (also that of the FID bootstrap).
        fid_bootstrap: resamples of the images for ``fid_std`` (0: no spread).
        real_cache: read/write the real images' Inception features in the cache
            (:mod:`~gan_prune_env.evaluation.real_features`).

    Returns:
        The result dict described in the module docstring.
    """
    device = _resolve_device(generator, device)
    generator = generator.to(device)
    teacher = teacher.to(device) if teacher is not None else None
    scores = _Scores(device, teacher is not None, fid_weights, proxy,
                     _options(kid_subsets, kid_subset_size, fid_bootstrap, real_cache,
                              batch_size, seed), ground_truth=True)
    data = _capped(dataset, max_images)
    with _eval_mode(generator, teacher), torch.inference_mode():
        for batch in tqdm(_loader(data, batch_size), desc="evaluate (paired)",
                          disable=not progress, leave=False):
            inputs, target = batch["A"].to(device), batch["B"].to(device)
            fake = generator(inputs)
            teacher_out = teacher(inputs) if teacher is not None else None
            scores.add_generated(fake, target, teacher_out)
            scores.add_real(target)
    return scores.results("paired: generated vs real targets of the same split")


def evaluate_cyclegan(
    generator_AB: nn.Module,
    test_A: Dataset | torch.Tensor,
    real_B: Dataset | torch.Tensor | Sequence[Dataset],
    teacher: nn.Module | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    fid_weights: str | os.PathLike | nn.Module | None = None,
    *,
    max_images: int | None = None,
    proxy: nn.Module | None = None,
    kid_subsets: int = KID_SUBSETS,
    kid_subset_size: int = KID_SUBSET_SIZE,
    fid_bootstrap: int = FID_BOOTSTRAP,
    real_cache: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a CycleGAN A -> B generator (METHOD 10): its outputs on the test images of
    domain A against real domain-B images (train + test; see :func:`cyclegan_eval_sets`).

    Args:
        test_A: images of domain A: a tensor ``[N, C, H, W]`` or a dataset of tensors or dicts
            (``"image"`` or ``"A"`` key).
        real_B: domain-B images, likewise (``"image"`` or ``"B"``), or a sequence of datasets
            (e.g. the train and test splits) that are concatenated.
        max_images: cap on the generated images (the real set is used whole).

    Other arguments as :func:`evaluate_paired`. There is no ground truth, so ``psnr``/``ssim``
    are absent; ``*_teacher`` entries compare with the teacher's outputs on the same inputs.
    """
    device = _resolve_device(generator_AB, device)
    generator_AB = generator_AB.to(device)
    teacher = teacher.to(device) if teacher is not None else None
    scores = _Scores(device, teacher is not None, fid_weights, proxy,
                     _options(kid_subsets, kid_subset_size, fid_bootstrap, real_cache,
                              batch_size, seed), ground_truth=False)
    inputs_set = _capped(_Images(test_A, "A"), max_images)
    real_set = _Images(_concat(real_B), "B")
    with _eval_mode(generator_AB, teacher), torch.inference_mode():
        for inputs in tqdm(_loader(inputs_set, batch_size), desc="evaluate (cyclegan: generate)",
                           disable=not progress, leave=False):
            inputs = inputs.to(device)
            fake = generator_AB(inputs)
            teacher_out = teacher(inputs) if teacher is not None else None
            scores.add_generated(fake, None, teacher_out)
        for real in tqdm(_loader(real_set, batch_size), desc="evaluate (cyclegan: real B)",
                         disable=not progress, leave=False):
            scores.add_real(real.to(device))
    return scores.results("cyclegan: generated test A->B vs real train+test B")



def evaluate_generator(generator: nn.Module, data: DataConfig, family: str,
                       split: str | None = None, teacher: nn.Module | None = None,
                       **options: Any) -> dict[str, Any]:
    """The family's protocol on ``split`` of ``data`` (default its evaluation split,
    :func:`evaluation_split`): the one entry point of the CLI, the main job and the benchmarks,
    so all of them measure the same way.

    Pix2Pix: :func:`evaluate_paired` on ``split``. CycleGAN: :func:`evaluate_cyclegan` of the
    ``split`` images of domain A against the real train + ``split`` images of domain B.
    ``options`` are those of either function (``fid_weights``, ``max_images``, ...).
    """
    split = split or evaluation_split(data)
    if family == "pix2pix":
        return evaluate_paired(generator, build_dataset(data, split), teacher=teacher, **options)
    if family == "cyclegan":
        test_a, real_b = cyclegan_eval_sets(data, split, ("train", split))
        return evaluate_cyclegan(generator, test_a, real_b, teacher=teacher, **options)
    raise ValueError(f"family must be 'pix2pix' or 'cyclegan', got {family!r}")


def real_vs_real(data: DataConfig, split: str | None = None, reference_split: str = "train",
                 max_images: int | None = None, **options: Any) -> dict[str, Any]:
    """The floor of a distribution distance: the real output-domain images of ``split`` scored
    as if generated, against as many real images of ``reference_split`` (FID depends on the set
    sizes, so both sets have the size of ``split``'s, capped by ``max_images``). A generator
    cannot be expected to score below it on these image counts. ``split`` defaults to the
    evaluation split.
    """
    split = split or evaluation_split(data)
    test_b = DomainImages(data, split, "B")
    count = len(test_b) if max_images is None else min(len(test_b), max_images)
    reference = DomainImages(data, reference_split, "B")
    if len(reference) < count:
        raise ValueError(f"the {reference_split} split has {len(reference)} images, fewer than "
                         f"the {count} of {split}: pass max_images <= {len(reference)}")
    return evaluate_cyclegan(nn.Identity(), Subset(test_b, range(count)),
                             Subset(reference, range(count)), device="cpu", **options)
