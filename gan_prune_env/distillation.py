"""Teacher-student terms of fine-tuning: output and intermediate-feature distillation, weight EMA.

Feature distillation follows GAN Compression (Li et al., 2020) and OMGD (Ren et al., 2021): at a
few generator layers the student's activation ``S_l`` goes through a learned 1x1 conv adapter
``A_l`` (student channels -> teacher channels) and is pulled towards the teacher's activation
``T_l`` of the same-named module, ``sum_l MSE(A_l(S_l(x)), T_l(x))``. Physical slicing keeps the
teacher's module names, so layers are addressed by name and read with forward hooks. The output
term tells the student *what* to produce; the feature term also tells it *how*, which matters
most when pruning removed much of the teacher's width.

The weight EMA averages the generator over the last ~``1 / (1 - decay)`` optimiser steps, which
smooths out the step-to-step oscillation of adversarial training; the final networks use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from gan_prune_env.config import check_same_settings
from gan_prune_env.losses import l1_loss
from gan_prune_env.models.factory import init_weights
from gan_prune_env.models.resnet import ResnetBlock, ResnetGenerator
from gan_prune_env.models.separable import is_up_sampling
from gan_prune_env.models.unet import UnetGenerator, UnetSkipConnectionBlock
from gan_prune_env.teacher.base import Batch

AUTO = "auto"
"""``feature_layers`` value that picks :func:`auto_feature_layers`."""
AUTO_LAYER_COUNT = 4
"""Layers "auto" picks: GAN Compression and OMGD both distill four."""
ADAPTER_INIT_GAIN = 0.02
"""Std of the adapters' normal init, GAN Compression's ``init_net`` default."""


# --- which layers -------------------------------------------------------------------------------


def _unet_decoder_outputs(generator: UnetGenerator) -> list[str]:
    """Per inner U-Net level, the module right after its up-convolution (plain or separable;
    its norm): the level's decoder output before the skip concatenation. Deepest level first
    (forward order)."""
    names = []
    for name, block in generator.named_modules():
        if isinstance(block, UnetSkipConnectionBlock) and not block.outermost:
            up = next(i for i, m in enumerate(block.model) if is_up_sampling(m))
            names.append(f"{name}.model.{up + 1}")
    return names[::-1]  # named_modules lists the outer levels first


def _resnet_trunk(generator: ResnetGenerator) -> list[str]:
    """The residual trunk in forward order: its input (the last module of the down-sampling
    stem) and the output of every residual block."""
    blocks = [i for i, m in enumerate(generator.model) if isinstance(m, ResnetBlock)]
    return [f"model.{i}" for i in [blocks[0] - 1, *blocks]]


def _evenly_spaced(items: Sequence[str], count: int) -> tuple[str, ...]:
    """``count`` items spread evenly over ``items``, both ends included."""
    if len(items) <= count:
        return tuple(items)
    last = len(items) - 1
    return tuple(items[round(i * last / (count - 1))] for i in range(count))


def auto_feature_layers(generator: nn.Module) -> tuple[str, ...]:
    """Four layers spread evenly, both ends included, over the part of ``generator`` that
    synthesises the image (GAN Compression's rule for ResNets; OMGD also distills four).

    * ResNet: the residual trunk (its input after the down-sampling stem, then each block's
      output). For ``resnet_9blocks`` this gives ``model.9/12/15/18``, GAN Compression's exact
      ``mapping_layers``; ``resnet_6blocks`` gives ``model.9/11/13/15``.
    * U-Net: the decoder output of the inner levels (the norm after each up-convolution), from
      the bottleneck to the level just below the output. The decoder is where the image is
      rebuilt; the block outputs themselves are not used because half of their channels are a
      verbatim copy of encoder features (the skip) and the parent's in-place ReLU rewrites them
      (OMGD's U-Net layers mix such concatenations with encoder activations).
      ``unet_auto`` at 64 px has 5 inner levels (2..32 px) and gets levels 1, 2, 4, 5 (2, 4, 16,
      32 px); ``unet_256`` gets 2, 8, 32 and 128 px.

    The output layer itself is left to the output (L1) distillation term.
    """
    if isinstance(generator, UnetGenerator):
        candidates = _unet_decoder_outputs(generator)
    elif isinstance(generator, ResnetGenerator):
        candidates = _resnet_trunk(generator)
    else:
        raise ValueError(f"feature_layers 'auto' knows U-Net and ResNet generators, not "
                         f"{type(generator).__name__}; list the layers by name")
    return _evenly_spaced(candidates, AUTO_LAYER_COUNT)


def resolve_feature_layers(generator: nn.Module, layers: Sequence[str] | str
                           ) -> tuple[str, ...]:
    """``layers`` with "auto" expanded; unknown module names raise a ValueError."""
    resolved = auto_feature_layers(generator) if layers == AUTO else tuple(layers)
    modules = dict(generator.named_modules())
    unknown = [name for name in resolved if not name or name not in modules]
    if unknown:
        raise ValueError(f"feature_layers {unknown} are not modules of the generator; names "
                         f"are as in named_modules(), e.g. 'auto' picks "
                         f"{list(auto_feature_layers(generator))}")
    return resolved


# --- reading activations ------------------------------------------------------------------------


class ActivationRecorder:
    """Keeps the outputs of named submodules of ``network``, one record per forward of the whole
    network, until :meth:`pop` asks for the record of the forward that returned a given tensor.

    Records are matched by the identity of the returned tensor, not by call order, because the
    trainer runs the student and may run it several times per step: CycleGAN's ``G_AB`` also
    maps ``fake_A`` (cycle) and ``real_B`` (identity) before the regularisers see
    ``fake_B = G_AB(real_A)``. A layer whose output is later modified in place (e.g. by an
    in-place ReLU) is seen after that modification, for teacher and student alike.
    """

    def __init__(self, network: nn.Module, layers: Sequence[str]) -> None:
        modules = dict(network.named_modules())
        self._current: dict[str, torch.Tensor] = {}
        self._records: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []
        self._handles = [
            network.register_forward_pre_hook(self._start),
            *(modules[name].register_forward_hook(partial(self._keep, name)) for name in layers),
            network.register_forward_hook(self._finish),
        ]

    def _start(self, module: nn.Module, args: tuple) -> None:
        self._current = {}

    def _keep(self, name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._current[name] = output

    def _finish(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._records.append((output, self._current))

    def pop(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations of the forward that returned ``output``; every record is then dropped,
        so activations never outlive the step that produced them."""
        records, self._records = self._records, []
        for produced, activations in records:
            if produced is output:
                return activations
        raise RuntimeError("no recorded forward of the network returned this tensor (was it "
                           "copied or transformed after the forward?)")

    def remove(self) -> None:
        """Unhook the network (it leaves fine-tuning without hooks)."""
        for handle in self._handles:
            handle.remove()
        self._records = []


def _activation_channels(network: nn.Module, layers: Sequence[str], example: torch.Tensor
                         ) -> list[int]:
    """Channels of each layer's output, read off one eval-mode forward of ``example`` (eval and
    no_grad: no running statistic, gradient or random number is touched)."""
    recorder = ActivationRecorder(network, layers)
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            activations = recorder.pop(network(example))
    finally:
        network.train(was_training)
        recorder.remove()
    return [activations[name].shape[1] for name in layers]


# --- the terms --------------------------------------------------------------------------------


class FeatureDistillation:
    """``weight * sum_l MSE(A_l(S_l(x)), T_l(x))`` over ``layers``.

    The adapters ``A_l`` are 1x1 convs (with bias) initialised as GAN Compression does (weights
    N(0, 0.02) from ``seed``, biases 0), so they start near zero and learn the student-to-teacher
    channel map. An identity-like start on the kept channels was not used: mapping a hooked
    module's channels back to the kept indices of its pruning group needs the dependency graph,
    and it would not help a re-initialised student anyway. The caller trains :attr:`adapters`
    with the generator's optimiser and checkpoints them through :meth:`state_dict`.

    Args:
        student, teacher: generators of one architecture (the student possibly thinner).
        layers: module names (``named_modules()``) hooked in both.
        weight: ``lambda_feature``.
        example: one input batch, to read the layers' channel counts off a forward pass.
        seed: adapter initialisation (a private generator: the global RNG is untouched).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, layers: Sequence[str],
                 weight: float, example: torch.Tensor, seed: int) -> None:
        self.layers, self.weight = tuple(layers), weight
        pairs = zip(_activation_channels(student, layers, example),
                    _activation_channels(teacher, layers, example))
        self.adapters = init_weights(
            nn.ModuleList(nn.Conv2d(s, t, kernel_size=1) for s, t in pairs),
            gain=ADAPTER_INIT_GAIN, seed=seed).to(example.device)
        self.student = ActivationRecorder(student, layers)
        self.teacher = ActivationRecorder(teacher, layers)

    def __call__(self, fake: torch.Tensor, target: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The term for the student forward that returned ``fake`` and the teacher forward that
        returned ``target`` (run under no_grad by the caller)."""
        student, teacher = self.student.pop(fake), self.teacher.pop(target)
        loss = sum(F.mse_loss(adapter(student[name]), teacher[name])
                   for name, adapter in zip(self.layers, self.adapters))
        return self.weight * loss, {"G_feature": loss.detach()}

    def state_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "weight": self.weight,
                "adapters": self.adapters.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_same_settings(state, {"layers": list(self.layers), "weight": self.weight},
                             "feature distillation")
        self.adapters.load_state_dict(state["adapters"])

    def remove(self) -> None:
        """Unhook student and teacher."""
        self.student.remove()
        self.teacher.remove()


TEACHER_OUTPUT = "teacher_output"
"""Batch key of the teacher's output for ``batch["A"]`` when :class:`TeacherTargets` computed it
(one teacher forward per step then serves targets, output and feature distillation)."""


class TeacherTargets:
    """Batch transform: the teacher's output ``T(A)`` replaces the dataset's target ``B``.

    The student is then trained to be the teacher rather than to fit the data: the task's
    reconstruction loss pulls it to ``T(A)`` and the discriminator takes ``(A, T(A))`` as the real
    pair, so the adversarial term asks for the teacher's output distribution (METHOD 6's
    adversarial term with the input in the center's place; OMGD trains its students from their
    teachers only). Paired (Pix2Pix) tasks only: there ``B`` is the image ``A`` translates to.
    """

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher.eval().requires_grad_(False)

    def __call__(self, batch: Batch) -> Batch:
        with torch.no_grad():
            output = self.teacher(batch["A"])
        return {**batch, "B": output, TEACHER_OUTPUT: output}


INPUT_MIXES = ("none", "mixup", "cutmix")


class InputMix:
    """Batch transform: each generator input is mixed with another one of the batch, before
    :class:`TeacherTargets` asks the teacher what the mixed input translates to.

    "Function matching" (Beyer et al., *Knowledge distillation: a good teacher is patient and
    consistent*, CVPR 2022): teacher and student see the same, freshly mixed input every step, so
    the student matches the teacher's function on many more inputs than the training set holds;
    only the teacher's outputs make this possible (a mixed input has no dataset target).
    "mixup" blends whole inputs, ``lam * A + (1 - lam) * A[perm]``; "cutmix" pastes a box of
    another input covering ``1 - lam`` of the area, which keeps a label map a label map.
    ``lam ~ Beta(alpha, alpha)`` per image. A trainer extension: its random state is saved in
    train states, so a resumed fine-tune draws what an uninterrupted one would.
    """

    def __init__(self, kind: str, alpha: float, seed: int) -> None:
        if kind not in INPUT_MIXES[1:]:
            raise ValueError(f"input mix must be one of {INPUT_MIXES[1:]}, got {kind!r}")
        if not alpha > 0:
            raise ValueError(f"input mix alpha must be > 0, got {alpha}")
        self.kind, self.alpha = kind, float(alpha)
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: Batch) -> Batch:
        inputs = batch["A"]
        n = inputs.shape[0]
        other = inputs[torch.from_numpy(self._partners(n)).to(inputs.device)]
        lam = self.rng.beta(self.alpha, self.alpha, size=n)
        if self.kind == "mixup":
            weight = torch.as_tensor(lam, dtype=inputs.dtype, device=inputs.device)
            weight = weight.view(n, *([1] * (inputs.dim() - 1)))
            return {**batch, "A": weight * inputs + (1 - weight) * other}
        mixed = inputs.clone()
        height, width = inputs.shape[-2:]
        for i in range(n):
            side = float(np.sqrt(1.0 - lam[i]))
            box_h, box_w = int(round(side * height)), int(round(side * width))
            top = int(self.rng.integers(0, height - box_h + 1))
            left = int(self.rng.integers(0, width - box_w + 1))
            box = (i, slice(None), slice(top, top + box_h), slice(left, left + box_w))
            mixed[box] = other[box]
        return {**batch, "A": mixed}

    def _partners(self, n: int) -> np.ndarray:
        """A random cyclic pairing: each image mixes with another one (a batch of 1 with itself)."""
        order = self.rng.permutation(n)
        partners = np.empty(n, dtype=np.int64)
        partners[order] = np.roll(order, -1)
        return partners

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "alpha": self.alpha, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_same_settings(state, {"kind": self.kind, "alpha": self.alpha}, "the input mix")
        self.rng.bit_generator.state = state["rng"]


class Distillation:
    """Generator regulariser pulling the student towards the frozen teacher on the student's
    own input ``batch["A"]`` (the main generator's input in both families):
    ``weight * L1(G(x), T(x))`` plus the optional feature term. One teacher forward serves both.
    """

    def __init__(self, teacher: nn.Module, weight: float,
                 features: FeatureDistillation | None = None) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight, self.features = weight, features

    def __call__(self, batch: Batch, fake: torch.Tensor
                 ) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
        target = batch.get(TEACHER_OUTPUT)
        if target is None:
            with torch.no_grad():
                target = self.teacher(batch["A"])
        loss: torch.Tensor | float = 0.0
        terms: dict[str, torch.Tensor] = {}
        if self.weight > 0:
            output = l1_loss(fake, target)
            loss, terms["G_distill"] = self.weight * output, output.detach()
        if self.features is not None:
            feature_loss, feature_terms = self.features(fake, target)
            loss = loss + feature_loss
            terms.update(feature_terms)
        return loss, terms


def discriminator_feature_layers(discriminator: nn.Module) -> tuple[str, ...]:
    """The hidden activations of a PatchGAN discriminator (its LeakyReLU outputs, the input of
    every conv after the first): the layers pix2pixHD matches."""
    layers = tuple(name for name, module in discriminator.named_modules()
                   if isinstance(module, nn.LeakyReLU))
    if not layers:
        raise ValueError(f"{type(discriminator).__name__} has no LeakyReLU activation to match "
                         "features at: discriminator feature matching needs a PatchGAN D")
    return layers


class DiscriminatorFeatureMatching:
    """pix2pixHD's feature-matching loss (Wang et al., 2018) for a paired task:
    ``weight * sum_l L1(D_l(x, G(x)), D_l(x, y))`` over the discriminator's hidden layers, with
    ``y`` the batch's target (the teacher's output under teacher targets).

    The adversarial term only says whether a patch looks real; this term asks the student's
    output to produce the same discriminator features as the target at every scale the D sees,
    a dense, texture-aware signal that L1 in pixel space (blurry at low capacity) does not give.
    The discriminator is the one being fine-tuned with the student (frozen during the generator
    step), as in pix2pixHD; the target's features carry no gradient.
    """

    def __init__(self, discriminator: nn.Module, weight: float) -> None:
        self.discriminator, self.weight = discriminator, weight
        self.layers = discriminator_feature_layers(discriminator)
        self.recorder = ActivationRecorder(discriminator, self.layers)

    def __call__(self, batch: Batch, fake: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs = batch["A"]
        with torch.no_grad():
            real = self.recorder.pop(self.discriminator(torch.cat([inputs, batch["B"]], 1)))
        matched = self.recorder.pop(self.discriminator(torch.cat([inputs, fake], 1)))
        loss = sum(l1_loss(matched[name], real[name]) for name in self.layers)
        return self.weight * loss, {"G_d_feature": loss.detach()}

    def remove(self) -> None:
        """Unhook the discriminator."""
        self.recorder.remove()


def warmup_decay(decay: float, num_averaged: int) -> float:
    """The decay of the ``num_averaged``-th update: ``min(decay, (1 + n) / (10 + n))``, the
    warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``. Without it the average
    of a short fine-tune is dominated by the weights it started from (measured: at 600 steps and
    decay 0.999, FID 318 against 235 without the EMA; ``benchmarks/recipe_curve.py``)."""
    return min(decay, (1.0 + num_averaged) / (10.0 + num_averaged))


def warmup_ema_multi_avg_fn(decay: float):
    """``AveragedModel`` ``multi_avg_fn`` of an EMA with :func:`warmup_decay`."""
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               num_averaged: torch.Tensor) -> None:
        step_decay = warmup_decay(decay, int(num_averaged))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - step_decay)
        else:  # integer buffers (BatchNorm's num_batches_tracked): follow the model
            for mine, theirs in zip(averaged, current):
                mine.copy_(theirs)

    return update


