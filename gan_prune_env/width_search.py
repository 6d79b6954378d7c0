"""Learned widths: the distillation recipe itself decides how many channels each group keeps.

Every other search ranks architectures by a proxy of the final model (the env's frozen-weight
reward, a supernet's, a short distillation), and none of them ranks the final FID
(``docs/RESULTS.md``, "Does the env's reward rank architectures as fine-tuning does?"). This
one asks the recipe. The teacher's generator, at full width, is trained with the recipe's losses
(``FinetuneConfig``: teacher targets, distillation, cutmix, the GAN loss) while each of its
channel groups is gated softly at a learned kept fraction: a sigmoid step along the group's
importance ranking at ``fraction x channels`` (``ChannelSpace.soft_gates``, the relaxation of
MGGC's ``gates`` mode). The budget is a constraint with a Lagrange multiplier: the loss gets
``lambda * (r / p - 1)`` on the differentiable kept-MACs ratio ``r`` and budget ``p``, and
``lambda`` rises by ``dual_lr * (r / p - 1)`` after every step (never below 0). A fixed
penalty weight does not hold: the recipe's losses all ask for more channels, and with weight 2
the ratio reached 7.7 times the budget in 600 steps at 10%. At the equilibrium a group grows
while its channels lower the recipe's loss by more than ``lambda`` per unit of MACs, so
weights and fractions learn together and a group keeps its channels where the *trained* student
needs them, which a frozen-weight score cannot see (the joint optimisation of DMCP, TAS and
GAN Slimming).

The result is an allocation, not a model: the caller projects it onto the budget, slices the
teacher and fine-tunes with the standard recipe, exactly as for every other method, so the
comparison stays at equal fine-tuning steps. Pix2Pix only (one main generator, one D).
"""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gan_prune_env.finetune import FinetuneConfig, build_recipe_trainer
from gan_prune_env.pruning import ChannelMasker, ChannelSpace
from gan_prune_env.tasks import TaskConfig
from gan_prune_env.teacher.base import Batch
from gan_prune_env.teacher.loop import train_teacher


