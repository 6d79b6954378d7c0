"""Fine-tune a physically sliced G and D after the search (METHOD 9).

The sliced networks are trained with the task's original losses (Pix2Pix: cGAN + lambda * L1;
CycleGAN: LSGAN + cycle + identity) by the same trainers and loop that train teachers, so
checkpointing, TensorBoard and exact resumption come for free. Two optional generator terms:

* distillation: ``lambda_distill * L1(G_pruned(x), G_teacher(x))``;
* local density: ``lambda_density * (KL(P_c || Q_c) + lambda_rec * L1)`` on neighbourhoods of the
  teacher manifold (the KDE and anchor terms of METHOD 6; the adversarial part is already the
  task's GAN loss, judged by the fine-tuned D).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan_prune_env.losses import l1_loss
from gan_prune_env.objective import LocalDensityObjective, TeacherPool
from gan_prune_env.tasks import TaskConfig
from gan_prune_env.teacher.base import Batch, GANTrainer
from gan_prune_env.teacher.config import TeacherTrainConfig
from gan_prune_env.teacher.cyclegan import CycleGANTrainer
from gan_prune_env.teacher.loop import train_teacher
from gan_prune_env.teacher.pix2pix import Pix2PixTrainer


@dataclass
class FinetuneConfig:
    """Fine-tuning recipe; Adam with lr 2e-4, betas (0.5, 0.999) as METHOD 9 prescribes."""

    steps: int = 600
    batch_size: int = 8
    lr: float = 2e-4
    lr_decay_steps: int = 300
    lambda_task: float = 100.0  # Pix2Pix L1-to-target weight; CycleGAN: the cycle weight
    lambda_distill: float = 0.0
    lambda_density: float = 0.0
    density_centers: int = 4  # neighbourhoods per step for the density term
    save_every: int = 200
    log_every: int = 20
    image_every: int = 100

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.density_centers < 1:
            raise ValueError("steps must be >= 0, batch_size and density_centers >= 1")
        for name in ("lr", "lambda_task"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("lambda_distill", "lambda_density", "lr_decay_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


class Distillation:
    """``weight * L1(student(x), teacher(x))``, the teacher frozen."""

    def __init__(self, teacher: nn.Module, weight: float) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight = weight

    def __call__(self, batch: Batch, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():
            target = self.teacher(batch["A"])
        loss = l1_loss(fake, target)
        return self.weight * loss, {"G_distill": loss.detach()}


class DensityTerm:
    """KDE + anchor terms of the local-density objective on random teacher neighbourhoods."""

    def __init__(self, student: nn.Module, objective: LocalDensityObjective, pool: TeacherPool,
                 weight: float, centers: int, seed: int) -> None:
        self.student, self.objective, self.pool = student, objective, pool
        self.weight, self.centers = weight, centers
        self.rng = torch.Generator().manual_seed(seed)

    def __call__(self, batch: Batch, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        chosen = torch.randperm(len(self.pool), generator=self.rng)[: self.centers]
        neighbourhoods = self.pool.batch(chosen)
        outputs = self.student(neighbourhoods.inputs)
        kl = self.objective.density_kl(neighbourhoods, outputs)
        anchor = l1_loss(outputs, neighbourhoods.outputs)
        loss = kl + self.objective.config.lambda_rec * anchor
        return self.weight * loss, {"G_density_kl": kl.detach(), "G_density_l1": anchor.detach()}


def train_config(task: TaskConfig, config: FinetuneConfig, seed: int, device: str,
                 progress: bool) -> TeacherTrainConfig:
    """The teacher recipe of ``task`` with the fine-tuning schedule."""
    weights = {"lambda_l1": config.lambda_task} if task.family == "pix2pix" else \
        {"lambda_cycle": config.lambda_task}
    return TeacherTrainConfig(
        family=task.family, data=task.data, generator=task.generator,
        discriminator=task.discriminator, n_steps=max(config.steps, 1),
        batch_size=config.batch_size, lr=config.lr,
        lr_decay_steps=min(config.lr_decay_steps, config.steps), seed=seed,
        log_every=config.log_every, image_every=config.image_every,
        save_every=config.save_every, device=device, progress=progress, **weights)


def build_finetune_trainer(networks: dict[str, nn.Module], recipe: TeacherTrainConfig
                           ) -> GANTrainer:
    """The family's trainer around already-built (sliced) networks."""
    lr, betas, mode = recipe.lr, recipe.betas, recipe.resolved_gan_mode
    if recipe.family == "pix2pix":
        return Pix2PixTrainer(networks["generator"], networks["discriminator"], lr, betas, mode,
                              recipe.lambda_l1)
    return CycleGANTrainer(networks["generator_AB"], networks["generator_BA"],
                           networks["discriminator_A"], networks["discriminator_B"], lr, betas,
                           mode, recipe.lambda_cycle, recipe.lambda_identity, recipe.pool_size,
                           recipe.seed)


def finetune_pair(networks: dict[str, nn.Module], teacher: dict[str, nn.Module],
                  task: TaskConfig, config: FinetuneConfig, out_dir: str | Path, *,
                  kept: dict[str, Any], input_shape: dict[str, Any], seed: int = 0,
                  device: str = "cpu", progress: bool = True,
                  objective: LocalDensityObjective | None = None,
                  pool: TeacherPool | None = None) -> dict[str, nn.Module]:
    """Train ``networks`` in place (resuming from ``out_dir``) and return them.

    ``kept``/``input_shape`` are stored in every train-state checkpoint so each one can be
    rebuilt on its own with ``gan_prune_env.checkpoint.load_generator``.
    """
    if config.steps == 0:
        return networks
    recipe = train_config(task, config, seed, device, progress)
    trainer = build_finetune_trainer(networks, recipe)
    main = "generator" if task.family == "pix2pix" else "generator_AB"
    if config.lambda_distill > 0:
        trainer.generator_regularizers.append(Distillation(teacher[main], config.lambda_distill))
    if config.lambda_density > 0:
        if objective is None or pool is None:
            raise ValueError("lambda_density > 0 needs the local-density objective and a pool")
        trainer.generator_regularizers.append(DensityTerm(
            networks[main], objective, pool, config.lambda_density, config.density_centers, seed))
    train_teacher(recipe, out_dir, resume=True, trainer=trainer,
                  checkpoint_extra={"kept": kept, "input_shape": input_shape}, final_file=None)
    return networks


__all__ = ["DensityTerm", "Distillation", "FinetuneConfig", "build_finetune_trainer",
           "finetune_pair", "train_config"]
