"""The two-player pruning game behind every environment view (METHOD 7-8).

A round: genG submits keep ratios for G's channel groups, genD for D's; the game masks both
networks, optionally runs ``inner_steps`` adversarial updates of the masked weights, then
evaluates the local-density objective on a fixed set of neighbourhoods and pays

    r_G = -L_G / L_G_ref - compute_term(G)
    r_D = -|L_D - L_D_ref| / L_D_ref - compute_term(D)

with ``compute_term = lambda_F * max(0, log(r / p))`` for kept-MACs ratio r and budget p.
References are the losses of the unpruned pair, measured once per game (``reference_source``
says when L_G_ref had to come from the uniform pair instead, see ``_measure_references``).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn

from gan_prune_env.devices import has_native_bfloat16
from gan_prune_env.envs.config import EnvConfig
from gan_prune_env.envs.preparation import PreparedTask, prepare_task, scoring_copy
from gan_prune_env.objective import TeacherPool
from gan_prune_env.pruning import ArchitectureSlicer, ChannelMasker, SlicingUnsupported
from gan_prune_env.tasks import TaskConfig

AGENTS = ("generator", "discriminator")
# A reference loss at or below this cannot scale a reward
REFERENCE_FLOOR = 1e-8
# D architectures whose verdicts on the real pairs are kept (frozen weights): the single view's
# fixed peer submits one D architecture every round, a learning peer a few near each other
REAL_VERDICTS_KEPT = 64


@contextmanager
def recalibrating(network: nn.Module):
    """Forward passes inside re-estimate every BatchNorm's running statistics from scratch
    (cumulative average over the passes), then the network is back in eval mode."""
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    # Only the norms train: dropout stays off, as at evaluation (and a dropout pass would draw
    # from the global torch RNG, making same-seed episodes differ, e.g. on facades)
    to_eval_mode(network)
    for m in norms:
        m.train()
    try:
        yield network
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.eval()  # the rest of the network already is


def to_eval_mode(network: nn.Module) -> nn.Module:
    """``network.eval()``, skipped when every module already is in eval mode: the env calls it
    several times a step, and ``Module.train`` sets the flag of every submodule through the
    slow ``Module.__setattr__`` (about 4% of a step) even when nothing changes."""
    if any(m.training for m in network.modules()):
        network.eval()
    return network


@dataclass
class RoundResult:
    """Outcome of one round: losses, compute and rewards of both agents."""

    counts: dict[str, np.ndarray]
    ratios: dict[str, np.ndarray]
    compute_ratio: dict[str, float]
    terms: dict[str, float]
    rewards: dict[str, float]
    reward_terms: dict[str, dict[str, float]] = field(default_factory=dict)


class PruningGame:
    """Masked copies of the teacher G (or of its supernet) and D, their pruning spaces, and the
    round logic."""

    def __init__(self, config: EnvConfig) -> None:
        self.config = config
        self.prepared: PreparedTask = prepare_task(config)
        self.device = torch.device(config.device)
        self.objective = self.prepared.objective
        self._check_precision()
        # the supernet's weights, when given, are where every architecture starts (and what a
        # reset restores); the teacher itself stays the reference of the objective
        start = self.prepared.supernet
        self.generator = scoring_copy(self.prepared.generator if start is None else start)
        self.discriminator = scoring_copy(self.prepared.discriminator)
        self.eval_batch = self.prepared.eval_pool.batch(torch.arange(len(self.prepared.eval_pool)))
        self.spaces = self.prepared.spaces
        self.maskers = {"generator": ChannelMasker(self.generator, self.spaces["generator"]),
                        "discriminator": ChannelMasker(self.discriminator,
                                                       self.spaces["discriminator"])}
        self.slicers = self._make_slicers() if config.evaluation == "sliced" else None
        self._cache: OrderedDict[bytes, dict[str, float]] = OrderedDict()
        self._real_verdicts: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.clear_cache()
        self.current_counts = {a: self.spaces[a].num_channels.copy() for a in AGENTS}
        self._pretrained = {name: copy.deepcopy(self.network(name).state_dict()) for name in AGENTS}
        self._dirty = False
        self._calibration_inputs = self.prepared.train_pool.inputs[: config.calibration_size]
        self.min_compute = {a: self.spaces[a].macs_ratio(self.ratio_counts(a, self.min_ratios(a)))
                            for a in AGENTS}
        self._check_budgets()
        self.reference_terms, self.reference_source = self._measure_references()
        self.generator_rng = torch.Generator().manual_seed(config.seed)

    # -- construction ----------------------------------------------------------------------------
    def _make_slicers(self) -> dict[str, ArchitectureSlicer] | None:
        """Slicers of both networks, each checked against its masks; None (masks, with a
        warning) for a model the slicer cannot cut exactly."""
        try:
            slicers = {a: ArchitectureSlicer(self.network(a), self.spaces[a]) for a in AGENTS}
            for agent, slicer in slicers.items():
                example = torch.zeros((2, *self.spaces[agent].input_shape), device=self.device)
                example.normal_(generator=torch.Generator(self.device).manual_seed(0))
                slicer.check(self.maskers[agent], example)
        except SlicingUnsupported as err:
            warnings.warn(f"evaluation='sliced' is not possible for this model ({err}); "
                          "evaluating with masks at the full network's cost instead",
                          stacklevel=3)
            return None
        return slicers

    def _check_precision(self) -> None:
        if self.config.precision == "bfloat16" and not has_native_bfloat16(self.device):
            warnings.warn("precision='bfloat16': this CPU has no native bfloat16 arithmetic (AMX "
                          "or AVX512-BF16), so scoring will be slower than in float32; use "
                          "precision='float32'", stacklevel=3)

    def _scoring_precision(self):
        """The context of every scoring pass: ``torch.autocast`` to bfloat16 when
        ``precision`` asks for it (weights, norm statistics and rewards stay float32)."""
        if self.config.precision == "float32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, self.config.precision))

    def _check_budgets(self) -> None:
        for agent, budget in (("generator", self.config.budget_g),
                              ("discriminator", self.config.budget_d)):
            if budget < self.min_compute[agent]:
                key = "budget_g" if agent == "generator" else "budget_d"
                raise ValueError(
                    f"{key}={budget} is impossible: the smallest reachable kept-MACs ratio of the "
                    f"{agent} is {self.min_compute[agent]:.4f} (every group at "
                    f"min_keep={self.config.min_keep}); raise the budget or lower min_keep")

    def _measure_references(self) -> tuple[dict[str, float], str]:
        """The losses that scale both rewards, and where L_G_ref came from.

        METHOD 8 scales by the unpruned pair ("teacher"). An objective that only anchors G to
        the teacher (``lambda_adv = lambda_kde = 0``: L1 distillation) makes the teacher's L_G
        exactly 0, so ``-L_G / L_G_ref`` is undefined. Then, and only then, L_G_ref is L_G of the
        uniform pair that meets both budgets ("uniform") [ours]: the loss term is -1 at the
        uniform architecture, about where it sits under the full objective, so the loss and the
        compute terms keep their relative weight.
        """
        full = {a: self.spaces[a].num_channels for a in AGENTS}
        reference = self.evaluate(full["generator"], full["discriminator"])
        if reference["d_loss"] <= REFERENCE_FLOOR:
            raise ValueError(f"the unpruned pair's L_D is {reference['d_loss']:.3g}: the "
                             "discriminator reward -|L_D - L_D_ref| / L_D_ref has no scale")
        if reference["g_loss"] > REFERENCE_FLOOR:
            return reference, "teacher"
        uniform = {a: self.ratio_counts(a, np.full(self.num_groups(a),
                                                   self.uniform_ratio_for_budget(a)))
                   for a in AGENTS}
        g_loss = self.evaluate(uniform["generator"], uniform["discriminator"])["g_loss"]
        self.restore_pretrained()
        if g_loss <= REFERENCE_FLOOR:
            raise ValueError(
                f"L_G is 0 for the unpruned pair and {g_loss:.3g} for the uniform pair within "
                f"budget_g={self.config.budget_g}: the generator reward -L_G / L_G_ref has no "
                "scale; give the objective a term that pruning changes")
        return {**reference, "g_loss": float(g_loss)}, "uniform"

    # -- public API: what agents, the CLI and the benchmarks use ----------------------------------
    @property
    def task(self) -> TaskConfig:
        """The task being compressed: its data, networks, family and teacher file."""
        return self.prepared.task

    @property
    def train_pool(self) -> TeacherPool:
        """Training images with the teacher's outputs: the objective's neighbourhoods, the
        calibration images of adaptive BN, the batches of a relaxed search or a fine-tune."""
        return self.prepared.train_pool

    @property
    def supernet(self) -> nn.Module | None:
        """The weight-sharing supernet every architecture starts from, or None (the teacher)."""
        return self.prepared.supernet

    @property
    def calibration_inputs(self) -> torch.Tensor:
        """The fixed images adaptive BN re-estimates a pruned G's statistics on."""
        return self._calibration_inputs

    @contextmanager
    def soft_gates(self, fractions: dict[str, torch.Tensor], temperature: float):
        """Both networks gated softly by kept fractions per group (differentiable; a network
        absent from ``fractions`` stays whole) for the block, then unmasked: a relaxed search
        differentiates the objective through this."""
        for agent in AGENTS:
            space = self.spaces[agent]
            fraction = fractions.get(agent, torch.ones(space.num_groups))
            self.maskers[agent].set_gates(space.soft_gates(fraction, temperature))
        try:
            yield
        finally:
            for masker in self.maskers.values():
                masker.reset()

    @torch.no_grad()
    def generator_outputs(self, counts_g: np.ndarray, count: int | None = None) -> torch.Tensor:
        """The first ``count`` evaluation outputs of G at ``counts_g`` as they are scored
        (recalibrated norms included): snapshots of an architecture."""
        to_eval_mode(self.generator)
        counts_g = self.spaces["generator"].check_counts(counts_g)
        with self._scoring_precision():
            generator = self._runnable("generator", counts_g)
            with self._unmasked_if_sliced():
                return generator(self.eval_batch.inputs[:count]).float()

    def network(self, agent: str) -> nn.Module:
        return self.generator if agent == "generator" else self.discriminator

    def budget(self, agent: str) -> float:
        return self.config.budget_g if agent == "generator" else self.config.budget_d

    def num_groups(self, agent: str) -> int:
        return self.spaces[agent].num_groups

    def min_ratios(self, agent: str) -> np.ndarray:
        return np.full(self.num_groups(agent), self.config.min_keep)

    def ratio_counts(self, agent: str, ratios: np.ndarray) -> np.ndarray:
        return self.spaces[agent].counts_for_ratios(ratios)

    def uniform_ratio_for_budget(self, agent: str, budget: float | None = None) -> float:
        """Largest uniform keep ratio whose kept-MACs ratio is within budget (bisection)."""
        budget = self.budget(agent) if budget is None else budget
        space, lo, hi = self.spaces[agent], self.config.min_keep, 1.0
        n = space.num_groups
        if space.macs_ratio(space.counts_for_ratios(np.full(n, hi))) <= budget:
            return hi
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if space.macs_ratio(space.counts_for_ratios(np.full(n, mid))) <= budget:
                lo = mid
            else:
                hi = mid
        return lo

    # -- episode ---------------------------------------------------------------------------------
    def restore_pretrained(self, seed: int | None = None) -> None:
        """Back to the starting weights (the teacher's, or the supernet's) and the full
        architecture (``reset``)."""
        if self._dirty:
            for agent in AGENTS:
                self.network(agent).load_state_dict(self._pretrained[agent])
            self._dirty = False
        for masker in self.maskers.values():
            masker.reset()
        self.current_counts = {a: self.spaces[a].num_channels.copy() for a in AGENTS}
        if seed is not None:
            self.generator_rng = torch.Generator().manual_seed(int(seed))

    def clear_cache(self) -> None:
        """Forget every evaluated pair, every kept verdict and the hit counts."""
        self._cache.clear()
        self._real_verdicts.clear()
        self._cache_hits = self._cache_lookups = 0
        self.last_cache_hit = False

    def play_round(self, ratios: dict[str, np.ndarray]) -> RoundResult:
        """Apply both architectures, adapt weights if configured, evaluate and pay."""
        counts = {a: self.ratio_counts(a, ratios[a]) for a in AGENTS}
        self.current_counts = counts
        if self.config.inner_steps:
            for agent in AGENTS:
                self.maskers[agent].set_counts(counts[agent])
            self._inner_updates()
        terms = self.score(counts["generator"], counts["discriminator"])
        compute = {a: self.spaces[a].macs_ratio(counts[a]) for a in AGENTS}
        reward_terms = self._reward_terms(terms, compute)
        rewards = {a: float(sum(reward_terms[a].values())) for a in AGENTS}
        kept = {a: counts[a] / self.spaces[a].num_channels for a in AGENTS}
        return RoundResult(counts, kept, compute, terms, rewards, reward_terms)

    def score(self, counts_g: np.ndarray, counts_d: np.ndarray) -> dict[str, float]:
        """:meth:`evaluate`, answered from the cache of evaluated pairs when it can be: with
        frozen weights a pair's terms do not depend on what came before, so an architecture
        pair seen again costs a lookup (``cache_size`` most recent pairs, none with inner
        updates). ``last_cache_hit`` and ``cache_hit_rate`` say how it went."""
        key = None
        if self.keeps_results:
            key = counts_g.tobytes() + counts_d.tobytes()
            cached = self._cache.get(key)
            self.last_cache_hit = cached is not None
            self._cache_lookups += 1
            if cached is not None:
                self._cache_hits += 1
                self._cache.move_to_end(key)
                return dict(cached)
        terms = self.evaluate(counts_g, counts_d)
        if key is not None and all(math.isfinite(v) for v in terms.values()):
            _remember(self._cache, key, dict(terms), self.config.cache_size)
        return terms

    @property
    def keeps_results(self) -> bool:
        """Whether evaluated pairs and D's real-pair verdicts are kept: with frozen weights
        (``inner_steps`` 0) they depend on the architectures alone; ``cache_size`` 0 keeps
        nothing."""
        return bool(self.config.cache_size) and not self.config.inner_steps

    @property
    def cache_hit_rate(self) -> float:
        """Share of this game's lookups the cache answered (0 before any)."""
        return self._cache_hits / self._cache_lookups if self._cache_lookups else 0.0

    @torch.no_grad()
    def evaluate(self, counts_g: np.ndarray, counts_d: np.ndarray) -> dict[str, float]:
        """L_G and L_D terms of the pair on the fixed evaluation neighbourhoods (no cache)."""
        to_eval_mode(self.generator)
        to_eval_mode(self.discriminator)
        batch = self.eval_batch
        with self._scoring_precision():
            generator = self._runnable("generator", counts_g)
            discriminator = self._runnable("discriminator", counts_d)
            with self._unmasked_if_sliced():
                real = self._judge_real(counts_d, discriminator)
                return self.objective.evaluate(discriminator, batch, generator(batch.inputs),
                                               real)

    def _judge_real(self, counts_d: np.ndarray, discriminator: Callable) -> torch.Tensor:
        """D's verdicts on the evaluation batch's real pairs (center, teacher neighbour). With
        frozen weights they depend on D's architecture alone, so they are kept for the
        ``REAL_VERDICTS_KEPT`` most recent ones (none when ``cache_size`` is 0): a round whose
        D was seen before judges only its fake pairs."""
        if not self.keeps_results:
            return self.objective.judge_real(discriminator, self.eval_batch)
        key = counts_d.tobytes()
        verdicts = self._real_verdicts.get(key)
        if verdicts is None:
            verdicts = self.objective.judge_real(discriminator, self.eval_batch)
            _remember(self._real_verdicts, key, verdicts, REAL_VERDICTS_KEPT)
        else:
            self._real_verdicts.move_to_end(key)
        return verdicts

    def _runnable(self, agent: str, counts: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
        """``agent``'s network at ``counts`` as a callable, its norms recalibrated for a pruned
        generator: the same modules on tensors sliced to the kept channels (``evaluation:
        sliced``, the pruned network's cost) or the masked network (``masked``). Call it inside
        :meth:`_unmasked_if_sliced`."""
        recalibrate = agent == "generator" and self.config.recalibrate_norms
        if self.slicers is None:
            self.maskers[agent].set_counts(counts)
            if recalibrate:
                self._recalibrate(counts)
            return self.network(agent)
        slicer = self.slicers[agent]
        if not np.any(counts < self.spaces[agent].num_channels):
            return self.network(agent)
        fresh = recalibrate and slicer.has_running_stats
        tensors = slicer.tensors(counts, fresh_statistics=fresh)
        if fresh:
            with self._unmasked_if_sliced(), slicer.recalibrating():
                slicer(tensors, self._calibration_inputs)
        return partial(slicer, tensors)

    @contextmanager
    def _unmasked_if_sliced(self) -> Iterator[None]:
        """Sliced tensors already are the architecture: the masks must pass everything."""
        with ExitStack() as stack:
            if self.slicers is not None:
                for masker in self.maskers.values():
                    stack.enter_context(masker.suspended())
            yield

    def _recalibrate(self, counts_g: np.ndarray) -> None:
        """Adaptive BN for a *pruned* generator: fresh BatchNorm statistics measured on a fixed
        calibration batch of the pool (the unpruned teacher is left exactly as it is). The
        discriminator is judged with its own statistics: it is a critic, not a deliverable."""
        if not np.any(counts_g < self.spaces["generator"].num_channels):
            if self._dirty and not self.config.inner_steps:
                # frozen weights: only an earlier round's recalibrated statistics differ from
                # the teacher; without this the unpruned G would be judged with stale ones
                self.generator.load_state_dict(self._pretrained["generator"])
                self._dirty = False
            return
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                   for m in self.generator.modules()):
            return  # e.g. InstanceNorm (CycleGAN): no statistics, the pass would be wasted
        self._dirty = True
        with recalibrating(self.generator):
            self.generator(self._calibration_inputs)

    def student_outputs(self, count: int | None = None) -> torch.Tensor:
        """Outputs of G at the current round's architecture (for rendering)."""
        return self.generator_outputs(self.current_counts["generator"], count)

    def _inner_updates(self) -> None:
        """``inner_steps`` alternating D then G Adam updates on training neighbourhoods."""
        self._dirty = True
        cfg = self.config
        pool = self.prepared.train_pool
        g_opt = torch.optim.Adam(self.generator.parameters(), lr=cfg.inner_lr, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.inner_lr,
                                 betas=(0.5, 0.999))
        self.generator.train().requires_grad_(True)
        self.discriminator.train().requires_grad_(True)
        try:
            for _ in range(cfg.inner_steps):
                centers = torch.randperm(len(pool), generator=self.generator_rng)[: cfg.inner_batch]
                batch = pool.batch(centers)
                student = self.generator(batch.inputs)
                d_loss, _ = self.objective.discriminator_loss(self.discriminator, batch, student)
                d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                d_opt.step()
                self.discriminator.requires_grad_(False)
                g_loss, _ = self.objective.generator_loss(self.discriminator, batch, student)
                g_opt.zero_grad(set_to_none=True)
                g_loss.backward()
                g_opt.step()
                self.discriminator.requires_grad_(True)
        finally:
            self.generator.eval().requires_grad_(False)
            self.discriminator.eval().requires_grad_(False)

    # -- rewards ---------------------------------------------------------------------------------
    def compute_term(self, ratio: float, budget: float) -> float:
        excess = math.log(ratio / budget)
        if self.config.compute_penalty == "one_sided":
            excess = max(0.0, excess)
        return self.config.compute_weight * abs(excess)

    def _reward_terms(self, terms: dict[str, float], compute: dict[str, float]
                      ) -> dict[str, dict[str, float]]:
        ref = self.reference_terms
        return {
            "generator": {
                "loss": -terms["g_loss"] / ref["g_loss"],
                "compute": -self.compute_term(compute["generator"], self.config.budget_g),
            },
            "discriminator": {
                "loss": -abs(terms["d_loss"] - ref["d_loss"]) / ref["d_loss"],
                "compute": -self.compute_term(compute["discriminator"], self.config.budget_d),
            },
        }


def _remember(cache: OrderedDict, key: bytes, value, size: int) -> None:
    """Put ``value`` in the least-recently-used ``cache`` of ``size`` entries."""
    cache[key] = value
    if len(cache) > size:
        cache.popitem(last=False)
