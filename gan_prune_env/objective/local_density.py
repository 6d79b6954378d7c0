"""The local-density objective (METHOD 6), a reusable torch module for search and fine-tuning.

For neighbourhoods (c, N(c)) of the teacher manifold, teacher outputs y and student outputs s:

* adversarial: a center-conditioned D sees real = (y_c, y_j) and fake = (y_c, s_j), each pair
  weighted by its kernel weight w_cj (paper point 4);
* KDE: KL(P_c || Q_c) between the softmax kernels over a center's neighbours computed on teacher
  and on student outputs: the student must keep who-is-close-to-whom (paper point 3);
* anchor: lambda_rec * L1(s, y), for stability.

``L_G = lambda_adv * adv_G + lambda_kde * KL + lambda_rec * L1`` and ``L_D = adv_D``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan_prune_env.losses import gan_loss, l1_loss
from gan_prune_env.objective.conditioning import pair_input
from gan_prune_env.objective.features import (
    FEATURE_MAPS, DiscriminatorFeatures, PixelFeatures, StandardisedFeatures,
)
from gan_prune_env.objective.neighbourhoods import Neighbourhoods, build_neighbourhoods

GAN_MODES = ("vanilla", "lsgan")


@dataclass
class ObjectiveConfig:
    """Every [ours] choice of METHOD 5-6 as an option."""

    k: int = 4
    feature_map: str = "discriminator"  # phi: "discriminator" | "pixels"
    pixel_size: int = 16  # side of the pooled image for feature_map="pixels"
    standardise_features: bool = True
    bandwidth: float | None = None  # None: median k-NN distance of the pool
    gan_mode: str | None = None  # None: vanilla for Pix2Pix, lsgan for CycleGAN
    kernel_weighted: bool = True  # weight adversarial pairs by w_cj (False: uniform)
    lambda_adv: float = 1.0
    lambda_kde: float = 10.0
    lambda_rec: float = 1.0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(f"feature_map {self.feature_map!r} is not one of {FEATURE_MAPS}")
        if self.gan_mode is not None and self.gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode {self.gan_mode!r} is not one of {GAN_MODES}")
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be positive, got {self.bandwidth}")
        for name in ("lambda_adv", "lambda_kde", "lambda_rec"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


@dataclass
class TeacherPool:
    """Teacher inputs, outputs and phi features of a set of samples, with their k-NN graph.

    Computed once per task; every tensor is indexed by pool position.
    """

    inputs: torch.Tensor
    outputs: torch.Tensor
    features: torch.Tensor
    neighbourhoods: Neighbourhoods

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def batch(self, centers: torch.Tensor) -> NeighbourhoodBatch:
        """Gather the neighbourhoods of ``centers`` over the union of images they touch."""
        centers = torch.as_tensor(centers, dtype=torch.long,
                                  device=self.neighbourhoods.neighbours.device)
        neighbours = self.neighbourhoods.neighbours[centers]
        images, inverse = torch.unique(torch.cat([centers, neighbours.flatten()]),
                                       return_inverse=True)
        m = centers.numel()
        return NeighbourhoodBatch(
            inputs=self.inputs[images], outputs=self.outputs[images],
            features=self.features[images], center_pos=inverse[:m],
            neighbour_pos=inverse[m:].view(m, -1),
            weights=self.neighbourhoods.weights[centers],
            bandwidth=self.neighbourhoods.bandwidth,
        )


@dataclass
class NeighbourhoodBatch:
    """m neighbourhoods over U distinct images; positions index the U-image tensors."""

    inputs: torch.Tensor
    outputs: torch.Tensor
    features: torch.Tensor
    center_pos: torch.Tensor
    neighbour_pos: torch.Tensor
    weights: torch.Tensor
    bandwidth: float

    @property
    def pair_centers(self) -> torch.Tensor:
        return self.center_pos.repeat_interleave(self.neighbour_pos.shape[1])

    @property
    def pair_neighbours(self) -> torch.Tensor:
        return self.neighbour_pos.flatten()


class LocalDensityObjective(nn.Module):
    """L_G and L_D of METHOD 6 for a (masked or sliced) student G and discriminator D.

    Args:
        config: the objective's options.
        feature_map: phi, called as ``phi(images, generator_inputs)``; frozen.
        center_first: how the conditioned D stacks (center, candidate); see ``conditioning``.
        gan_mode: ``vanilla`` (BCE, Pix2Pix) or ``lsgan`` (CycleGAN).
    """

    def __init__(self, config: ObjectiveConfig, feature_map: nn.Module, center_first: bool,
                 gan_mode: str) -> None:
        super().__init__()
        self.config = config
        self.feature_map = feature_map.requires_grad_(False)
        self.center_first = center_first
        self.gan_mode = gan_mode

    # -- pools -----------------------------------------------------------------------------------
    @torch.no_grad()
    def build_pool(self, inputs: torch.Tensor, outputs: torch.Tensor) -> TeacherPool:
        features = self.feature_map(outputs, inputs)
        return TeacherPool(inputs, outputs, features,
                           build_neighbourhoods(features, self.config.k, self.config.bandwidth))

    # -- losses ----------------------------------------------------------------------------------
    def _pair_weights(self, batch: NeighbourhoodBatch) -> torch.Tensor | None:
        return batch.weights.flatten() if self.config.kernel_weighted else None

    def _judge(self, discriminator: nn.Module, batch: NeighbourhoodBatch,
               candidates: torch.Tensor) -> torch.Tensor:
        """D's verdict on (center, candidate_j) for every pair."""
        centers = batch.outputs[batch.pair_centers]
        return discriminator(pair_input(centers, candidates[batch.pair_neighbours],
                                        self.center_first))

    def judge_real(self, discriminator: nn.Module, batch: NeighbourhoodBatch) -> torch.Tensor:
        """D's raw verdicts on the real pairs (center, teacher neighbour) of ``batch``. They
        depend on D and the batch only, not on G: with frozen weights a caller can keep them per
        D architecture and pass them to :meth:`evaluate`, which then judges only the fake pairs
        (half of D's work)."""
        return self._judge(discriminator, batch, batch.outputs)

    def discriminator_loss(self, discriminator: nn.Module, batch: NeighbourhoodBatch,
                           student_outputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``0.5 * (gan(D(c, y_j), real) + gan(D(c, s_j), fake))``, kernel-weighted."""
        weights = self._pair_weights(batch)
        real = self._judge(discriminator, batch, batch.outputs)
        fake = self._judge(discriminator, batch, student_outputs.detach())
        loss_real = gan_loss(real, True, self.gan_mode, weights)
        loss_fake = gan_loss(fake, False, self.gan_mode, weights)
        loss = 0.5 * (loss_real + loss_fake)
        # detach: float() of a tensor that requires grad warns (torch >= 2.x)
        return loss, {"d_loss": float(loss.detach()), "d_real": float(loss_real.detach()),
                      "d_fake": float(loss_fake.detach())}

    def generator_loss(self, discriminator: nn.Module, batch: NeighbourhoodBatch,
                       student_outputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``lambda_adv * adv + lambda_kde * KL(P||Q) + lambda_rec * L1``."""
        cfg = self.config
        adv = gan_loss(self._judge(discriminator, batch, student_outputs), True, self.gan_mode,
                       self._pair_weights(batch))
        kl = self.density_kl(batch, student_outputs)
        rec = F.l1_loss(student_outputs, batch.outputs)
        loss = cfg.lambda_adv * adv + cfg.lambda_kde * kl + cfg.lambda_rec * rec
        return loss, {"g_loss": float(loss.detach()), "g_adv": float(adv.detach()),
                      "g_kde": float(kl.detach()), "g_rec": float(rec.detach())}

    @torch.no_grad()
    def evaluate(self, discriminator: nn.Module, batch: NeighbourhoodBatch,
                 student_outputs: torch.Tensor, real_verdicts: torch.Tensor | None = None
                 ) -> dict[str, float]:
        """All terms of L_G and L_D without gradients, judging each pair once (hot loop).
        ``real_verdicts``: :meth:`judge_real` of this D and batch, when the caller kept them."""
        cfg = self.config
        weights = self._pair_weights(batch)
        real = self.judge_real(discriminator, batch) if real_verdicts is None else real_verdicts
        fake = self._judge(discriminator, batch, student_outputs)
        d_real = gan_loss(real, True, self.gan_mode, weights)
        d_fake = gan_loss(fake, False, self.gan_mode, weights)
        adv = gan_loss(fake, True, self.gan_mode, weights)
        kl = self.density_kl(batch, student_outputs)
        rec = F.l1_loss(student_outputs, batch.outputs)
        g_loss = cfg.lambda_adv * adv + cfg.lambda_kde * kl + cfg.lambda_rec * rec
        return {"g_loss": float(g_loss), "g_adv": float(adv), "g_kde": float(kl),
                "g_rec": float(rec), "d_loss": float(0.5 * (d_real + d_fake)),
                "d_real": float(d_real), "d_fake": float(d_fake)}

    def density_kl(self, batch: NeighbourhoodBatch, student_outputs: torch.Tensor) -> torch.Tensor:
        """Mean over centers of KL(P_c || Q_c), kernels over each center's neighbours."""
        student_features = self.feature_map(student_outputs, batch.inputs)
        log_p = self._log_kernel(batch.features, batch)
        log_q = self._log_kernel(student_features, batch)
        return (log_p.exp() * (log_p - log_q)).sum(1).mean()

    @staticmethod
    def _log_kernel(features: torch.Tensor, batch: NeighbourhoodBatch) -> torch.Tensor:
        centers = features[batch.center_pos].unsqueeze(1)
        neighbours = features[batch.neighbour_pos]
        sq_dist = (neighbours - centers).pow(2).sum(-1)
        return torch.log_softmax(-sq_dist / (2 * batch.bandwidth**2), dim=1)


def make_feature_map(config: ObjectiveConfig, teacher_discriminator: nn.Module,
                     conditional: bool, reference_outputs: torch.Tensor,
                     reference_inputs: torch.Tensor) -> nn.Module:
    """phi per config, standardised on the teacher outputs of the pool when configured."""
    if config.feature_map == "pixels":
        base: nn.Module = PixelFeatures(config.pixel_size)
    else:
        base = DiscriminatorFeatures(teacher_discriminator, conditional)
    if not config.standardise_features:
        return base
    with torch.no_grad():
        reference = base(reference_outputs, reference_inputs)
    return StandardisedFeatures(base, reference)


def build_objective(config: ObjectiveConfig, teacher_discriminator: nn.Module,
                    conditional: bool, inputs: torch.Tensor,
                    outputs: torch.Tensor) -> LocalDensityObjective:
    """The objective ``config`` describes, its feature map standardised on the teacher's
    ``outputs`` for ``inputs`` (a pool): the one construction shared by the env and the
    supernet. The GAN loss is the teacher's unless set: vanilla for Pix2Pix (``conditional``),
    least squares for CycleGAN."""
    feature_map = make_feature_map(config, teacher_discriminator, conditional, outputs, inputs)
    return LocalDensityObjective(copy.deepcopy(config), feature_map, center_first=conditional,
                                 gan_mode=config.gan_mode or ("vanilla" if conditional
                                                              else "lsgan"))


class DensityTerm:
    """The local-density objective's generator-side terms as a training loss: ``weight *
    (KL(P_c || Q_c) + lambda_rec * L1)`` on ``centers`` random neighbourhoods of ``pool`` per
    call, the student's outputs computed by ``student`` (whatever sub-network it is set to).

    Why no adversarial term: it needs a discriminator trained alongside, which the fine-tune
    and the supernet each have their own of; this is the part of MGGC that needs only the
    teacher's neighbourhoods. A fine-tuning generator regularizer (``term(batch, fake)``), and
    a supernet loss (:meth:`loss`)."""

    def __init__(self, student: nn.Module, objective: LocalDensityObjective, pool: TeacherPool,
                 weight: float, centers: int, seed: int) -> None:
        self.student, self.objective, self.pool = student, objective, pool
        self.weight, self.centers = weight, centers
        self.rng = torch.Generator().manual_seed(seed)

    def loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted term on newly drawn neighbourhoods, and its unweighted parts."""
        chosen = torch.randperm(len(self.pool), generator=self.rng)[: self.centers]
        neighbourhoods = self.pool.batch(chosen)
        outputs = self.student(neighbourhoods.inputs)
        kl = self.objective.density_kl(neighbourhoods, outputs)
        anchor = l1_loss(outputs, neighbourhoods.outputs)
        loss = kl + self.objective.config.lambda_rec * anchor
        return self.weight * loss, {"G_density_kl": kl.detach(), "G_density_l1": anchor.detach()}

    def __call__(self, batch: object, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return self.loss()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Which neighbourhoods come next: a trainer extension's state, so a resumed run draws
        what the uninterrupted one would have."""
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.rng.set_state(state["rng"])
