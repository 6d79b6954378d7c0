"""Configuration of one ``train_agents.py`` run, loaded strictly from YAML and flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents import AGENT_CLASSES
from agents.run.run_folder import CONFIG_FILE
from gan_prune_env import ENV_ENTRY_POINTS
from gan_prune_env.config import from_dict, load_yaml
from gan_prune_env.devices import check_device
from gan_prune_env.envs.registration import ENV_IDS
from gan_prune_env.finetune import FinetuneConfig
from gan_prune_env.pruning import IMPORTANCES

ALGOS = tuple(AGENT_CLASSES)  # the one registry of search algorithms
DEFAULT_ROUNDS: dict[str | None, int] = {"uniform": 1, None: 400}


@dataclass
class SearchConfig:
    """The architecture search: ``n_rounds`` env steps (rounds) of ``algo``."""

    algo: str = "mggc"
    n_rounds: int | None = None
    """Rounds of the search; ``None``: 400, or 1 for ``uniform``, whose architecture is fixed
    (repeats only differ when the env adapts weights between rounds, ``inner_steps`` > 0)."""
    seed: int = 0
    save_freq: int = 100  # rounds between agent/tracker checkpoints (resume granularity)
    eval_freq: int = 50  # rounds between TensorBoard snapshots of the best architecture
    algo_params: dict[str, Any] = field(default_factory=dict)  # fields of the algo's config

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo {self.algo!r} is not one of {ALGOS}")
        if self.n_rounds is None:
            self.n_rounds = DEFAULT_ROUNDS.get(self.algo, DEFAULT_ROUNDS[None])
        for name in ("n_rounds", "save_freq", "eval_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass
class EvalConfig:
    """Quality on the test split and CPU latency of teacher and pruned G.

    ``fid`` computes the real FID/KID (FID Inception; the weights must be installed, which is
    checked before the search starts); ``fid_bootstrap`` resamples give FID's spread.
    """

    max_images: int = 100
    latency_runs: int = 30
    latency_threads: int = 2
    fid: bool = True
    fid_bootstrap: int = 200

    def __post_init__(self) -> None:
        if self.max_images < 2 or self.latency_runs < 1 or self.latency_threads < 1:
            raise ValueError("evaluation: max_images must be >= 2, latency_runs and "
                             "latency_threads >= 1")
        if self.fid_bootstrap < 0:
            raise ValueError(f"evaluation.fid_bootstrap must be >= 0, got {self.fid_bootstrap}")


SCREEN_SCORES = ("distill", "distill_fid", "supernet_fid")


@dataclass
class ScreenConfig:
    """Screening (``agents.run.screen``): before the fine-tune, the uniform pair and the
    search's ``candidates - 1`` best distinct pairs within budget (by G reward) are each
    fine-tuned for ``distill_steps`` steps of the run's recipe and scored by their L1 to the
    teacher's outputs; the best score is the pair the run fine-tunes.

    Off by default (``candidates`` 0). Why it exists, measured at 10% of G's MACs on 16
    architectures (``benchmarks/reward_fidelity.py``): on the wide teacher a 50-step
    distillation ranks their final FID at Spearman +0.76 (300 steps: +0.81, at 8 times the
    cost) where the env's frozen reward is at chance (-0.04); both lengths put the two
    lowest-FID architectures first, and the best of 16 random pairs by the 300-step score beat
    uniform pruning on every seed (FID -3.2 +- 1.7, 3 seeds). On the default task it ranks at
    +0.02 (300 steps: +0.14), no better than chance, so there it costs time and picks no
    better. Each candidate costs ``distill_steps`` steps of the fine-tune: at 50, 16
    candidates cost about a quarter of the recipe's 3000 steps.
    """

    candidates: int = 0
    """Pairs screened, the uniform one included; 0 turns screening off (1 would screen only
    the uniform pair)."""
    score: str = "distill"
    """What re-scores a candidate (lowest wins): ``distill``, its L1 to the teacher after
    ``distill_steps`` steps of the recipe; ``distill_fid``, the real FID on ``fid_images``
    training images after those steps (on the default task at 10% it ranks the final FID at
    chance: +0.14 at 300 steps, +0.02 at 1000); ``supernet_fid``, GAN Compression's search metric,
    the real FID on ``fid_images`` training images of the candidate sliced from the env's
    supernet (``env_kwargs.supernet``), BatchNorm re-estimated, not fine-tuned."""
    distill_steps: int = 50
    fid_images: int = 100

    def __post_init__(self) -> None:
        if self.candidates < 0 or self.candidates == 1:
            raise ValueError(f"screen.candidates must be 0 (off) or >= 2, got {self.candidates}")
        if self.distill_steps < 1:
            raise ValueError(f"screen.distill_steps must be >= 1, got {self.distill_steps}")
        if self.score not in SCREEN_SCORES:
            raise ValueError(f"screen.score must be one of {SCREEN_SCORES}, got {self.score!r}")
        if self.fid_images < 2:
            raise ValueError(f"screen.fid_images must be >= 2, got {self.fid_images}")


SLICE_SOURCES = ("teacher", "supernet")
STUDENTS = ("pruned", "separable", "pruned_separable", "distilled_separable")


@dataclass
class RunConfig:
    """A whole run: search, slicing, fine-tuning, evaluation, export."""

    env: str = "Pix2PixPrune-v0"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    search: SearchConfig = field(default_factory=SearchConfig)
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    slice_from: str = "teacher"
    """Weights the found G is sliced from and fine-tuned: ``teacher``, or ``supernet`` (with
    ``env_kwargs.supernet``). Measured on the default task at 10% (3 seeds, the frontier's
    ``uniform`` against ``uniform_supernet``): from the supernet, FID +9.4 +- 5.4 after the
    recipe, worse on every seed; so the supernet scores architectures and the teacher's weights
    start the fine-tune."""
    student: str = "pruned"
    """The generator the run fine-tunes (``gan_prune_env.students``): ``pruned``, the found
    architecture sliced from the teacher; ``separable``, the widest depthwise-separable U-Net
    within ``env_kwargs.budget_g`` from a fresh init (GAN Compression's student; the search
    then only sets D); ``pruned_separable``, ``separable_student`` (a separable G already
    distilled from the teacher, e.g. the ``pruned.pt`` of a ``student: separable`` run at the
    teacher's width) narrowed to the widest that fits, keeping its best channels;
    ``distilled_separable``, both in one run, as measured best (GAN Compression's order,
    distil, then prune, with network slimming): a separable U-Net at the teacher's width is
    distilled first with the sparsity term on its norm scales (``agents.run.finetune_ranks``:
    ``START_RECIPE``, kept as ``distilled_start.pt``), then narrowed to the budget by those
    scales and fine-tuned with its weights as they are (``NARROWED_RECIPE``); two fine-tunes,
    so twice the time. U-Nets only. Why: at 10x-20x fewer MACs these students keep more of the
    teacher's pixels than pruning does, on every seed measured, and distil, then prune is the
    best method of the frontier, though on a CPU they run about 2x slower at equal MACs
    (``docs/RESULTS.md``, "The compression frontier", has the numbers)."""
    separable_student: str | None = None
    """The checkpoint ``student: pruned_separable`` narrows."""
    separable_width: float = 1.0
    """``student: separable``: the student's widest ``ngf`` as a multiple of the teacher's (the
    budget caps it too). 1 never makes it wider than the teacher; a wider student (1.5 at a
    25% budget) is a larger start to distil once and then narrow with ``pruned_separable``."""
    separable_importance: str = "l1"
    """``student: pruned_separable``: the ranking that picks the channels it keeps (a name of
    ``gan_prune_env.pruning.IMPORTANCES``): ``l1`` of the producing filters, or ``norm_scale``
    for a start distilled with ``finetune.lambda_norm_sparsity`` (network slimming)."""
    finetune_processes: int = 1
    """Processes the fine-tune runs on, data-parallel (``agents.run.finetune_ranks``: torchrun,
    ``gloo`` on CPU, ``nccl`` with one GPU each on CUDA); the global batch
    (``finetune.batch_size``) must divide by it. The search and the rest stay in one process."""
    onnx: bool = True
    torchscript: bool = True
    device: str = "cpu"
    progress: bool = True

    @property
    def env_options(self) -> dict[str, Any]:
        """The env's keyword arguments: ``env_kwargs`` on the run's device (unless they name one)."""
        return {"device": self.device, **self.env_kwargs}

    @property
    def env_supernet(self) -> str | None:
        """The supernet the env scores with: ``env_kwargs.supernet``, else the env id's own
        (``Pix2PixPruneDensity-v0``'s shipped one), else None."""
        return self.env_kwargs.get("supernet", ENV_IDS[self.env][1].get("supernet"))

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.env not in ENV_ENTRY_POINTS:
            raise ValueError(f"env {self.env!r} is not one of {sorted(ENV_ENTRY_POINTS)}")
        self.finetune.check_family(ENV_IDS[self.env][0])  # before any work
        if self.slice_from not in SLICE_SOURCES:
            raise ValueError(f"slice_from {self.slice_from!r} is not one of {SLICE_SOURCES}")
        if self.slice_from == "supernet" and not self.env_supernet:
            raise ValueError("slice_from: supernet needs env_kwargs.supernet (a file from "
                             "python -m gan_prune_env.supernet)")
        if self.student not in STUDENTS:
            raise ValueError(f"student {self.student!r} is not one of {STUDENTS}")
        if (self.student == "pruned_separable") != (self.separable_student is not None):
            raise ValueError("student: pruned_separable narrows separable_student (a checkpoint "
                             "of a separable G, e.g. the pruned.pt of a student: separable run); "
                             "set both or neither (student: distilled_separable distils its own "
                             "start)")
        if self.separable_width != 1.0 and (self.student != "separable"
                                             or not self.separable_width > 0):
            raise ValueError(f"separable_width {self.separable_width} sets the width of a "
                             "student: separable (a positive multiple of the teacher's ngf); "
                             f"this run's student is {self.student!r}")
        if self.separable_importance not in IMPORTANCES:
            raise ValueError(f"separable_importance {self.separable_importance!r} is not one of "
                             f"{sorted(IMPORTANCES)}")
        if self.separable_importance != "l1" and self.student != "pruned_separable":
            raise ValueError(f"separable_importance {self.separable_importance!r} ranks the "
                             "channels a student: pruned_separable keeps; this run's student is "
                             f"{self.student!r}")
        if self.separable_student is not None and not Path(self.separable_student).is_file():
            raise ValueError(f"separable_student {self.separable_student} is not a file; make "
                             "one with a student: separable run (its pruned.pt)")
        if self.student != "pruned" and (self.slice_from != "teacher"
                                         or self.finetune.prune_stages > 1):
            raise ValueError(f"student: {self.student} replaces the sliced G; it takes neither "
                             "slice_from: supernet nor finetune.prune_stages > 1")
        if (self.screen.candidates and self.screen.score == "supernet_fid"
                and not self.env_supernet):
            raise ValueError("screen.score: supernet_fid slices the candidates from the env's "
                             "supernet: set env_kwargs.supernet (train one with `python -m "
                             "gan_prune_env.supernet --task NAME --out DIR --resume`)")
        if self.screen.candidates and self.student != "pruned":
            raise ValueError(f"screen scores pairs sliced from the teacher; student: "
                             f"{self.student} replaces the sliced G (set screen.candidates: 0)")
        if self.finetune_processes < 1 or self.finetune.batch_size % self.finetune_processes:
            raise ValueError(f"finetune_processes must be >= 1 and divide finetune.batch_size "
                             f"({self.finetune.batch_size}), got {self.finetune_processes}")
        if self.slice_from == "supernet" and self.finetune.prune_stages > 1:
            raise ValueError("finetune.prune_stages > 1 narrows the teacher's weights in stages; "
                             "with slice_from: supernet set prune_stages: 1")


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The config a run folder recorded when it was created (``config.yaml``)."""
    path = Path(run_dir) / CONFIG_FILE
    return from_dict(RunConfig, load_yaml(path), where=str(path))
