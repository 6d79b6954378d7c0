"""Environment configuration: everything ``gymnasium.make(id, **kwargs)`` accepts."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from gan_prune_env.devices import check_device
from gan_prune_env.objective import ObjectiveConfig

COMPUTE_PENALTIES = ("one_sided", "two_sided")


ON_ERROR = ("end", "raise")
EVALUATIONS = ("sliced", "masked")
INFO_FORMATS = ("rich", "numeric")
PRECISIONS = ("float32", "bfloat16")


@dataclass
class EnvConfig:
    """Options of the pruning game (METHOD 7-8).

    Attributes:
        task: built-in task name (``default``, ``default_wide``, ``default_cyclegan``,
            ``facades``) or a task YAML file (e.g. the ``task.yaml`` of ``import_reference``).
        dataset: dataset root overriding the task's data (aligned for Pix2Pix, unaligned for
            CycleGAN).
        teacher: teacher checkpoint overriding the task's built-in teacher.
        supernet: weight-sharing supernet of the teacher's generator
            (``gan_prune_env.supernet``), a file or ``"shipped"`` (the task's shipped one: the
            default task's); the masked G then has the supernet's weights instead of
            the teacher's, while teacher outputs and neighbourhoods stay the teacher's; D too
            has the file's weights when it holds a critic supernet (trained with ``critic``),
            else the teacher's.
        resolution: image side in pixels (default: the task's).
        budget_g, budget_d: target kept-MACs ratios p of G and D, in (0, 1].
        compute_weight: lambda_F of the compute term ``lambda_F * max(0, log(r / p))``.
        compute_penalty: ``one_sided`` (only above budget is penalised) or ``two_sided``.
        rounds: K, rounds per episode.
        inner_steps: adversarial updates of the masked G and D per round (0: frozen weights).
        inner_batch: neighbourhoods (centers) per inner update.
        inner_lr: Adam learning rate of the inner updates (betas 0.5, 0.999).
        pool_size: training images whose teacher outputs form the neighbourhood pool.
        eval_size: test images of the fixed evaluation pool; each is a center.
        k: neighbours per center (overrides ``objective.k`` when set).
        recalibrate_norms: re-estimate BatchNorm statistics of a pruned generator on
            ``calibration_size`` pool samples before evaluating it ("adaptive BN", EagleEye
            2020): frozen-weight scores then track what a fine-tuned network achieves.
        calibration_size: pool samples used for that re-estimation.
        min_keep: smallest keep ratio an action can ask for; action -1 maps to it.
        divisor: channel counts are multiples of it.
        importance: channel ranking, ``l1`` | ``norm_scale`` | ``group_l1`` | ``random`` |
            ``position`` (``gan_prune_env.pruning.IMPORTANCES``).
        evaluation: how an architecture is run when it is scored: ``"masked"`` zeroes the
            removed channels of the full network (the full network's cost); ``"sliced"`` cuts
            every weight and norm tensor to the kept channels and calls the same modules on
            them (the pruned network's cost, checked against the masks when the env is made,
            with a fallback to them and a warning for a model it cannot cut exactly). The two
            score alike up to float rounding. Which is faster depends on the network and the
            CPU (``benchmarks/env_speed.py``): sliced is 1.3-1.6x faster on facades at 128 px
            and 0.6-0.7x as fast on the default task at 64 px, where oneDNN builds a kernel for
            every new channel count while the full network's widths are always the same; with
            ``precision="bfloat16"`` masked is the faster on both (facades 1.3x). Sliced
            scoring keeps more of its kernels when the process starts with
            ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=16384`` (default 1024): 1.48x on the default task.
        cache_size: architecture pairs whose scores the game keeps (most recent first) and
            answers again without evaluating, with frozen weights only (``inner_steps`` 0: a
            pair's score then depends on the pair alone); 0 turns the cache off. With frozen
            weights the game also keeps D's verdicts on the real pairs for the 64 most recent
            D architectures (unless ``cache_size`` is 0): they do not depend on G, so a round
            whose D was seen before judges only its fake pairs.
        precision: number format of the scoring passes. ``"float32"`` is the reference
            and what published rewards use. ``"bfloat16"`` runs every scoring pass (adaptive BN
            included) under ``torch.autocast``; the weights, the norm statistics and the
            rewards stay float32. It is worth it on CPUs with native bfloat16 arithmetic
            (Intel AMX or AVX512-BF16: ``benchmarks/env_speed.py`` measured 1.4x on the
            default task and 3x on facades) and slower elsewhere, where making the env warns.
            Loss terms move by at most 0.34% of their range over 64 random architectures and
            rank them as float32 ones do (``benchmarks/env_precision.py``). Inner updates and
            soft gates stay float32.
        seed: selects the pool and evaluation images (not the episode randomness).
        on_error: what a round whose evaluation fails does (non-finite losses or rewards, out
            of memory, any runtime error inside the game): ``"end"`` ends the episode for both
            agents, paying ``error_reward`` and naming the cause in ``info["error"]``, so a
            long training run goes on; ``"raise"`` raises ``EvaluationError``. Bad actions
            raise either way.
        error_reward: reward of both agents in a round that failed (``on_error="end"``); the
            default is below any reward a finite round pays at the default settings.
        info_format: ``"rich"`` infos (nested reward and loss terms, the error message, the
            clipped entries as a list) or ``"numeric"``: a flat dict of numbers and fixed-shape
            arrays with the same keys at ``reset`` and every ``step`` (what TorchRL's
            ``PettingZooWrapper`` and other tensor-based libraries need; the error message is
            then ``env.last_error``).
        objective: options of the local-density objective.
    """

    task: str = "default"
    dataset: str | None = None
    teacher: str | None = None
    supernet: str | None = None
    resolution: int | None = None
    budget_g: float = 0.25
    budget_d: float = 0.5
    compute_weight: float = 2.0
    compute_penalty: str = "one_sided"
    rounds: int = 4
    inner_steps: int = 0
    inner_batch: int = 4
    inner_lr: float = 2e-4
    pool_size: int = 64
    eval_size: int = 12
    k: int | None = None
    recalibrate_norms: bool = True
    calibration_size: int = 16
    min_keep: float = 0.05
    divisor: int = 1
    importance: str = "l1"
    evaluation: str = "masked"
    cache_size: int = 4096
    device: str = "cpu"
    precision: str = "float32"
    seed: int = 0
    on_error: str = "end"
    error_reward: float = -10.0
    info_format: str = "rich"
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{item.name} must be a finite number, got {value}")
        for name in ("budget_g", "budget_d"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1] (a kept-MACs ratio), got {value}")
        if self.compute_penalty not in COMPUTE_PENALTIES:
            raise ValueError(f"compute_penalty {self.compute_penalty!r} not in {COMPUTE_PENALTIES}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.inner_steps < 0 or self.inner_batch < 1:
            raise ValueError("inner_steps must be >= 0 and inner_batch >= 1")
        if self.inner_lr <= 0:
            raise ValueError(f"inner_lr must be > 0 (Adam's learning rate of the inner updates), "
                             f"got {self.inner_lr}")
        if not 0 < self.min_keep <= 1:
            raise ValueError(f"min_keep must be in (0, 1], got {self.min_keep}")
        if self.compute_weight < 0:
            raise ValueError(f"compute_weight must be >= 0, got {self.compute_weight}")
        if self.k is not None:
            self.objective.k = self.k
        if self.eval_size <= self.objective.k or self.pool_size <= self.objective.k:
            raise ValueError(f"eval_size ({self.eval_size}) and pool_size ({self.pool_size}) must "
                             f"exceed k ({self.objective.k})")
        if self.calibration_size < 1:
            raise ValueError(f"calibration_size must be >= 1, got {self.calibration_size}")
        if self.resolution is not None and self.resolution < 16:
            raise ValueError(f"resolution must be >= 16 pixels, got {self.resolution}")
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0 (0 turns the cache off), got "
                             f"{self.cache_size}")
        if self.info_format not in INFO_FORMATS:
            raise ValueError(f"info_format {self.info_format!r} is not one of {INFO_FORMATS}")
        if self.evaluation not in EVALUATIONS:
            raise ValueError(f"evaluation {self.evaluation!r} is not one of {EVALUATIONS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error {self.on_error!r} is not one of {ON_ERROR}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        check_device(self.device)
