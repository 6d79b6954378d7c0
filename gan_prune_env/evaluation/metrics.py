"""Image metrics: quantisation, PSNR/SSIM between image sets, Fréchet distance and KID.

Conventions:

- Generators produce images in [-1, 1]. Every metric first quantises them to ``uint8`` exactly
  as a saved image would be (:func:`to_uint8`: ``round((x + 1) * 127.5)``, clamped), so that
  scores describe the images a user would look at and real images round-trip losslessly. (The
  reference ``tensor2im`` truncates instead of rounding: half a grey level lower on average.)
- PSNR and SSIM are computed on those images rescaled to [0, 1] (``data_range=1``); that is the
  same number as on [-1, 1] with ``data_range=2``. PSNR is computed per image and averaged
  (identical images give ``inf``); SSIM is torchmetrics' Gaussian-window SSIM (11x11,
  sigma 1.5, k1=0.01, k2=0.03), averaged over images.
- Features are computed once per image by a feature module (the FID Inception or the proxy
  :class:`~gan_prune_env.evaluation.features.RandomConvFeatures`). KID is torchmetrics'
  ``KernelInceptionDistance`` on those features; the Fréchet distance is torchmetrics' formula
  evaluated through symmetric eigendecompositions (:func:`frechet_distance`). Which feature
  space a number lives in decides its name: ``fid``/``kid`` only for the FID Inception,
  ``proxy_fd``/``proxy_kid`` otherwise.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

# Imported from its module: ``torchmetrics.image`` only re-exports it when torch-fidelity is
# installed, which the project never needs (it always passes its own feature module).
from torchmetrics.image.kid import KernelInceptionDistance

from gan_prune_env.evaluation.features import PrecomputedFeatures

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
FID_BOOTSTRAP = 200
"""Bootstrap resamples behind ``fid_std`` (cheap: see :func:`_trace_sqrt_product`)."""


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator images in [-1, 1] -> ``uint8`` [0, 255] (rounded, clamped); uint8 passes through."""
    if images.dtype == torch.uint8:
        return images
    return ((images.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def uint8_to_unit(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` [0, 255] -> float32 [0, 1]."""
    return images.float() / 255.0


def psnr(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-image PSNR (dB) of two batches of [-1, 1] (or uint8) images, after quantisation."""
    metric = ImageSimilarity()
    metric.update(preds, target)
    return metric.compute()["psnr"]


def ssim(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two batches of [-1, 1] (or uint8) images, after quantisation."""
    metric = ImageSimilarity()
    metric.update(preds, target)
    return metric.compute()["ssim"]


class ImageSimilarity:
    """Accumulates PSNR and SSIM between matching images over many batches."""

    def __init__(self) -> None:
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean")
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.count = 0

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """``preds`` and ``target``: ``[N, C, H, W]`` in [-1, 1] (or uint8), same shape."""
        if preds.shape != target.shape:
            raise ValueError(f"image shapes differ: {list(preds.shape)} vs {list(target.shape)}")
        p = uint8_to_unit(to_uint8(preds)).cpu()
        t = uint8_to_unit(to_uint8(target)).cpu()
        self.psnr.update(p, t)
        self.ssim.update(p, t)
        self.count += p.shape[0]

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise RuntimeError("no images were given to ImageSimilarity")
        return {"psnr": float(self.psnr.compute()), "ssim": float(self.ssim.compute())}


def _centred(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and centred rows (float64, CPU) of features ``[N, D]``."""
    x = features.detach().double().cpu()
    mu = x.mean(dim=0)
    return mu, x - mu


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def _trace_sqrt_product(x_r: torch.Tensor, x_f: torch.Tensor) -> torch.Tensor:
    """``tr((S_r S_f)^1/2)`` for the unbiased covariances of centred rows ``x_r``, ``x_f``.

    With fewer samples than dimensions (FID on a few hundred test images: N << 2048) the
    covariances have rank < N, and the nonzero eigenvalues of ``S_r S_f`` are the squared singular
    values of ``x_f x_r^T / sqrt((n_r - 1)(n_f - 1))`` (eig(AB) = eig(BA)): the trace is that
    small matrix's nuclear norm, exact and ~1000x cheaper than a 2048x2048 eigendecomposition,
    which is what makes bootstrap spreads affordable. Otherwise: ``tr((S_r^1/2 S_f S_r^1/2)^1/2)``
    from two symmetric eigendecompositions (same value as torchmetrics' eigenvalues of
    ``S_r S_f``, free of the spurious complex eigenvalues a non-symmetric product produces).
    """
    n_r, n_f, dim = x_r.shape[0], x_f.shape[0], x_r.shape[1]
    if min(n_r, n_f) < dim:
        scale = math.sqrt((n_r - 1) * (n_f - 1))
        return torch.linalg.svdvals(x_f @ x_r.T).sum() / scale
    cov_r, cov_f = x_r.T @ x_r / (n_r - 1), x_f.T @ x_f / (n_f - 1)
    root = _sqrt_psd(cov_r)
    middle = root @ cov_f @ root
    return torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` (N >= 2).

    ``|mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^1/2)``, with unbiased covariances as
    in torchmetrics' ``FrechetInceptionDistance`` (and pytorch-fid), in float64; the last trace
    as :func:`_trace_sqrt_product` computes it.
    """
    _check_features(real, fake, minimum=2)
    mu_r, x_r = _centred(real)
    mu_f, x_f = _centred(fake)
    trace_r = x_r.square().sum() / (x_r.shape[0] - 1)
    trace_f = x_f.square().sum() / (x_f.shape[0] - 1)
    value = (mu_r - mu_f).square().sum() + trace_r + trace_f - 2 * _trace_sqrt_product(x_r, x_f)
    return _clean(float(value))


def bootstrap_frechet_distance(real: torch.Tensor, fake: torch.Tensor, resamples: int = 200,
                               seed: int = 0) -> tuple[float, float]:
    """Mean and std of the Fréchet distance over ``resamples`` bootstrap resamples of the images.

    Both sets are resampled with replacement, independently, from a private RNG seeded with
    ``seed`` (deterministic; the global RNG is untouched). The std is the spread a reader should
    expect from *which* few hundred test images were drawn; with small sets FID is also biased
    upward (the bootstrap mean sits above the full-set value), so compare FIDs of equal set sizes.
    """
    _check_features(real, fake, minimum=2)
    if resamples < 2:
        raise ValueError(f"resamples must be >= 2, got {resamples}")
    rng = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(resamples):
        r = real[torch.randint(real.shape[0], (real.shape[0],), generator=rng)]
        f = fake[torch.randint(fake.shape[0], (fake.shape[0],), generator=rng)]
        values.append(frechet_distance(r, f))
    spread = torch.tensor(values, dtype=torch.float64)
    return float(spread.mean()), float(spread.std())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = KID_SUBSETS,
                    subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """KID (unbiased squared MMD, cubic polynomial kernel) between feature sets ``[N, D]``.

    Returns ``(mean, std)`` over ``subsets`` random subsets of ``subset_size`` samples
    (torchmetrics' ``KernelInceptionDistance``, gamma = 1 / D, coef 1). When a set is not larger
    than ``subset_size``, subsets of half the smaller set are used instead (subsets as large as
    the set would all be the same and give a std of 0). The subsets are drawn from a private
    RNG seeded with ``seed``: the result is deterministic and the global RNG untouched.
    """
    _check_features(real, fake, minimum=2)
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size == min(real.shape[0], fake.shape[0]) and size >= 4:
        size //= 2  # smaller sets than subset_size: half-size subsets keep the std informative
    with warnings.catch_warnings():  # "will save all extracted features": known and intended
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=PrecomputedFeatures(real.shape[1]),
                                         subsets=subsets, subset_size=size)
    metric.update(real.double().cpu(), real=True)
    metric.update(fake.double().cpu(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def _check_features(real: torch.Tensor, fake: torch.Tensor, minimum: int) -> None:
    for name, feats in (("real", real), ("fake", fake)):
        if feats.dim() != 2:
            raise ValueError(f"{name} features must be [N, D], got {list(feats.shape)}")
        if feats.shape[0] < minimum:
            raise ValueError(f"need at least {minimum} {name} samples, got {feats.shape[0]}")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")


class FeatureDistance:
    """Accumulates features of real and generated images in one feature space, then reports
    Fréchet distance and KID between them under the keys ``fd_name``, ``kid_name`` and
    ``kid_name + "_std"`` (``proxy_fd``/``proxy_kid`` for the proxy space, ``fid``/``kid`` only
    for the FID Inception).

    With ``fd_bootstrap=B > 0`` the Fréchet distance also gets ``fd_name + "_std"``, its std over
    B bootstrap resamples of the images (:func:`bootstrap_frechet_distance`).

    Images (``[N, C, H, W]`` in [-1, 1] or uint8) are quantised to uint8 before ``extractor``
    sees them. Several image sets can share one extractor pass: :meth:`update` returns the
    features it computed, :meth:`add_features` takes features computed elsewhere.
    """

    def __init__(self, extractor: nn.Module, fd_name: str = "proxy_fd",
                 kid_name: str = "proxy_kid", kid_subsets: int = KID_SUBSETS,
                 kid_subset_size: int = KID_SUBSET_SIZE, seed: int = 0,
                 fd_bootstrap: int = 0) -> None:
        if not isinstance(getattr(extractor, "num_features", None), int):
            raise TypeError("extractor needs an int num_features attribute")
        self.extractor = extractor
        self.fd_name, self.kid_name = fd_name, kid_name
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.seed = seed
        self.fd_bootstrap = fd_bootstrap
        self.features: dict[bool, list[torch.Tensor]] = {True: [], False: []}

    @torch.inference_mode()
    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[N, D]`` (float64, CPU) of images in [-1, 1] or uint8."""
        return self.extractor(to_uint8(images)).double().cpu()

    def update(self, images: torch.Tensor, real: bool) -> torch.Tensor:
        features = self.extract(images)
        self.add_features(features, real)
        return features

    def add_features(self, features: torch.Tensor, real: bool) -> None:
        self.features[bool(real)].append(features.double().cpu())

    def num_samples(self, real: bool) -> int:
        return sum(f.shape[0] for f in self.features[bool(real)])

    def real_features(self) -> torch.Tensor:
        return torch.cat(self.features[True]) if self.features[True] else torch.empty(0, 0)

    def fake_features(self) -> torch.Tensor:
        return torch.cat(self.features[False]) if self.features[False] else torch.empty(0, 0)

    def compute(self) -> dict[str, float]:
        real, fake = self.real_features(), self.fake_features()
        if real.shape[0] < 2 or fake.shape[0] < 2:
            raise RuntimeError(f"{self.fd_name}: need at least 2 real and 2 generated images, got "
                               f"{real.shape[0]} and {fake.shape[0]}")
        kid_mean, kid_std = kernel_distance(real, fake, self.kid_subsets, self.kid_subset_size,
                                            self.seed)
        out = {self.fd_name: frechet_distance(real, fake), self.kid_name: kid_mean,
               f"{self.kid_name}_std": kid_std}
        if self.fd_bootstrap:
            _, out[f"{self.fd_name}_std"] = bootstrap_frechet_distance(
                real, fake, self.fd_bootstrap, self.seed)
        return out


def _clean(value: float) -> float:
    """A Fréchet distance is >= 0; tiny negative values are float round-off."""
    return max(0.0, value) if math.isfinite(value) else value
