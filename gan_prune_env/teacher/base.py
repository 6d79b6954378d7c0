"""What every GAN family's trainer shares: networks, Adam optimisers, learning rate, previews.

A trainer owns one family's networks (named as in ``gan_prune_env.families.NETWORKS``) and its
update rule; the training loop, checkpointing and logging are family-agnostic. Trainers take
already-built networks, so the same update rules fine-tune pruned networks after the search.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import nn

from gan_prune_env.config import ConfigError
from gan_prune_env.families import build_network, network_config, network_names
from gan_prune_env.teacher.config import TeacherTrainConfig

Batch = dict[str, Any]
Regularizer = Callable[[Batch, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]
BatchTransform = Callable[[Batch], Batch]
"""An extra generator loss: ``(batch, main generator output) -> (weighted loss, named terms)``.
The output is the very tensor the main generator's forward on ``batch["A"]`` returned (never a
copy), so a regulariser can match it with what hooks recorded during that forward."""


class Extension(Protocol):
    """State trained along with a trainer's networks (fine-tuning: distillation adapters, a
    weight EMA) that train-state checkpoints must hold for an exact resumption."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def set_requires_grad(networks: Iterable[nn.Module], flag: bool) -> None:
    """Freeze or unfreeze parameters (the discriminators during generator updates)."""
    for net in networks:
        for param in net.parameters():
            param.requires_grad_(flag)


def adam(networks: Iterable[nn.Module], lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """One Adam optimiser over the parameters of ``networks`` (reference settings)."""
    params = [p for net in networks for p in net.parameters()]
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


def build_networks(config: TeacherTrainConfig) -> dict[str, nn.Module]:
    """Freshly initialised networks of ``config.family``; network i is initialised from seed
    ``config.seed + i`` so initialisation never touches the global RNG."""
    return {
        name: build_network(
            network_config(config.family, name, config.generator, config.discriminator),
            seed=config.seed + i,
        ).to(config.device)
        for i, name in enumerate(network_names(config.family))
    }


class GANTrainer:
    """Base class: subclasses set ``main_generator`` and implement ``train_step``."""

    family: str = ""
    main_generator: str = ""

    def __init__(self, networks: dict[str, nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer]) -> None:
        self.networks = networks
        self.optimizers = optimizers
        self.generator_regularizers: list[Regularizer] = []
        self.batch_transforms: list[BatchTransform] = []  # applied in order before each step
        self.extensions: dict[str, Extension] = {}  # saved in train states under these names
        self.autocast: str | None = None  # TeacherTrainConfig.autocast, set by the loop
        self.adversarial_weight = 1.0
        """Multiplies the generators' adversarial terms; the loop sets it every step
        (``TeacherTrainConfig.adversarial_weight_at``)."""

    def forward_precision(self) -> contextlib.AbstractContextManager:
        """The context of every forward pass of an update: ``torch.autocast`` in the dtype of
        :attr:`autocast` on the networks' device, or nothing. Backward passes run outside it,
        as PyTorch's AMP recipe asks."""
        if self.autocast is None:
            return contextlib.nullcontext()
        device = next(next(iter(self.networks.values())).parameters()).device
        return torch.autocast(device.type, dtype=getattr(torch, self.autocast))

    def prepare(self, batch: Batch) -> Batch:
        """``batch`` as the update sees it: after every transform in :attr:`batch_transforms`
        (fine-tuning: mixed inputs, the teacher's outputs as targets). A transform with random
        state is also an extension, so resumption draws as an uninterrupted run would."""
        with self.forward_precision():
            for transform in self.batch_transforms:
                batch = transform(batch)
        return batch

    def regularization(self, batch: Batch, fake: torch.Tensor
                       ) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
        """Sum of the extra generator losses (fine-tuning: distillation, local density) on the
        main generator's output ``fake`` for ``batch``; 0 when there are none."""
        total: torch.Tensor | float = 0.0
        terms: dict[str, torch.Tensor] = {}
        for regularizer in self.generator_regularizers:
            loss, named = regularizer(batch, fake)
            total = total + loss
            terms.update(named)
        return total, terms

    @classmethod
    def from_config(cls, config: TeacherTrainConfig) -> GANTrainer:
        """Build fresh networks and the trainer described by ``config``."""
        raise NotImplementedError

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One update of every network on ``batch`` (tensors already on the right device);
        returns each loss term as a float."""
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        """Set every group's learning rate to ``lr`` times its ``lr_scale`` (1 unless a group
        asks for its own, as the norm scales of a proximal-sparsity fine-tune do)."""
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)

    def train(self, mode: bool = True) -> None:
        for net in self.networks.values():
            net.train(mode)

    @torch.no_grad()
    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """Main generator's output in eval mode (as at test time), leaving its mode unchanged."""
        generator = self.networks[self.main_generator]
        was_training = generator.training
        generator.eval()
        try:
            return generator(images)
        finally:
            generator.train(was_training)

    def extra_state(self) -> dict[str, Any]:
        """State beyond networks and optimisers that a resumed run needs (the extensions;
        subclasses add theirs, e.g. image pools)."""
        return {"extensions": {name: ext.state_dict() for name, ext in self.extensions.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned. A run is only continued with the
        extensions it was interrupted with (a state without the key predates extensions)."""
        saved = state.get("extensions", {})
        if set(saved) != set(self.extensions):
            raise ConfigError(f"cannot resume: the train state holds extensions {sorted(saved)}, "
                              f"this run has {sorted(self.extensions)}; use the interrupted run's "
                              "settings or a new output folder")
        for name, extension in self.extensions.items():
            extension.load_state_dict(saved[name])