class GeneratorEMA:
    """Exponential moving average of a generator's parameters *and* buffers, updated after every
    ``optimizer.step()``: ``ema = d_n * ema + (1 - d_n) * current`` with the warmed-up decay
    ``d_n = min(decay, (1 + n) / (10 + n))`` of the n-th update (:func:`warmup_decay`; the first
    update copies, as ``torch.optim.swa_utils.AveragedModel`` does). Buffers are averaged too
    (``use_buffers=True``) so BatchNorm running statistics belong to the averaged weights.
    """

    def __init__(self, generator: nn.Module, decay: float,
                 optimizer: torch.optim.Optimizer) -> None:
        self.generator, self.decay = generator, decay
        self.averaged = AveragedModel(generator, multi_avg_fn=warmup_ema_multi_avg_fn(decay),
                                      use_buffers=True)
        self._handle = optimizer.register_step_post_hook(lambda *_: self.update())

    def update(self) -> None:
        self.averaged.update_parameters(self.generator)

    def copy_to(self, generator: nn.Module) -> None:
        """Load the averaged weights and buffers into ``generator``."""
        generator.load_state_dict(self.averaged.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "averaged": self.averaged.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_same_settings(state, {"decay": self.decay}, "the weight EMA")
        self.averaged.load_state_dict(state["averaged"])

    def remove(self) -> None:
        """Stop following the optimiser."""
        self._handle.remove()


__all__ = ["AUTO", "INPUT_MIXES", "TEACHER_OUTPUT", "ActivationRecorder",
           "DiscriminatorFeatureMatching", "Distillation", "FeatureDistillation", "GeneratorEMA",
           "InputMix", "TeacherTargets", "auto_feature_layers", "discriminator_feature_layers",
           "resolve_feature_layers", "warmup_decay"]
