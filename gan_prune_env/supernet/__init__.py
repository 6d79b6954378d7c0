"""Weight-sharing supernets: one set of generator weights under which every sub-network of the
environment's channel space is already good.

Why. The env pays an architecture by how its masked sub-network of the *frozen teacher* scores:
what pruning leaves of the teacher, not what fine-tuning will make of it. Over 16 architectures
that reward ranks the final FID only moderately and the final PSNR to the teacher not at all
(``benchmarks/reward_fidelity.py``). GAN Compression (Li et al., 2020) first trains a
"once-for-all" network, so that any sub-network's weights are good without fine-tuning, and
scores sub-networks with those weights. This module does that for the env's own channel space:

* the supernet starts as a copy of the teacher's main generator; its sub-networks are the env's:
  in every channel group, the ``n`` best channels of the *teacher's* importance ranking (the env
  builds its space on the teacher, so both agree; the file records the rankings and the env
  checks them);
* the sandwich rule (Yu & Huang, 2019; OFA; GAN Compression): every step trains the largest
  network, the smallest (every group at ``min_keep``) and ``random_subnets`` random ones on the
  same batch, their gradients summed into one Adam step;
* each one's loss is output distillation, ``L1(G_sub(x), T(x))`` to the frozen teacher, plus,
  with ``gan_weight > 0``, ``gan_weight`` times an adversarial term against a discriminator
  trained alongside (started from the teacher's, full width), which takes the teacher's outputs
  for real and every sub-network's for fake: the fine-tuning recipe's two main terms (teacher
  targets; ``gan_weight = 0.01`` is pix2pix's 1 : 100 of GAN to L1), as GAN Compression trains
  its once-for-all network with distillation and the GAN loss;
* with ``density_weight > 0`` each one's loss adds MGGC's local-density term
  (``gan_prune_env.objective.DensityTerm``: the KL between the teacher's and the sub-network's
  neighbourhood densities plus the objective's L1 anchor, on ``density_centers`` random
  neighbourhoods of the env's training pool per sub-network): the env's own objective, so the
  sub-networks learn what the env pays them for;
* BatchNorm running statistics follow the largest network only: the env re-estimates them for
  every pruned generator anyway ("adaptive BN"), and the full network stays the teacher's match.

Random sub-networks [ours]: a global keep ratio ``w`` log-uniform in ``[min_keep, 1]`` (or in
``random_widths``) and each group's ratio ``clip(w * exp(width_jitter * N(0, 1)), min_keep, 1)``:
every kept-MACs ratio from the smallest network to the full one is visited, in the non-uniform
shapes agents propose.

With ``critic``, the env's discriminator is trained as a supernet too
(``gan_prune_env.supernet.critic``): every D sub-network a critic of the G sub-networks' outputs
under the objective's own adversarial game, so that genD's pruned D judges G as a trained
discriminator would, not as the teacher's D with channels cut out. It does not change G's
training (the same G weights and norm statistics, bit for bit, as without it; only
BatchNorm's batch counters differ). The adversarial term's D (``gan_weight``)
is another, full-width network; a file holds one or the other.

Train one (resumable; progress bar; TensorBoard under ``<out>/tensorboard``)::

    python -m gan_prune_env.supernet --task default --out runs/supernets/default --resume

It writes ``<out>/supernet.pt``, a teacher-format checkpoint holding the main generator, with
the ``supernet`` metadata entry; ``gym.make(..., supernet="<out>/supernet.pt")`` scores
architectures with its weights.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gan_prune_env.checkpoint import (
    CheckpointError, load_discriminator, load_generator, read_checkpoint,
)
from gan_prune_env.config import check_same_settings, to_dict
from gan_prune_env.losses import GAN_MODES, gan_loss, l1_loss
from gan_prune_env.data import build_dataset, seeded_inputs
from gan_prune_env.objective import (
    DensityTerm, LocalDensityObjective, NeighbourhoodBatch, ObjectiveConfig, TeacherPool,
    build_objective,
)
from gan_prune_env.pruning import ChannelMasker, ChannelSpace, make_importance
from gan_prune_env.pruning.importance import IMPORTANCES
from gan_prune_env.supernet.critic import CriticSandwich
from gan_prune_env.tasks import TaskConfig, check_teacher_fits, load_teacher
from gan_prune_env.teacher.base import Batch, GANTrainer, adam, set_requires_grad
from gan_prune_env.teacher.config import TeacherTrainConfig
from gan_prune_env.teacher.loop import TRAINERS, train_teacher

SUPERNET_FILE = "supernet.pt"
TRAIN_COMMAND = "python -m gan_prune_env.supernet --task NAME --out DIR --resume"


@dataclass
class SupernetConfig:
    """How a supernet is trained (the defaults are the setting of the supernet measurements in
    ``docs/RESULTS.md``; they were not tuned)."""

    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-4
    lr_decay_steps: int = 1000
    """Linear decay to 0 over the last steps, as the fine-tuning recipe."""
    random_subnets: int = 2
    """Random sub-networks per step besides the largest and the smallest (the sandwich rule)."""
    min_keep: float = 0.05
    """Keep ratio of every group in the smallest sub-network: the env's ``min_keep``."""
    width_jitter: float = 0.3
    """Spread (log scale) of a random sub-network's per-group ratios around its global ratio."""
    random_widths: list[float] | None = None
    """``[low, high]``: the range of a random sub-network's global keep ratio (log-uniform;
    None: ``[min_keep, 1]``, every width). Narrowed around the width of a search's budget,
    the random sub-networks are those the search visits, trained several times as often (GAN
    Compression trains its once-for-all network over the range of MACs it then searches)."""
    importance: str = "l1"
    """Channel ranking; the env must use the same (its ``importance``)."""
    divisor: int = 1
    """Channel counts are multiples of it; the env must use the same (its ``divisor``)."""
    gan_weight: float = 0.0
    """Weight of the adversarial term beside the L1 (0: distillation alone, the setting of the
    first supernet measurements; 0.01: the fine-tuning recipe's ratio of GAN to L1)."""
    gan_mode: str = "vanilla"
    """The adversarial loss (``gan_prune_env.losses.gan_loss``), as the teacher's recipe."""
    density_weight: float = 0.0
    """Weight of the local-density term beside the L1 (0: none): the objective's defaults
    (``ObjectiveConfig``) on ``density_pool_size`` training images, or ``train_supernet``'s
    ``objective`` and ``pool`` (an env's)."""
    density_centers: int = 4
    """Neighbourhoods per sub-network and step of the local-density term."""
    density_pool_size: int = 64
    """Training images (drawn by ``seed``) whose teacher outputs form the density term's
    neighbourhoods when ``train_supernet`` is not given a pool (the env's ``pool_size``)."""
    critic: bool = False
    """Also train the env's discriminator as a supernet over its channel space
    (``gan_prune_env.supernet.critic``): every D sub-network a critic of the G sub-networks'
    outputs under the objective's own adversarial game, on ``density_centers`` neighbourhoods
    of the density term's pool. Pix2Pix tasks; not with ``gan_weight`` (both would be the
    file's discriminator). The env then judges with its weights."""
    seed: int = 0
    save_every: int = 250
    log_every: int = 20
    image_every: int = 250
    keep_train_states: int = 2

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "save_every", "log_every", "divisor",
                     "keep_train_states", "density_centers", "density_pool_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("random_subnets", "lr_decay_steps", "image_every", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.min_keep <= 1:
            raise ValueError(f"min_keep must be in (0, 1], got {self.min_keep}")
        for name in ("width_jitter", "gan_weight", "density_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if self.gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {self.gan_mode!r}")
        if self.random_widths is not None:
            if (len(self.random_widths) != 2
                    or not self.min_keep <= self.random_widths[0] < self.random_widths[1] <= 1):
                raise ValueError(f"random_widths must be [low, high] with min_keep <= low < "
                                 f"high <= 1, got {self.random_widths}")
        if self.critic and self.gan_weight > 0:
            raise ValueError("critic and gan_weight > 0 each train the file's discriminator; "
                             "set one of them (gan_weight: 0 for a critic supernet)")
        if self.importance not in IMPORTANCES:
            raise ValueError(f"importance {self.importance!r} not in {sorted(IMPORTANCES)}")


