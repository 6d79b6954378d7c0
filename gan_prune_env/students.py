"""Students of GAN Compression's layout: depthwise-separable U-Nets at a MAC budget.

Channel pruning keeps the teacher's layout. At 10x-20x fewer MACs a U-Net whose 4x4
convolutions are depthwise-separable (``models.separable_unet``) keeps more of the teacher's
pixels than any pruned copy of the teacher measured (``docs/RESULTS.md``, "The compression
frontier"), so a run may replace the pruned G by such a student (``RunConfig.student``):

* :func:`fresh_separable_student`: the widest separable U-Net within the budget, from the
  reference init (GAN Compression's student, distilled from scratch);
* :func:`narrowed_separable_student`: a separable U-Net already distilled from the teacher
  (wider, e.g. at the teacher's own width) narrowed to the widest that fits, keeping its best
  channels (``pruning.slice_separable_unet``): GAN Compression's order, distil then prune.

Both return the student and its :class:`GeneratorConfig` (``separable: true`` at its width),
which is what a checkpoint needs to rebuild it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gan_prune_env.models import GeneratorConfig, build_generator
from gan_prune_env.pruning import count_macs, make_importance, slice_separable_unet


def separable_config(config: GeneratorConfig, ngf: int) -> GeneratorConfig:
    """The separable U-Net of ``config``'s depth, norm and image channels at width ``ngf``."""
    return dataclasses.replace(config, ngf=ngf, separable=True, use_dropout=False)


def widest_separable(config: GeneratorConfig, max_macs: float, example: torch.Tensor,
                     max_ngf: int | None = None) -> GeneratorConfig:
    """The separable U-Net of ``config`` with the largest ``ngf`` (at most ``max_ngf``, by
    default ``config.ngf``: never wider than the teacher) whose MACs (field convention, at
    ``example``'s size) are at most ``max_macs``."""
    best = None
    for ngf in range(1, (max_ngf or config.ngf) + 1):
        candidate = separable_config(config, ngf)
        if count_macs(build_generator(candidate, seed=0), example) > max_macs:
            break  # MACs grow with ngf
        best = candidate
    if best is None:
        raise ValueError(f"no separable U-Net fits in {max_macs:.0f} MACs; raise the budget")
    return best


def fresh_separable_student(config: GeneratorConfig, max_macs: float, example: torch.Tensor,
                            seed: int, width: float = 1.0) -> tuple[nn.Module, GeneratorConfig]:
    """The widest separable U-Net of the teacher ``config`` within ``max_macs`` and ``width``
    times the teacher's ``ngf``, with the reference init at ``seed``. ``width`` above 1 makes a
    student wider than its teacher: a larger start to distil once and then narrow
    (:func:`narrowed_separable_student`) to each budget."""
    if width <= 0:
        raise ValueError(f"width must be > 0 (a multiple of the teacher's ngf), got {width}")
    student = widest_separable(config, max_macs, example,
                               max_ngf=max(1, round(width * config.ngf)))
    return build_generator(student, seed=seed), student


def check_separable_source(source_config: GeneratorConfig, config: GeneratorConfig) -> None:
    """Raise unless ``source_config`` is a separable U-Net of the teacher ``config``'s layout
    (any width): what a distilled separable student must be to be narrowed for it."""
    mismatch = {f.name for f in dataclasses.fields(config)
                if f.name not in ("ngf", "separable", "use_dropout")
                and getattr(config, f.name) != getattr(source_config, f.name)}
    if not source_config.separable or mismatch:
        raise ValueError(f"the separable student must be a separable U-Net of the teacher's "
                         f"layout ({config}); got {source_config}. Make one with a run of "
                         "student: separable and pass its pruned.pt")


def narrowed_separable_student(source: nn.Module, source_config: GeneratorConfig,
                               config: GeneratorConfig, max_macs: float, example: torch.Tensor,
                               importance: str = "l1") -> tuple[nn.Module, GeneratorConfig]:
    """``source`` (a separable U-Net of ``source_config``, distilled for the teacher
    ``config``) narrowed to the widest width within ``max_macs``, with its weights: the
    channels ``importance`` ranks best (a name of ``pruning.IMPORTANCES``)."""
    check_separable_source(source_config, config)
    student = widest_separable(config, max_macs, example, max_ngf=source_config.ngf)
    narrowed = slice_separable_unet(source, student.ngf, example, make_importance(importance))
    return narrowed.train(), student
