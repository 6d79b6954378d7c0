"""Fine-tune a physically sliced G and D after the search (METHOD 9).

The sliced networks are trained with the task's original losses (Pix2Pix: cGAN + lambda * L1;
CycleGAN: LSGAN + cycle + identity) by the same trainers and loop that train teachers, so
checkpointing, TensorBoard and exact resumption come for free. Optional generator terms and
averaging (``gan_prune_env.distillation``):

* output distillation: ``lambda_distill * L1(G_pruned(x), G_teacher(x))``;
* feature distillation: ``lambda_feature * sum_l MSE(A_l(S_l(x)), T_l(x))`` at ``feature_layers``
  through learned 1x1 adapters (GAN Compression / OMGD), trained by the generator's optimiser;
* local density: ``lambda_density * (KL(P_c || Q_c) + lambda_rec * L1)`` on neighbourhoods of the
  teacher manifold (the KDE and anchor terms of METHOD 6; the adversarial part is already the
  task's GAN loss, judged by the fine-tuned D);
* network slimming's sparsity: ``lambda_norm_sparsity * mean |gamma|`` over G's norm scales,
  or its proximal form (``norm_shrink``): soft-thresholding those scales after every step;
* slimmable training (``slimmable_widths``): the main generator's narrower copies, masked to
  their first channels, distilled from the teacher's output as well;
* weight EMA (``ema_decay``): the returned main generator holds the averaged weights.

Adapters and EMA are trainer extensions, so train states hold them and a resumed fine-tune ends
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan_prune_env.distillation import (
    AUTO,
    INPUT_MIXES,
    DiscriminatorFeatureMatching,
    Distillation,
    FeatureDistillation,
    GeneratorEMA,
    TEACHER_OUTPUT,
    InputMix,
    TeacherTargets,
    resolve_feature_layers,
)
from gan_prune_env.config import ConfigError
from gan_prune_env.families import network_names
from gan_prune_env.losses import l1_loss
from gan_prune_env.models.factory import reinitialize
from gan_prune_env.objective import DensityTerm, LocalDensityObjective, TeacherPool
from gan_prune_env.pruning import (
    ChannelMasker,
    ChannelSpace,
    gradual_architectures,
    relative_indices,
    slice_by_indices,
)
from gan_prune_env.pruning.importance import PositionImportance
from gan_prune_env.supernet import frozen_norm_statistics
from gan_prune_env.tasks import TaskConfig
from gan_prune_env.teacher.base import Batch, GANTrainer
from gan_prune_env.teacher.config import AUTOCAST_DTYPES, TeacherTrainConfig
from gan_prune_env.teacher.cyclegan import CycleGANTrainer
from gan_prune_env.teacher.loop import train_teacher
from gan_prune_env.teacher.pix2pix import Pix2PixTrainer


def _check_feature_layers(layers: Sequence[str] | str) -> tuple[str, ...] | str:
    """"auto" or distinct, non-empty module names (as a tuple)."""
    if isinstance(layers, str):
        if layers != AUTO:
            raise ValueError(f"feature_layers must be {AUTO!r} or a list of module names, got "
                             f"{layers!r}")
        return layers
    layers = tuple(layers)
    if not all(isinstance(n, str) and n for n in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"feature_layers must be distinct, non-empty module names, got "
                         f"{list(layers)}")
    return layers


TARGETS = ("auto", "data", "teacher")
DISCRIMINATOR_INITS = ("teacher", "fresh")


@dataclass
class FinetuneConfig:
    """The fine-tuning recipe: these defaults ARE the recipe every run and benchmark uses unless
    it overrides a field. Adam with lr 2e-4, betas (0.5, 0.999) as METHOD 9 prescribes."""

    steps: int = 3000
    """Measured (``benchmarks/recipe_curve.py``, default task, 10% budget, data targets): FID
    falls from 238 at 600 steps to 204 at 3000, and is worse at 6000 (211.9, 2 seeds) and no
    better at 12000 (200.9, 1 seed); 3000 steps at batch 8 is about the samples the default
    teacher itself was trained on. With teacher targets (3 seeds, 5% and 2.5% budgets) 6000
    steps gave the pruned G no better FID (+1.6 and -1.8, within the seed spread) and no better
    PSNR to the teacher."""
    batch_size: int = 8
    """32 measured on the default task at 5% of G's MACs (uniform architecture, teacher targets,
    5 seeds, paired): FID -0.2 +- 4.0, PSNR to the teacher +0.13 +- 0.38 dB, at 3.4x the time.
    No better, so 8."""
    lr: float = 2e-4
    """Pix2pix's rate. Measured on the default task at 10% of G's MACs (teacher targets, 3
    seeds, paired): 1e-4 costs 10.9 FID and 0.80 dB of PSNR to the teacher on every seed; 4e-4
    is no better (+4.0 +- 9.3 FID, -0.20 dB)."""
    lr_decay_steps: int = 1500
    """Linear decay to 0 over the last half of the steps, as the reference pix2pix schedule."""
    lambda_task: float | None = None
    """Weight of the task's own reconstruction loss; ``None`` keeps the family's reference
    weight (Pix2Pix: 100 x L1 to the target; CycleGAN: 10 x cycle, identity 0.5 of it). Half
    of it on Pix2Pix (50, more weight on the adversarial term) cost 12.5 FID and 0.61 dB of PSNR
    to the teacher at 5% of G's MACs on the default task (seed 0; the other seeds were not
    run)."""
    lambda_distill: float = 10.0
    """Weight of ``L1(G(x), teacher(x))``: the pruned G is there to keep the teacher's images,
    and the teacher's outputs are a denser target than the ground truth; 0 turns it off."""
    feature_layers: tuple[str, ...] | str = "auto"
    """Generator modules (``named_modules()`` names, shared by teacher and sliced student) whose
    activations are distilled; "auto" picks four (see
    ``gan_prune_env.distillation.auto_feature_layers``); empty turns feature distillation off.
    Alone it changed FID by -0.9 +- 2.8 at 3000 steps (within noise); with the EMA below it is
    the best recipe measured."""
    lambda_feature: float = 1.0
    """Weight of the summed per-layer feature MSE; GAN Compression's 1. Must be > 0: switch the
    term off with an empty ``feature_layers``. 10 measured on the default task (uniform
    architecture, 3 seeds, paired): FID -0.6 +- 6.1 and PSNR to the teacher +0.08 dB at 5% of
    G's MACs, FID +11.6 +- 26.0 and +0.04 dB at 2.5%: no better, so 1."""
    ema_decay: float = 0.999
    """Decay of the generator weight EMA, in [0, 1) (0.999 averages over ~1000 steps, after a
    warm-up); the returned main generator holds the averaged weights; 0 turns it off. Measured at
    3000 steps with features, against output distillation alone: FID -5.7 +- 2.0 and PSNR to
    the teacher +0.67 dB (inherited weights), -5.3 / +0.81 (from scratch), on both seeds."""
    lambda_density: float = 0.0
    """Weight of the local-density term (METHOD 6's KDE and anchor terms on neighbourhoods of
    the teacher manifold); 0 turns it off. Measured on the default task at 10% of G's MACs:
    with the data targets it cost 10 FID (1500 steps, 2 seeds); with the teacher's, +0.6 +- 3.3
    FID and +0.02 dB PSNR to the teacher (3000 steps, 3 seeds, paired), nothing, at 1.7x the
    time. So off."""
    density_centers: int = 4  # neighbourhoods per step for the density term
    lambda_d_feature: float = 0.0
    """Weight of pix2pixHD's discriminator feature matching,
    ``sum_l L1(D_l(x, G(x)), D_l(x, y))`` over the fine-tuned D's hidden layers with ``y`` the
    target (``gan_prune_env.distillation.DiscriminatorFeatureMatching``; paired tasks only);
    0 turns it off. Measured on the default task at 5% of G's MACs (uniform architecture,
    today's recipe otherwise, weight 10 as pix2pixHD, 3 seeds, paired): FID +2.6 +- 3.3 (higher
    on 2 of 3), KID -6.4 x1e-3 (lower on every seed), PSNR to the teacher +0.13 +- 0.23 dB, at
    1.25x the fine-tuning time. Not better by FID, so off."""
    lambda_norm_sparsity: float = 0.0
    """Weight of network slimming's sparsity term on the main generator, ``mean |gamma|`` over
    its norms' affine scales (``NormScaleSparsity``; Liu et al., 2017); 0 turns it off. For a
    network that will be narrowed later, ranked by those scales
    (``RunConfig.separable_importance: norm_scale``): the distilled start of distil-then-prune.
    Measured on the default task (weight 1, one start, 5 seeds): narrowed to 10% and 5% of the
    teacher's MACs it keeps +0.18 and +0.55 dB more PSNR to the teacher than the plain start
    on every seed, at the same FID; off for every other fine-tune."""
    norm_shrink: float = 0.0
    """Proximal form of the sparsity term: after every generator step each norm scale of the
    main generator is soft-thresholded, ``gamma <- sign(gamma) * max(|gamma| - norm_shrink *
    lr, 0)`` with the step's learning rate (``NormScaleShrink``; ISTA, as Sparse Structure
    Selection trains its scaling factors). Why besides ``lambda_norm_sparsity``: Adam rescales
    a loss term's gradient, so the term moves a scale at most about ``lr`` a step whatever its
    weight and no scale reaches zero (weight 1 and 4 left every scale of the measured start
    above 0.56); the proximal step is not rescaled, so a scale whose loss gradient is not
    consistent enough to push back (Adam's step is at most about ``lr``) reaches exactly zero
    and its channel is dead before it is cut. 0 turns it off; >= 1 zeroes every scale.
    Measured on the default task's distil-then-prune start (one start each, with
    ``norm_lr_scale`` 10): at 0.2 no scale reached zero (they fell ten-fold, to medians of
    0.1-0.15, as the next layers took the scale up: a norm followed by a convolution is scale
    invariant without weight decay); the start got better (FID 170.7 against 176.0 with
    ``lambda_norm_sparsity`` 1) and its narrowed copies worse (5%: +0.8 FID and -0.25 dB PSNR
    to the teacher on every seed, 3 seeds; 2.5%: +12.2 FID on every seed). At 0.5 most scales
    of the down path were near zero and the start lost 2 dB. So off."""
    slimmable_widths: tuple[float, ...] = ()
    """Slimmable training (Yu et al., 2019; GAN Compression's once-for-all network): every
    generator step also distils each listed narrower copy of the main generator, the full one
    masked to the first ``width`` share of every path's channels (``PositionImportance``), with
    ``lambda_distill * L1`` to the teacher's output, averaged over the widths
    (``SlimmableDistillation``). Why: a start distilled alone prunes worse the better it gets
    (``docs/RESULTS.md``, 'Distil, then prune'), as its channels co-adapt; one trained as its own
    narrower copies is narrowed (``separable_importance: position``) to networks it has
    already been. Each width must split every channel group evenly (e.g. 0.5 and 0.3125 of
    ngf 16: widths 8 and 5). Empty turns it off. Measured on the default task (widths 13, 8 and
    5 of 16, one start, 2.6x its time): narrowed with no fine-tuning its copies keep 1-3 dB more
    PSNR to the teacher than the plain start's, but after the recipe they tie the
    network-slimming start at 5% and 2.5% and lose 5.6 FID at 10% on every seed (3-5 seeds).
    So off."""
    norm_lr_scale: float = 1.0
    """Learning rate of the main generator's norm scales as a multiple of ``lr`` (their own
    optimiser group, following the same schedule). Why: Adam moves a parameter at most about
    ``lr`` a step, so at 2e-4 over the recipe's 3000 steps a scale travels about 0.5 in all: no
    shrink can switch off a channel whose scale starts at 1 unless the scales may move faster."""
    targets: str = "auto"
    """What the task's losses call the real image: "data", the dataset's target (the reference
    recipe), or "teacher", the teacher's output for the same input, so the discriminator's real
    pairs and the reconstruction target both come from the teacher
    (``gan_prune_env.distillation.TeacherTargets``; paired tasks only). "auto": "teacher" for
    Pix2Pix, "data" for CycleGAN (unpaired: no target to replace). Measured on the default task
    at 10% of G's MACs (``benchmarks/frontier.py``, 5 seeds, uniform architecture): FID
    176.8 +- 3.9 against 198.0 +- 2.4 with the data targets (paired -21.2 +- 5.6, lower on every
    seed; the teacher scores 169.2) and PSNR to the teacher +1.72 dB."""
    input_mix: str = "auto"
    """Function matching (``gan_prune_env.distillation.InputMix``): "mixup" or "cutmix" mixes
    each input with another of the batch before the teacher labels it, so the student learns the
    teacher's function on inputs the dataset does not hold; "none" trains on the dataset's
    inputs; "auto": "cutmix" where the targets resolve to the teacher's outputs, else "none" (a
    mixed input has no dataset target, so the data targets cannot go with a mix). Measured on
    the default task at 10% of G's MACs (uniform architecture, teacher targets, 3 seeds, paired
    with "none"): cutmix +0.56 dB of PSNR to the teacher with FID within the seed spread, mixup
    worse on both; with ``generator_inherit`` 0.8 the pair below."""
    input_mix_alpha: float = 1.0
    """``lam ~ Beta(alpha, alpha)`` of the input mix (1: uniform)."""
    prune_stages: int = 1
    """Gradual pruning (``gan_prune_env.pruning.gradual``): with N > 1 the fine-tune starts from
    the teacher sliced to a wider architecture and narrows to the found one in N stages
    (geometric steps in width; each stage keeps the channels of the next), training between
    cuts; the learning rate decays in the last stage only. 1 slices once, as the search found
    it. Needs the teacher's weights as the starting point (not a scratch student nor a
    supernet slice). Measured on the default task (uniform architecture, teacher targets, 3
    stages, 3 seeds, paired with one-shot slicing): at 5% of G's MACs FID +7.3 +- 7.9 (higher on
    2 of 3 seeds), PSNR to the teacher -0.08 dB; at 2.5% FID +3.3 +- 8.6 (2 of 3) and PSNR to
    the teacher +0.75 +- 0.25 dB on every seed. Not better by FID, so off."""
    prune_stage_share: float = 0.2
    """With ``prune_stages`` > 1, the share of ``steps`` the N - 1 narrowing stages take
    together (split evenly); the last stage, at the found architecture, trains the rest. An
    even split of 3000 steps over 3 stages (share 2/3) left the found architecture 1000 steps
    and cost 37 FID points at 5% of G's MACs (seed 0)."""
    discriminator_init: str = "teacher"
    """Where the discriminators start: "teacher", the teacher's pruned to the found
    architecture (GAN Compression reuses the teacher's D), or "fresh", re-initialised (the
    reference init, seeds ``seed + 1``, ...; fresh BatchNorm statistics) while the generator
    keeps the teacher's weights: a weak D early on pulls less towards texture and more towards
    the teacher's pixels. Not with ``prune_stages`` > 1. Measured on the default task
    (uniform architecture, teacher targets, 3 seeds, paired with "teacher"): FID higher on
    every seed at every budget (+7.7 at 10%, +14.8 at 5%, +17.4 at 2.5%); PSNR to the
    teacher +0.88 dB at 2.5% (every seed), +0.29 at 5%, -0.28 at 10%. So "teacher"."""
    generator_inherit: float = 0.8
    """Share of the inherited weights in the generators' starting point: each parameter starts
    at ``s * inherited + (1 - s) * fresh``, ``fresh`` the reference init the scratch student
    gets (seed ``seed``, ``seed + 1``, ... per generator); the norms' running statistics stay
    the inherited ones (training replaces them). 1 starts from the pruned teacher; 0 from the
    scratch student's G, which with the teacher's D is GAN Compression's student setup; in
    between it is shrink-and-perturb (Ash & Adams 2020): the teacher's function, shrunk towards
    a fresh init so that training can move it further. Not with ``prune_stages`` > 1 (the
    stages rebuild G from the teacher). Measured on the default task (uniform architecture,
    teacher targets, 3 seeds, paired with 1 and no input mix): alone, 0.8 gives +0.18 dB of PSNR
    to the teacher on every seed at 5% of G's MACs but FID +3.7 on every seed at 10%; with
    cutmix (``input_mix`` "auto") it costs no FID (-0.6, -2.0, -0.0, -4.4 at 25%, 10%, 5%,
    2.5%) and gives +0.64-0.67 dB at 25%, 10% and 5% on every seed: the best pair measured, so
    0.8."""
    adversarial_warmup_steps: int = 0
    """The generator's adversarial term ramps up linearly from 0 over these first steps
    (``TeacherTrainConfig.adversarial_warmup_steps``; with ``prune_stages`` > 1, over the first
    stage's), while distillation and the discriminator train at full strength: the sliced
    generator first recovers the teacher's images, then the inherited discriminator adds
    texture. 0: no warm-up. Measured on the default task (uniform architecture, teacher
    targets, 1500 steps, 3 seeds, paired with no warm-up): at 5% of G's MACs FID -0.1 +- 10.6
    and PSNR to the teacher -0.01 dB; at 2.5% FID -4.5 +- 7.6 and +0.29 +- 0.40 dB, within
    the seed spread. So 0."""
    autocast: str | None = None
    """Mixed precision of the forward passes (``TeacherTrainConfig.autocast``): "bfloat16" on
    GPUs with bfloat16 tensor cores or CPUs with AMX; None (float32) is the measured recipe.
    Measured on an AMX CPU (default task, 10% of G's MACs, uniform architecture, 5 seeds,
    paired): 1.1x as fast at 64 px, FID +1.8 +- 4.7 (higher on 4 of 5 seeds), PSNR to the
    teacher -0.05 dB; on the wide task (3 seeds) 1.1-1.2x, FID -0.1 +- 0.3: the same quality
    for little time. 2.2x as fast at facades' 128 px, where its quality is not measured."""
    sync_batchnorm: bool = False
    """BatchNorm statistics over all processes' rows when fine-tuning on several GPUs
    (``TeacherTrainConfig.sync_batchnorm``); no effect in one process."""
    num_workers: int = 0
    """DataLoader worker processes making the training batches
    (``TeacherTrainConfig.num_workers``); batches are the same for any number (each item is
    seeded by its epoch and index). 0 on CPU, where the cores train; on a GPU the batches are the
    bottleneck: at 256 px on an H200, making the procedural batches in the main process took
    85% of a fine-tuning step (``benchmarks/device_timing.py``)."""
    save_every: int = 200
    log_every: int = 20
    image_every: int = 100

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.density_centers < 1:
            raise ValueError("steps must be >= 0, batch_size and density_centers >= 1")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (0: batches made in the main process), "
                             f"got {self.num_workers}")
        if self.adversarial_warmup_steps < 0:
            raise ValueError(f"adversarial_warmup_steps must be >= 0 (0: no warm-up), got "
                             f"{self.adversarial_warmup_steps}")
        if self.prune_stages < 1:
            raise ValueError(f"prune_stages must be >= 1 (1 = one-shot slicing), got "
                             f"{self.prune_stages}")
        if self.discriminator_init not in DISCRIMINATOR_INITS:
            raise ValueError(f"discriminator_init {self.discriminator_init!r} is not one of "
                             f"{DISCRIMINATOR_INITS}")
        if self.discriminator_init == "fresh" and self.prune_stages > 1:
            raise ValueError("discriminator_init 'fresh' and prune_stages > 1 do not go "
                             "together: the stages rebuild D from the teacher; use one")
        if not 0.0 <= self.generator_inherit <= 1.0:
            raise ValueError(f"generator_inherit must be in [0, 1] (1 = the teacher's weights), "
                             f"got {self.generator_inherit}")
        if self.generator_inherit < 1.0 and self.prune_stages > 1:
            raise ValueError(f"generator_inherit {self.generator_inherit} < 1 and prune_stages "
                             f"{self.prune_stages} > 1 do not go together: the stages rebuild G "
                             "from the teacher; set generator_inherit: 1.0 with prune_stages")
        if not 0 < self.prune_stage_share < 1:
            raise ValueError(f"prune_stage_share must be in (0, 1), got {self.prune_stage_share}")
        narrowing = round(self.steps * self.prune_stage_share)
        if self.prune_stages > 1 and self.steps and narrowing < self.prune_stages - 1:
            raise ValueError(f"prune_stages {self.prune_stages} needs at least one step per "
                             f"narrowing stage, but prune_stage_share {self.prune_stage_share} "
                             f"of {self.steps} steps gives them {narrowing}")
        for name in ("lr", "lambda_task", "lambda_feature", "norm_lr_scale"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lambda_distill", "lambda_density", "lambda_d_feature",
                     "lambda_norm_sparsity", "norm_shrink", "lr_decay_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.input_mix not in ("auto",) + INPUT_MIXES:
            raise ValueError(f"input_mix must be one of {('auto',) + INPUT_MIXES}, got "
                             f"{self.input_mix!r}")
        if not self.input_mix_alpha > 0:
            raise ValueError(f"input_mix_alpha must be > 0, got {self.input_mix_alpha}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast {self.autocast!r} is not one of {list(AUTOCAST_DTYPES)} "
                             "(or null for float32)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        self.feature_layers = _check_feature_layers(self.feature_layers)
        self.slimmable_widths = tuple(float(w) for w in self.slimmable_widths)
        if any(not 0 < w < 1 for w in self.slimmable_widths):
            raise ValueError(f"slimmable_widths must lie in (0, 1) (shares of the generator's "
                             f"width), got {self.slimmable_widths}")
        if self.slimmable_widths and self.lambda_distill == 0:
            raise ValueError("slimmable_widths distils the narrower copies with lambda_distill; "
                             "it is 0: set lambda_distill > 0 or slimmable_widths: []")

    def check_family(self, family: str) -> None:
        """Teacher targets replace a paired target; an unpaired (CycleGAN) task has none. Mixed
        inputs need the teacher to label them."""
        if self.targets == "teacher" and family != "pix2pix":
            raise ConfigError(f"finetune targets='teacher' needs a paired (Pix2Pix) task, not "
                              f"a {family} one: use targets='auto' or 'data'")
        if self.lambda_d_feature > 0 and family != "pix2pix":
            raise ConfigError(f"finetune lambda_d_feature={self.lambda_d_feature} needs a paired "
                              f"(Pix2Pix) task, not a {family} one: an unpaired task has no "
                              "target for the same input to match features with; set it to 0")
        mixed = self.resolved_input_mix(family) != "none"
        if mixed and self.resolved_targets(family) != "teacher":
            raise ConfigError(f"finetune input_mix={self.input_mix!r} needs the teacher's outputs "
                              f"as targets (a mixed input has no dataset target), but targets "
                              f"resolve to 'data' for this {family} task: set "
                              "input_mix='none', or targets='teacher' on a Pix2Pix task")

    def resolved(self, family: str) -> FinetuneConfig:
        """This recipe with its "auto" choices (``targets``, ``input_mix``) made for a task of
        ``family``: what it does there, to compare recipes by."""
        return replace(self, targets=self.resolved_targets(family),
                       input_mix=self.resolved_input_mix(family))

    def resolved_input_mix(self, family: str) -> str:
        """``input_mix`` with "auto" resolved for a task of ``family``: the mix needs the
        teacher's outputs as targets, so "cutmix" only where they are."""
        if self.input_mix == "auto":
            return "cutmix" if self.resolved_targets(family) == "teacher" else "none"
        return self.input_mix

    def resolved_targets(self, family: str) -> str:
        """``targets`` with "auto" resolved for a task of ``family``."""
        if self.targets == "auto":
            return "teacher" if family == "pix2pix" else "data"
        return self.targets


class NormScaleSparsity:
    """Network slimming's sparsity term (Liu et al., 2017; GAN-Slimming, Wang et al., 2020):
    ``weight * mean |gamma|`` over the affine scales of ``student``'s norm layers.

    Why: narrowing keeps the channels a ranking calls best, and a network trained without
    pressure spreads its signal over all of them (the longer it trains, the worse its narrowed
    copy fares: ``docs/RESULTS.md``, 'Distil, then prune'). Under this term the scales of the
    channels the loss can spare shrink towards zero, so ranking by them
    (``RunConfig.separable_importance: norm_scale``) drops channels that carry little. The
    mean, not the sum, keeps the weight's meaning across widths."""

    def __init__(self, student: nn.Module, weight: float) -> None:
        self.scales = affine_norm_scales(student, "lambda_norm_sparsity")
        self.weight = weight
        self.count = sum(scale.numel() for scale in self.scales)

    def __call__(self, batch: Batch, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        mean_scale = sum(scale.abs().sum() for scale in self.scales) / self.count
        return self.weight * mean_scale, {"G_norm_scale": mean_scale.detach()}


class SlimmableDistillation:
    """Generator regulariser: the ``student``'s narrower copies, each the full network masked
    (``ChannelMasker``, exact: the masked network computes what the sliced one does) to the
    first ``width`` share of every path's channels, pulled to the teacher's output:
    ``weight * mean_w L1(G_w(x), T(x))``. BatchNorm running statistics follow the full network
    only (``frozen_norm_statistics``), as in the sandwich rule of ``gan_prune_env.supernet``.

    Register it after :class:`Distillation`: its forwards overwrite the activations the feature
    term records."""

    def __init__(self, student: nn.Module, teacher: nn.Module, widths: Sequence[float],
                 weight: float, example: torch.Tensor) -> None:
        self.student, self.weight = student, weight
        self.teacher = teacher.eval().requires_grad_(False)
        space = ChannelSpace(student, example, PositionImportance())
        self.counts = {width: _even_counts(space, width) for width in widths}
        self.masker = ChannelMasker(student, space)

    def __call__(self, batch: Batch, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        target = batch.get(TEACHER_OUTPUT)
        if target is None:
            with torch.no_grad():
                target = self.teacher(batch["A"])
        losses = {}
        try:
            for width, counts in self.counts.items():
                self.masker.set_counts(counts)
                with frozen_norm_statistics(self.student):
                    losses[f"G_slimmable_{width:g}"] = l1_loss(self.student(batch["A"]), target)
        finally:
            self.masker.reset()
        total = sum(losses.values()) / len(losses)
        return self.weight * total, {name: loss.detach() for name, loss in losses.items()}

    def remove(self) -> None:
        """Detach the masks."""
        self.masker.remove()


def _even_counts(space: ChannelSpace, width: float) -> list[int]:
    """Each group's channel count at ``width`` of the full width; a ConfigError unless every
    group narrows to a whole number of channels."""
    counts = [group.num_channels * width for group in space.groups]
    if any(abs(c - round(c)) > 1e-6 or round(c) < 1 for c in counts):
        raise ConfigError(f"finetune slimmable_widths: {width:g} does not split the groups "
                          f"({[g.num_channels for g in space.groups]} channels) evenly; use "
                          "narrower widths of the form k / ngf")
    return [round(c) for c in counts]


def give_norm_scales_their_lr(student: nn.Module, optimizer: torch.optim.Optimizer,
                              lr_scale: float) -> None:
    """Move ``student``'s affine norm scales out of ``optimizer``'s groups into a group of
    their own whose learning rate is ``lr_scale`` times the others' (``GANTrainer.set_lr``
    reads its ``lr_scale``). Call it before any step: the optimiser's state is keyed by
    position, so a resumed run must build the same groups."""
    scales = affine_norm_scales(student, "norm_lr_scale != 1")
    ids = {id(scale) for scale in scales}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    optimizer.add_param_group({"params": scales,
                               "lr": optimizer.param_groups[0]["lr"] * lr_scale,
                               "lr_scale": lr_scale})


def affine_norm_scales(student: nn.Module, setting: str) -> list[torch.Tensor]:
    """The affine scales (``weight``) of ``student``'s norm layers; a ConfigError naming
    ``setting`` when it has none."""
    scales = [m.weight for m in student.modules()
              if isinstance(m, nn.modules.batchnorm._NormBase) and m.weight is not None]
    if not scales:
        raise ConfigError(f"finetune {setting} > 0 needs a generator with affine norms "
                          "(BatchNorm, or InstanceNorm with affine=True); this one has none: "
                          "set it to 0")
    return scales


class NormScaleShrink:
    """The proximal step of an L1 penalty on ``student``'s norm scales, after every step of
    ``optimizer``: ``gamma <- sign(gamma) * max(|gamma| - shrink * lr, 0)``, ``lr`` the
    learning rate of the scales' optimiser group at that step (so it follows the decay).

    Why not a loss term (:class:`NormScaleSparsity`): Adam divides each gradient by its running
    magnitude, which caps how far a penalty moves a scale and never lets it settle at zero; the
    soft threshold acts after Adam and sets a scale the loss does not defend to exactly zero.
    Register it before the weight EMA so the average sees the thresholded scales."""

    def __init__(self, student: nn.Module, shrink: float, optimizer: torch.optim.Optimizer
                 ) -> None:
        self.scales = affine_norm_scales(student, "norm_shrink")
        self.shrink = shrink
        # the group that holds the scales: its learning rate follows the schedule
        self._group = next(group for group in optimizer.param_groups
                           if any(p is self.scales[0] for p in group["params"]))
        self._handle = optimizer.register_step_post_hook(lambda *_: self.step())

    @torch.no_grad()
    def step(self) -> None:
        threshold = self.shrink * self._group["lr"]
        for scale in self.scales:
            scale.copy_(scale.sign() * (scale.abs() - threshold).clamp_min(0))

    def dead_fraction(self) -> float:
        """The share of scales that are exactly zero: channels the shrink has switched off."""
        return sum(int((s == 0).sum()) for s in self.scales) / sum(s.numel() for s in self.scales)

    def remove(self) -> None:
        """Stop following the optimiser."""
        self._handle.remove()


def train_config(task: TaskConfig, config: FinetuneConfig, seed: int, device: str,
                 progress: bool) -> TeacherTrainConfig:
    """The teacher recipe of ``task`` with the fine-tuning schedule."""
    weight_name = "lambda_l1" if task.family == "pix2pix" else "lambda_cycle"
    weights = {} if config.lambda_task is None else {weight_name: config.lambda_task}
    return TeacherTrainConfig(
        family=task.family, data=task.data, generator=task.generator,
        discriminator=task.discriminator, n_steps=max(config.steps, 1),
        batch_size=config.batch_size, lr=config.lr,
        lr_decay_steps=min(config.lr_decay_steps, config.steps),
        adversarial_warmup_steps=config.adversarial_warmup_steps, seed=seed,
        log_every=config.log_every, image_every=config.image_every,
        save_every=config.save_every, device=device, autocast=config.autocast,
        sync_batchnorm=config.sync_batchnorm, num_workers=config.num_workers,
        progress=progress, **weights)


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


def attach_ema(trainer: GANTrainer, decay: float) -> GeneratorEMA | None:
    """Average the main generator after every generator step (None when ``decay`` is 0).
    Attach it before any hook is put on the generator: the average starts as a copy of it."""
    if decay == 0:
        return None
    ema = GeneratorEMA(trainer.networks[trainer.main_generator], decay,
                       trainer.optimizers["generator"])
    trainer.extensions["ema"] = ema
    return ema


def attach_distillation(trainer: GANTrainer, teacher: nn.Module, config: FinetuneConfig,
                        example: torch.Tensor, seed: int) -> FeatureDistillation | None:
    """Add the output and feature distillation regulariser the config asks for.

    The feature adapters join the generator's optimiser as a second parameter group (same
    learning-rate schedule, zeroed and stepped with the generator) and are a trainer extension.
    Returns the feature term, whose hooks the caller removes after training, or None.
    """
    student = trainer.networks[trainer.main_generator]
    layers = resolve_feature_layers(student, config.feature_layers)
    features = None
    if layers:
        features = FeatureDistillation(student, teacher, layers, config.lambda_feature, example,
                                       seed)
        trainer.optimizers["generator"].add_param_group(
            {"params": list(features.adapters.parameters())})
        trainer.extensions["feature_distillation"] = features
    if config.lambda_distill > 0 or features is not None:
        trainer.generator_regularizers.append(
            Distillation(teacher, config.lambda_distill, features))
    return features


def finetune_pair(networks: dict[str, nn.Module], teacher: dict[str, nn.Module],
                  task: TaskConfig, config: FinetuneConfig, out_dir: str | Path, *,
                  kept: dict[str, Any], input_shape: dict[str, Any], seed: int = 0,
                  device: str = "cpu", progress: bool = True,
                  objective: LocalDensityObjective | None = None,
                  pool: TeacherPool | None = None,
                  until_step: int | None = None) -> dict[str, nn.Module]:
    """Train ``networks`` (resuming from ``out_dir``) and return them.

    ``kept``/``input_shape`` are stored in every train-state checkpoint so each one can be
    rebuilt on its own with ``gan_prune_env.checkpoint.load_generator``. ``until_step`` stops
    after that global step (time-sliced jobs, tests of resumption). Once the run is complete,
    with ``ema_decay`` the main generator receives the EMA weights (the train states keep the
    raw ones, which training continues from); the networks leave without hooks.

    With ``prune_stages`` > 1 the networks ``kept`` names are rebuilt from ``teacher`` in
    stages (``out_dir/stage_<s>``), ending sliced to ``kept``, and replace their entries of
    ``networks``; the other networks are trained in place. Otherwise ``networks`` are trained
    in place.
    """
    if config.steps == 0:
        return networks
    config.check_family(task.family)
    if config.discriminator_init == "fresh":  # on resume the train state then overwrites it
        for offset, name in enumerate(network_names(task.family, "discriminator")):
            reinitialize(networks[name], seed=seed + 1 + offset)
    if config.generator_inherit < 1.0:  # on resume the train state then overwrites it
        for offset, name in enumerate(network_names(task.family, "generator")):
            shrink_towards_fresh(networks[name], config.generator_inherit, seed=seed + offset)
    args = dict(task=task, input_shape=input_shape, seed=seed, device=device,
                progress=progress, objective=objective, pool=pool)
    if config.prune_stages == 1:
        _train_stage(networks, teacher, config, out_dir, kept=kept, until_step=until_step,
                     **args)
        return networks
    plans = _stage_architectures(teacher, kept, input_shape, config.prune_stages, device)
    staged = dict(networks)
    staged.update({name: slice_by_indices(teacher[name], _example(input_shape, name, device),
                                          plans[0][name]) for name in kept})
    first_step = 0
    for stage, (plan, stage_config) in enumerate(zip(plans, _stage_configs(config)), 1):
        if stage > 1:
            for name in kept:
                slice_by_indices(staged[name], _example(input_shape, name, device),
                                 relative_indices(plans[stage - 2][name], plan[name]),
                                 inplace=True)
        local_until = None if until_step is None else until_step - first_step
        _train_stage(staged, teacher, stage_config, Path(out_dir) / f"stage_{stage}", kept=plan,
                     until_step=local_until, **args)
        first_step += stage_config.steps
        if until_step is not None and until_step < first_step:
            return networks  # stopped inside this stage: nothing final to hand back yet
    networks.update(staged)
    return networks


@torch.no_grad()
def shrink_towards_fresh(network: nn.Module, inherit: float, seed: int) -> nn.Module:
    """Every parameter of ``network`` becomes ``inherit * itself + (1 - inherit) * fresh``, with
    ``fresh`` the reference init at ``seed`` (:func:`reinitialize`): shrink-and-perturb. At 0 the
    parameters are exactly the fresh init, at 1 they are left alone. Modifies and returns
    ``network``."""
    fresh = reinitialize(copy.deepcopy(network), seed=seed)
    for param, start in zip(network.parameters(), fresh.parameters(), strict=True):
        param.mul_(inherit).add_(start, alpha=1.0 - inherit)
    return network


def _example(input_shape: dict[str, Any], name: str, device: str) -> torch.Tensor:
    return torch.zeros(1, *input_shape[name], device=device)


def _stage_architectures(teacher: dict[str, nn.Module], kept: dict[str, Any],
                         input_shape: dict[str, Any], stages: int, device: str
                         ) -> list[dict[str, Any]]:
    """Per stage, the kept channels of every sliced network (``gradual_architectures``)."""
    per_network = {name: gradual_architectures(teacher[name], _example(input_shape, name, device),
                                               kept[name], stages)
                   for name in kept}
    return [{name: plans[stage] for name, plans in per_network.items()}
            for stage in range(stages)]


def _stage_configs(config: FinetuneConfig) -> list[FinetuneConfig]:
    """The narrowing stages share ``prune_stage_share`` of the steps evenly, the last stage
    trains the rest; the learning rate stays constant until the last stage, which decays it
    as the one-shot recipe would; an adversarial warm-up runs in the first stage."""
    stages = config.prune_stages
    per_stage = round(config.steps * config.prune_stage_share) // (stages - 1)
    steps = [per_stage] * (stages - 1) + [config.steps - per_stage * (stages - 1)]
    return [replace(config, steps=n, prune_stages=1,
                    lr_decay_steps=min(config.lr_decay_steps, n) if i == stages - 1 else 0,
                    adversarial_warmup_steps=config.adversarial_warmup_steps if i == 0 else 0)
            for i, n in enumerate(steps)]


@dataclass
class RecipeAttachments:
    """What ``build_recipe_trainer`` hooked onto the networks beyond the trainer itself (None
    where the config asks for none). ``remove`` detaches them, in this order."""

    features: FeatureDistillation | None
    ema: GeneratorEMA | None
    matching: DiscriminatorFeatureMatching | None
    shrink: NormScaleShrink | None = None
    slimmable: SlimmableDistillation | None = None

    def remove(self) -> None:
        for extension in (self.features, self.ema, self.matching, self.shrink, self.slimmable):
            if extension is not None:
                extension.remove()


def build_recipe_trainer(networks: dict[str, nn.Module], teacher: dict[str, nn.Module],
                         config: FinetuneConfig, *, task: TaskConfig,
                         input_shape: dict[str, Any], seed: int, device: str, progress: bool,
                         objective: LocalDensityObjective | None = None,
                         pool: TeacherPool | None = None
                         ) -> tuple[TeacherTrainConfig, GANTrainer, RecipeAttachments]:
    """The recipe's trainer around ``networks``: every loss, transform and extension
    ``config`` asks for, attached in the one order resumption expects. Returns the training
    config, the trainer and the hooked attachments, which the caller removes after training.

    One place builds it, so the fine-tune and anything that trains with the recipe (the
    learned-widths search) cannot drift apart."""
    recipe = train_config(task, config, seed, device, progress)
    trainer = build_finetune_trainer(networks, recipe)
    main = trainer.main_generator
    if config.norm_lr_scale != 1.0:
        give_norm_scales_their_lr(networks[main], trainer.optimizers["generator"],
                                  config.norm_lr_scale)
    shrink = None
    if config.norm_shrink > 0:  # before the EMA: the average sees the thresholded scales
        shrink = NormScaleShrink(networks[main], config.norm_shrink,
                                 trainer.optimizers["generator"])
    ema = attach_ema(trainer, config.ema_decay)
    features = attach_distillation(trainer, teacher[main], config,
                                   _example(input_shape, main, device), seed)
    slimmable = None
    if config.slimmable_widths:  # after the distillation: its forwards overwrite the features
        slimmable = SlimmableDistillation(networks[main], teacher[main], config.slimmable_widths,
                                          config.lambda_distill,
                                          _example(input_shape, main, device))
        trainer.generator_regularizers.append(slimmable)
    input_mix = config.resolved_input_mix(task.family)
    if input_mix != "none":
        mix = InputMix(input_mix, config.input_mix_alpha, seed)
        trainer.batch_transforms.append(mix)
        trainer.extensions["input_mix"] = mix
    if config.resolved_targets(task.family) == "teacher":
        trainer.batch_transforms.append(TeacherTargets(teacher[main]))
    if config.lambda_density > 0:
        if objective is None or pool is None:
            raise ValueError("lambda_density > 0 needs the local-density objective and a pool")
        density = DensityTerm(networks[main], objective, pool, config.lambda_density,
                              config.density_centers, seed)
        trainer.generator_regularizers.append(density)
        trainer.extensions["density"] = density  # its draws resume exactly
    if config.lambda_norm_sparsity > 0:
        trainer.generator_regularizers.append(
            NormScaleSparsity(networks[main], config.lambda_norm_sparsity))
    matching = None
    if config.lambda_d_feature > 0:
        matching = DiscriminatorFeatureMatching(networks["discriminator"],
                                                config.lambda_d_feature)
        trainer.generator_regularizers.append(matching)
    return recipe, trainer, RecipeAttachments(features, ema, matching, shrink, slimmable)


def _train_stage(networks: dict[str, nn.Module], teacher: dict[str, nn.Module], config:
                 FinetuneConfig, out_dir: str | Path, *, task: TaskConfig, kept: dict[str, Any],
                 input_shape: dict[str, Any], seed: int, device: str, progress: bool,
                 objective: LocalDensityObjective | None, pool: TeacherPool | None,
                 until_step: int | None) -> None:
    """Train ``networks`` in place with ``config`` (one slicing), resuming from ``out_dir``."""
    recipe, trainer, attached = build_recipe_trainer(
        networks, teacher, config, task=task, input_shape=input_shape, seed=seed, device=device,
        progress=progress, objective=objective, pool=pool)
    try:
        train_teacher(recipe, out_dir, resume=True, until_step=until_step, trainer=trainer,
                      checkpoint_extra={"kept": kept, "input_shape": input_shape},
                      final_file=None)
    finally:
        attached.remove()
    ema = attached.ema
    if ema is not None and (until_step is None or until_step >= recipe.n_steps):
        ema.copy_to(networks[trainer.main_generator])


__all__ = ["Distillation", "FinetuneConfig", "NormScaleShrink",
           "NormScaleSparsity", "SlimmableDistillation", "attach_distillation", "attach_ema",
           "RecipeAttachments", "build_finetune_trainer", "build_recipe_trainer",
           "finetune_pair", "train_config"]
