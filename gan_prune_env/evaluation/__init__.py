"""Evaluation of generators (METHOD section 10).

- :mod:`~gan_prune_env.evaluation.metrics`: PSNR/SSIM, Fréchet distance and KID (torchmetrics).
- :mod:`~gan_prune_env.evaluation.features`: the project's fixed random-feature space of the
  *proxy* Fréchet distance / KID (``proxy_fd``, ``proxy_kid``: never called FID).
- :mod:`~gan_prune_env.evaluation.inception`: the FID Inception-v3, written without torchvision,
  loading the public ``pt_inception-2015-12-05-6726825d.pth`` weights strictly.
- :mod:`~gan_prune_env.evaluation.protocol`: :func:`evaluate_paired` (Pix2Pix) and
  :func:`evaluate_cyclegan`.
- ``python -m gan_prune_env.evaluation evaluate|download-inception``: the command line.

Nothing here imports torchvision, pytorch-fid, torch-fidelity or clean-fid, and nothing is
downloaded unless ``download-inception`` is run.
"""

from gan_prune_env.evaluation.features import PROXY_NAME, PrecomputedFeatures, RandomConvFeatures
from gan_prune_env.evaluation.inception import (
    DOWNLOAD_COMMAND,
    FID_WEIGHTS_URL,
    FIDInceptionV3,
    InceptionWeightsError,
    check_inception_state_dict,
    default_inception_path,
    download_inception,
    fid_inception_v3,
    load_fid_inception,
)
from gan_prune_env.evaluation.metrics import (
    FeatureDistance,
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
    evaluate_paired,
)

__all__ = [
    "DOWNLOAD_COMMAND",
    "DomainImages",
    "FIDInceptionV3",
    "FID_WEIGHTS_URL",
    "FeatureDistance",
    "ImageSimilarity",
    "InceptionWeightsError",
    "PROXY_NAME",
    "PrecomputedFeatures",
    "RandomConvFeatures",
    "check_inception_state_dict",
    "cyclegan_eval_sets",
    "default_inception_path",
    "download_inception",
    "evaluate_cyclegan",
    "evaluate_paired",
    "fid_inception_v3",
    "frechet_distance",
    "kernel_distance",
    "load_fid_inception",
    "psnr",
    "ssim",
    "to_uint8",
]