def weights_digest(network: nn.Module) -> str:
    """SHA-1 of a network's state (names, shapes and float32 values): which teacher a supernet
    was trained from, independent of the file it was read from."""
    digest = hashlib.sha1()
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def space_rankings(space: ChannelSpace) -> dict[str, list[int]]:
    """Each group's channel ranking (best first), by root layer name."""
    return {group.name: group.ranking.tolist() for group in space.groups}


class SandwichSampler:
    """The sub-networks of each step: largest, smallest, then ``random_subnets`` random ones.

    A trainer extension: its settings (with the supernet's loss, which a resume must not change
    either) and random state are saved in train states, so a resumed run draws what the
    uninterrupted one would have, and a resume with other settings is refused.
    """

    def __init__(self, space: ChannelSpace, config: SupernetConfig, teacher: str) -> None:
        self.space = space
        self.settings = {"random_subnets": config.random_subnets, "min_keep": config.min_keep,
                         "width_jitter": config.width_jitter, "importance": config.importance,
                         "divisor": config.divisor, "teacher": teacher,
                         "gan_weight": config.gan_weight, "gan_mode": config.gan_mode}
        # settings added later, only when used: the train states of older runs still resume
        if config.density_weight > 0:
            self.settings.update(density_weight=config.density_weight,
                                 density_centers=config.density_centers,
                                 density_pool_size=config.density_pool_size)
        if config.random_widths is not None:
            self.settings["random_widths"] = list(config.random_widths)
        if config.critic:
            self.settings["critic"] = True
        self.rng = np.random.default_rng(config.seed)

    def largest(self) -> np.ndarray:
        return self.space.num_channels.copy()

    def smallest(self) -> np.ndarray:
        return self.space.counts_for_ratios(np.full(self.space.num_groups,
                                                    self.settings["min_keep"]))

    def random(self) -> np.ndarray:
        low = self.settings["min_keep"]
        narrowest, widest = self.settings.get("random_widths", (low, 1.0))
        width = math.exp(self.rng.uniform(math.log(narrowest), math.log(widest)))
        jitter = np.exp(self.settings["width_jitter"] * self.rng.standard_normal(
            self.space.num_groups))
        return self.space.counts_for_ratios(np.clip(width * jitter, low, 1.0))

    def step_architectures(self) -> list[tuple[str, np.ndarray]]:
        """``(name, channel counts)`` of this step's sub-networks, the largest first."""
        return ([("largest", self.largest()), ("smallest", self.smallest())]
                + [("random", self.random()) for _ in range(self.settings["random_subnets"])])

    def state_dict(self) -> dict[str, Any]:
        return {**self.settings, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_same_settings(state, self.settings, "the supernet")
        self.rng.bit_generator.state = state["rng"]


@contextmanager
def frozen_norm_statistics(network: nn.Module) -> Iterator[None]:
    """Forward passes inside normalise with batch statistics (training mode) but leave every
    BatchNorm's running statistics as they are (momentum 0)."""
    norms = [m for m in network.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


class SupernetTrainer(GANTrainer):
    """Sandwich-rule distillation of one generator supernet towards the frozen teacher.

    Loss names: ``L1_largest``, ``L1_smallest``, ``L1_random`` (mean over the random ones), each
    the unweighted L1 to the teacher's output; the step minimises their mean over sub-networks.
    With a ``discriminator`` (and ``gan_weight > 0``) each sub-network's loss adds ``gan_weight``
    times its adversarial term (``G_GAN_<name>``), and after the generator's update the
    discriminator is updated once on the teacher's outputs (real) against every sub-network's
    (fake, ``D_real`` and ``D_fake``): the generator moves first so each sub-network's graph is
    freed before the masks change for the next. With a ``density`` term each sub-network's
    loss adds it (``G_density_<name>``, weighted), on its own neighbourhoods. With a ``critic``
    each sub-network's outputs on neighbourhoods drawn for it are judged, after the
    generator's update, by the critic's sub-network of the same place (``D_density_<name>``,
    the objective's discriminator loss): the critic learns, the generator's loss is untouched.
    """

    def __init__(self, family: str, supernet: nn.Module, teacher: nn.Module,
                 space: ChannelSpace, sampler: SandwichSampler, lr: float,
                 betas: tuple[float, float] = (0.5, 0.999), *,
                 discriminator: nn.Module | None = None, gan_weight: float = 0.0,
                 gan_mode: str = "vanilla", density: DensityTerm | None = None,
                 critic: CriticSandwich | None = None) -> None:
        if (discriminator is None) != (gan_weight == 0):
            raise ValueError("an adversarial term needs both a discriminator and gan_weight > 0")
        if discriminator is not None and critic is not None:
            raise ValueError("an adversarial term's discriminator and a critic supernet cannot "
                             "both be the file's discriminator")
        self.family = family
        self.main_generator = TRAINERS[family].main_generator
        networks = {self.main_generator: supernet}
        optimizers = {"generator": adam([supernet], lr, betas)}
        if discriminator is not None:
            networks["discriminator"] = discriminator
            optimizers["discriminator"] = adam([discriminator], lr, betas)
        if critic is not None:
            networks["discriminator"] = critic.critic
            optimizers["discriminator"] = adam([critic.critic], lr, betas)
        super().__init__(networks, optimizers)
        self.teacher = teacher.eval().requires_grad_(False)
        self.masker = ChannelMasker(supernet, space)
        self.extensions["sandwich"] = sampler
        self.adversary = discriminator  # the adversarial term's D (the critic is not one)
        self.gan_weight, self.gan_mode = gan_weight, gan_mode
        if density is not None and density.student is not supernet:
            raise ValueError("the density term must run the supernet itself")
        self.density = density
        if density is not None:
            self.extensions["density"] = density
        self.critic = critic
        if critic is not None:
            self.extensions["critic"] = critic

    def _judged(self, inputs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """What the discriminator sees: Pix2Pix's is conditioned on the input, CycleGAN's not."""
        return torch.cat([inputs, images], 1) if self.family == "pix2pix" else images

    def train_step(self, batch: Batch) -> dict[str, float]:
        inputs = batch["A"]
        supernet = self.networks[self.main_generator]
        discriminator = self.adversary
        with torch.no_grad():
            target = self.teacher(inputs)
        optimizer = self.optimizers["generator"]
        optimizer.zero_grad(set_to_none=True)
        architectures = self.extensions["sandwich"].step_architectures()
        losses: dict[str, list[float]] = {}
        fakes = []
        judged = []  # the critic's neighbourhoods and each sub-network's outputs on them
        if discriminator is not None:
            set_requires_grad([discriminator], False)
        try:
            for name, counts in architectures:
                self.masker.set_counts(counts)
                if self.critic is not None:
                    judged.append(self._outputs_to_judge(supernet))
                statistics = nullcontext() if name == "largest" else frozen_norm_statistics(
                    supernet)
                with statistics:
                    fake = supernet(inputs)
                    density = self.density.loss()[0] if self.density is not None else None
                loss = l1_loss(fake, target)
                losses.setdefault(f"L1_{name}", []).append(loss.item())
                if density is not None:
                    losses.setdefault(f"G_density_{name}", []).append(density.item())
                    loss = loss + density
                if discriminator is not None:
                    adversarial = gan_loss(discriminator(self._judged(inputs, fake)), True,
                                           self.gan_mode)
                    losses.setdefault(f"G_GAN_{name}", []).append(adversarial.item())
                    loss = loss + self.gan_weight * adversarial
                    fakes.append(fake.detach())
                (loss / len(architectures)).backward()
        finally:
            self.masker.reset()
        optimizer.step()
        if discriminator is not None:
            losses.update(self._discriminator_step(inputs, target, fakes))
        if self.critic is not None:
            losses.update(self._critic_step(judged))
        return {name: float(np.mean(values)) for name, values in losses.items()}

    @torch.no_grad()
    def _outputs_to_judge(self, supernet: nn.Module) -> tuple[NeighbourhoodBatch, torch.Tensor]:
        """Fresh neighbourhoods for the critic and the current sub-network's outputs on them
        (no gradient; running statistics left alone, the largest network's included)."""
        batch = self.critic.draw()
        with frozen_norm_statistics(supernet):
            return batch, supernet(batch.inputs)

    def _critic_step(self, judged: list[tuple[NeighbourhoodBatch, torch.Tensor]]
                     ) -> dict[str, list[float]]:
        """One update of the critic supernet on the step's generator outputs."""
        optimizer = self.optimizers["discriminator"]
        optimizer.zero_grad(set_to_none=True)
        loss, losses = self.critic.loss(judged)
        loss.backward()
        optimizer.step()
        return losses

    def _discriminator_step(self, inputs: torch.Tensor, target: torch.Tensor,
                            fakes: list[torch.Tensor]) -> dict[str, list[float]]:
        """One update of the discriminator: the teacher's outputs against every sub-network's,
        each sub-network's outputs a batch of their own, as the generator's update showed them
        (a BatchNorm D judging one mixed batch would learn other batch statistics than those
        the generator is judged under)."""
        discriminator = self.adversary
        set_requires_grad([discriminator], True)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        d_fake = torch.stack([gan_loss(discriminator(self._judged(inputs, fake)), False,
                                       self.gan_mode) for fake in fakes]).mean()
        d_real = gan_loss(discriminator(self._judged(inputs, target)), True, self.gan_mode)
        (0.5 * (d_real + d_fake)).backward()
        self.optimizers["discriminator"].step()
        return {"D_real": [d_real.item()], "D_fake": [d_fake.item()]}


def _space(network: nn.Module, input_nc: int, task: TaskConfig, importance: str, divisor: int,
           device: str) -> ChannelSpace:
    """The env's channel space of ``network`` (G, or the critic), built as the env builds it."""
    example = torch.zeros(1, input_nc, task.image_size, task.image_size, device=device)
    return ChannelSpace(network, example, importance=make_importance(importance),
                        divisor=divisor)


def train_supernet(task: TaskConfig, config: SupernetConfig, out_dir: str | Path, *,
                   resume: bool = True, until_step: int | None = None, device: str = "cpu",
                   progress: bool = True, objective: LocalDensityObjective | None = None,
                   pool: TeacherPool | None = None) -> Path:
    """Train ``task``'s generator supernet into ``out_dir`` (resuming from its newest train state
    when ``resume``); returns ``out_dir/supernet.pt`` once complete, else the last train state
    (``until_step``: stop early, for time-sliced jobs and tests). With
    ``config.density_weight > 0`` the density term uses ``objective`` and ``pool`` (an env's,
    ``PreparedTask``; both or neither), else :func:`density_objective`'s."""
    if (objective is None) != (pool is None):
        raise ValueError("give train_supernet both the objective and its pool, or neither")
    if config.critic and task.family != "pix2pix":
        raise ValueError(f"task {task.name!r}: a critic supernet is for Pix2Pix tasks (the env "
                         "widens a CycleGAN discriminator for its center); set critic: false")
    teacher, teacher_discriminator = load_teacher(task, device)
    supernet = copy.deepcopy(teacher)
    space = _space(teacher, task.generator.input_nc, task, config.importance, config.divisor,
                   device)
    digest = weights_digest(teacher)
    sampler = SandwichSampler(space, config, digest)
    recipe = TeacherTrainConfig(
        family=task.family, data=task.data, generator=task.generator,
        discriminator=task.discriminator, n_steps=config.steps, batch_size=config.batch_size,
        lr=config.lr, lr_decay_steps=min(config.lr_decay_steps, config.steps), seed=config.seed,
        log_every=config.log_every, image_every=config.image_every,
        save_every=config.save_every, keep_train_states=config.keep_train_states,
        device=device, progress=progress)
    adversarial = ({"discriminator": copy.deepcopy(teacher_discriminator).train(),
                    "gan_weight": config.gan_weight, "gan_mode": config.gan_mode}
                   if config.gan_weight > 0 else {})
    if (config.density_weight > 0 or config.critic) and objective is None:
        objective, pool = density_objective(task, teacher, teacher_discriminator,
                                            config.density_pool_size, config.seed, device)
    density = None
    if config.density_weight > 0:
        density = DensityTerm(supernet, objective, pool, config.density_weight,
                              config.density_centers, config.seed)
    critic = (_critic(task, config, teacher_discriminator, objective, pool, digest, device)
              if config.critic else None)
    trainer = SupernetTrainer(task.family, supernet, teacher, space, sampler, config.lr,
                              density=density, critic=critic, **adversarial)
    metadata = {"supernet": {"config": to_dict(config), "teacher": digest,
                             "rankings": space_rankings(space)}}
    if critic is not None:
        metadata["supernet"]["critic_rankings"] = space_rankings(critic.masker.space)
    try:
        return train_teacher(recipe, out_dir, resume=resume, until_step=until_step,
                             trainer=trainer, final_file=SUPERNET_FILE, final_metadata=metadata)
    finally:
        trainer.masker.remove()
        if critic is not None:
            critic.remove()


def _critic(task: TaskConfig, config: SupernetConfig, teacher_discriminator: nn.Module,
            objective: LocalDensityObjective, pool: TeacherPool, digest: str,
            device: str) -> CriticSandwich:
    """The critic supernet's side of training: the teacher's D (Pix2Pix's, already
    center-conditioned as the env's), its channel space as the env builds it, and its own
    draws of sub-networks (over every width) and neighbourhoods."""
    critic = copy.deepcopy(teacher_discriminator).eval()
    space = _space(critic, task.discriminator.input_nc, task, config.importance,
                   config.divisor, device)
    sampler = SandwichSampler(space, dataclasses.replace(config, random_widths=None,
                                                         seed=config.seed + 1), digest)
    return CriticSandwich(critic, space, sampler, objective, pool, config.density_centers,
                          config.seed + 1)


def density_objective(task: TaskConfig, teacher: nn.Module, discriminator: nn.Module,
                      pool_size: int, seed: int, device: str
                      ) -> tuple[LocalDensityObjective, TeacherPool]:
    """The local-density objective (``ObjectiveConfig`` defaults, the teacher's D as feature
    map) and its pool of the teacher's outputs on ``pool_size`` training images drawn by
    ``seed``: the env's objective at its defaults, built without an env."""
    dataset = build_dataset(task.data, "train")
    if len(dataset) < pool_size:
        raise ValueError(f"task {task.name!r}: the training split has {len(dataset)} images, "
                         f"fewer than density_pool_size={pool_size}; lower it")
    inputs = seeded_inputs(dataset, pool_size, seed).to(device)
    frozen_d = copy.deepcopy(discriminator).eval().requires_grad_(False)
    with torch.no_grad():
        outputs = teacher.eval()(inputs)
    objective = build_objective(ObjectiveConfig(), frozen_d, task.family == "pix2pix", inputs,
                                outputs).to(device)
    return objective, objective.build_pool(inputs, outputs)


def load_supernet(path: str | Path, task: TaskConfig, teacher: nn.Module,
                  spaces: dict[str, ChannelSpace], importance: str, divisor: int,
                  device: str = "cpu") -> tuple[nn.Module, nn.Module | None]:
    """The supernet generator of ``path`` and its critic supernet (None when it was trained
    without one), after checking they belong to this teacher and the env's channel spaces
    (``spaces["generator"]``, ``spaces["discriminator"]``).

    Raises CheckpointError when the file is not a supernet of ``task``, was trained from another
    teacher, or under another channel ranking (another ``importance`` or ``divisor``): its
    sub-networks would then not be the ones the env's channel counts name.
    """
    payload = read_checkpoint(path)
    info = payload.get("metadata", {}).get("supernet")
    if info is None:
        raise CheckpointError(f"{path}: not a supernet checkpoint (no 'supernet' metadata); "
                              f"train one with {TRAIN_COMMAND}")
    check_teacher_fits(task, payload)
    if info["teacher"] != weights_digest(teacher):
        raise CheckpointError(f"{path}: the supernet was trained from another teacher than task "
                              f"{task.name!r}'s; train one from this teacher with "
                              f"{TRAIN_COMMAND}")
    trained = {"importance": info["config"]["importance"], "divisor": info["config"]["divisor"]}
    asked = {"importance": importance, "divisor": divisor}
    if trained != asked:
        raise CheckpointError(f"{path}: the supernet's channel space has {trained}, the env "
                              f"{asked}; give the env the supernet's settings")
    rankings = {"rankings": "generator", "critic_rankings": "discriminator"}
    for key, agent in rankings.items():
        if key in info and info[key] != space_rankings(spaces[agent]):
            raise CheckpointError(f"{path}: the supernet's {agent} channel rankings differ from "
                                  "the env's (another teacher or ranking code); retrain the "
                                  "supernet")
    critic = (load_discriminator(payload, device=device)
              if info["config"].get("critic", False) else None)
    return load_generator(payload, device=device), critic


__all__ = [
    "SUPERNET_FILE", "SandwichSampler", "SupernetConfig", "SupernetTrainer", "TRAIN_COMMAND",
    "density_objective", "frozen_norm_statistics", "load_supernet", "space_rankings", "train_supernet",
    "weights_digest",
]