@dataclass
class WidthSearchConfig:
    """Attributes:
        steps: training steps of the joint phase (the recipe's batch size and learning rate,
            constant: no decay, no EMA).
        dual_lr: step of the budget's multiplier per training step, in loss units per unit of
            relative excess ``r / p - 1``; it only has to keep ``r`` near ``p`` while the
            allocation forms (the caller's projection onto the budget fixes the total).
        temperature: width of each soft step, in channels (MGGC's ``gate_temperature``).
        fraction_lr_scale: the fractions' logits move this many times faster than the
            weights (they share the generator's Adam; the learning rate itself cannot differ,
            the loop sets one for all groups, so the logits are stored divided by it).
    """

    steps: int = 600
    dual_lr: float = 1.0
    temperature: float = 0.5
    fraction_lr_scale: float = 100.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"width search steps must be >= 1, got {self.steps}")
        if self.dual_lr < 0:
            raise ValueError(f"dual_lr must be >= 0 (0: no budget constraint), got "
                             f"{self.dual_lr}")
        for name in ("temperature", "fraction_lr_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


class LearnedWidths:
    """Per-group kept fractions of ``student`` as trainable logits, applied as soft gates before
    every forward of the student, plus the budget's Lagrangian term as a generator regulariser
    ``(batch, fake) -> (loss, terms)`` (called once per generator step, which also takes the
    multiplier's step). Also a trainer extension (logits and multiplier are in train states).
    Call :meth:`remove` to detach it."""

    def __init__(self, student: nn.Module, space: ChannelSpace, budget: float,
                 min_keep: float, init_fraction: float, config: WidthSearchConfig) -> None:
        if not min_keep < init_fraction < 1:
            raise ValueError(f"init_fraction must lie in ({min_keep}, 1), got {init_fraction}")
        self.space, self.budget, self.min_keep, self.config = space, budget, min_keep, config
        share = (init_fraction - min_keep) / (1 - min_keep)
        logit = math.log(share / (1 - share)) / config.fraction_lr_scale
        device = next(student.parameters()).device
        self.logits = nn.Parameter(torch.full((space.num_groups,), logit, device=device))
        self.multiplier = 0.0
        self.ratios: list[float] = []  # r after every step, for logs and plots
        self.masker = ChannelMasker(student, space)
        self._hook = student.register_forward_pre_hook(lambda module, args: self._gate())

    def fractions(self) -> torch.Tensor:
        """Kept fraction per group, in ``(min_keep, 1)``."""
        share = torch.sigmoid(self.config.fraction_lr_scale * self.logits)
        return self.min_keep + (1 - self.min_keep) * share

    def _gate(self) -> None:
        self.masker.set_gates(self.space.soft_gates(self.fractions(), self.config.temperature))

    def budget_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lambda * (r / p - 1), r)`` at the current multiplier."""
        ratio = self.space.soft_macs_ratio(self.fractions())
        return self.multiplier * (ratio / self.budget - 1), ratio

    def __call__(self, batch: Batch, fake: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, ratio = self.budget_loss()
        excess = float(ratio.detach()) / self.budget - 1
        self.multiplier = max(0.0, self.multiplier + self.config.dual_lr * excess)
        self.ratios.append(float(ratio.detach()))
        return loss, {"W_macs_ratio": ratio.detach(),
                      "W_multiplier": torch.tensor(self.multiplier)}

    def state_dict(self) -> dict[str, Any]:
        return {"logits": self.logits.detach().cpu().clone(), "multiplier": self.multiplier,
                "ratios": list(self.ratios)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.multiplier, self.ratios = float(state["multiplier"]), list(state["ratios"])

    def remove(self) -> None:
        self._hook.remove()
        self.masker.remove()


def search_widths(teacher: dict[str, nn.Module], space: ChannelSpace, task: TaskConfig, *,
                  budget: float, min_keep: float, init_fraction: float,
                  config: WidthSearchConfig | None = None, recipe: FinetuneConfig | None = None,
                  seed: int = 0, device: str = "cpu", progress: bool = True,
                  out_dir: str | Path | None = None) -> dict[str, Any]:
    """Learn the kept fraction of each of the generator's groups (module docstring).

    Args:
        teacher: the task's ``generator`` and ``discriminator`` (copied, never modified).
        space: the generator's channel space (its rankings are the gates' order).
        budget: the generator's kept-MACs budget ``p``.
        min_keep, init_fraction: the fractions' floor and their start (every group at the
            uniform ratio of the budget starts the phase on budget).
        recipe: the losses and schedule to train with (default: ``FinetuneConfig()``, the
            recipe the result will be fine-tuned with); its steps, decay and EMA are replaced.
        out_dir: where train states go (resumable); None uses a temporary folder.

    Returns:
        ``{"fractions": [...], "macs_ratio": r, "ratios": [r per step], "multiplier": lambda}``
        at the end of the phase (``r`` soft; the caller projects the fractions onto the
        budget).
    """
    if task.family != "pix2pix":
        raise ValueError(f"learned widths support Pix2Pix tasks only; task {task.name!r} is "
                         f"{task.family}: use another agent (uniform, random, mggc)")
    config = config or WidthSearchConfig()
    recipe = replace(recipe or FinetuneConfig(), steps=config.steps, lr_decay_steps=0,
                     ema_decay=0.0, generator_inherit=1.0, prune_stages=1, save_every=config.steps)
    networks = {name: copy.deepcopy(teacher[name]).to(device).train()
                for name in ("generator", "discriminator")}
    frozen = {name: copy.deepcopy(net).to(device).eval() for name, net in teacher.items()}
    widths = LearnedWidths(networks["generator"], space, budget, min_keep, init_fraction, config)
    train, trainer, attached = build_recipe_trainer(
        networks, frozen, recipe, task=task, input_shape={"generator": space.input_shape},
        seed=seed, device=device, progress=progress)
    trainer.optimizers["generator"].add_param_group({"params": [widths.logits]})
    trainer.generator_regularizers.append(widths)
    trainer.extensions["learned_widths"] = widths
    try:
        with tempfile.TemporaryDirectory() as scratch:
            train_teacher(train, out_dir or scratch, resume=True, trainer=trainer,
                          final_file=None)
    finally:
        attached.remove()
        widths.remove()
    with torch.no_grad():
        fractions = widths.fractions()
        ratio = float(space.soft_macs_ratio(fractions))
    return {"fractions": fractions.cpu().numpy().astype(np.float64).tolist(),
            "macs_ratio": ratio, "ratios": widths.ratios, "multiplier": widths.multiplier}


__all__ = ["LearnedWidths", "WidthSearchConfig", "search_widths"]
