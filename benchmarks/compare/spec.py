"""What the comparison compares: methods, tasks, the shared fine-tuning recipe, file names."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gan_prune_env.envs.registration import DENSITY_ALONE

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results"
RESULTS_FILE = "compare_methods.jsonl"
REPORT_FILE = "compare_methods.md"
SUMMARY_FILE = "compare_methods.json"  # aggregated (mean, std, min, max per cell group)
QUALITY_PLOT = "compare_quality_vs_macs.png"
DYNAMICS_PLOT = "compare_dynamics.png"
QUICK_OUT = ROOT / "runs" / "compare_quick"
DEFAULT_TEACHERS = {
    "facades": ROOT / "runs" / "compare_facades_teacher" / "teacher.pt",
    "default_wide": ROOT / "runs" / "teachers" / "default_wide" / "teacher.pt",
}
"""Where each task whose teacher is not shipped keeps it (``--teacher TASK=PATH`` overrides)."""
TEACHER_COMMANDS = {
    "facades": "python benchmarks/compare_methods.py teacher --out runs/compare_facades_teacher",
    "default_wide": "python -m gan_prune_env.train_teacher --task default_wide "
                    "--out runs/teachers/default_wide --resume",
}
"""The command that trains (or resumes) each of those teachers: the same recipe and seed every
time, yet a retrain on another kind of CPU has other weights (floating point; the wide teacher
of sessions 21 and 36, on AMD EPYC machines, scores PSNR 18.67 on the test images, session
28's, on an Intel Xeon, 18.86). So a task's results hold for the teacher file they record
(``teacher_sha1``); the benchmarks refuse to add a cell of another teacher to a results file
(``store.check_one_teacher``)."""


def default_supernet(task: str) -> Path:
    """Where a task's generator supernet is kept (``--supernet TASK=PATH`` overrides)."""
    return ROOT / "runs" / "supernets" / task / "supernet.pt"


def supernet_command(task: str) -> str:
    """The reproducible command that trains (or resumes) it."""
    teacher = DEFAULT_TEACHERS.get(task)
    given = f" --teacher {teacher.relative_to(ROOT)}" if teacher is not None else ""
    return (f"python -m gan_prune_env.supernet --task {task}{given} --out "
            f"runs/supernets/{task} --resume")


PLAIN_START = "separable_teacher_targets"
"""The method whose 25% cell (seed 0) distils the plain start of distil-then-prune."""


def default_separable_student(task: str, start: str = PLAIN_START) -> Path:
    """Where a task's separable student is kept (``--separable-student TASK=PATH`` overrides):
    the generator that the ``pruned_separable*`` methods whose ``student_start`` is ``start``
    narrow to each budget; ``runs/separable/<task>`` for the plain start,
    ``runs/separable/<task>_<start>`` for another."""
    folder = task if start == PLAIN_START else f"{task}_{start}"
    return ROOT / "runs" / "separable" / folder / "generator.pt"


def separable_student_command(task: str, start: str = PLAIN_START) -> str:
    """The reproducible command that trains it: the frontier's ``start`` cell at 25%, where the
    widest separable U-Net is the teacher's own width (12.8% of its MACs on the default task,
    8.0% on the wide one), seed 0, keeping its fine-tuned generator; its record goes to the
    frontier's results file of today's recipe, where the published plan lists it."""
    where = default_separable_student(task, start).parent.relative_to(ROOT)
    return (f"python benchmarks/compare_methods.py run --tasks {task} --budgets 0.25 --methods "
            f"{start} --seeds 0 --save-generator {where}/generator.pt --out {where} --results "
            f"benchmarks/results/frontier_{task}.jsonl --no-report")


DEFAULT_DATA_ROOT = ROOT.parent / "shared" / "data"  # the brief's layout; else $GAN_PRUNE_DATA
ENV_ID = "Pix2PixPrune-v0"
ENV_SEED = 0  # selects pool / evaluation images: the same task for every cell

RECIPE_STEPS = 3000
"""``FinetuneConfig().steps``, without importing torch: the recipe's length, so a report can tell
a cell of the recipe from one that ran another length."""
# The fine-tuning recipe of every cell is the project's (FinetuneConfig's defaults) with the step
# count from the command line; only the checkpoint/logging cadence differs (cells are short and
# their scratch folders are deleted).
FINETUNE_CADENCE = {"save_every": 100_000, "log_every": 50, "image_every": 0}


RECIPE_BEFORE_CUTMIX = {"input_mix": "none", "generator_inherit": 1.0}
"""The recipe's two changes of session 18 undone: its default before cutmix and the shrunk
start (``input_mix: auto``, ``generator_inherit: 0.8``). Cells run before them keep it, so
their records stay reproducible; the frontier's headline cells are re-run with today's."""
DATA_TARGETS = {"targets": "data", **RECIPE_BEFORE_CUTMIX}
TEACHER_TARGETS = {"targets": "teacher"}
NOTHING_TO_INHERIT = {"generator_inherit": 1.0}
"""A re-initialised G has no teacher's weights to shrink towards its init: the scratch
students start from the fresh init itself."""
SCRATCH = ("generator", "discriminator")  # the from-scratch student: both networks fresh


@dataclass(frozen=True)
class Method:
    agent: str
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    reinit: tuple[str, ...] = ()
    """Roles ("generator", "discriminator") whose networks get fresh weights after slicing: the
    thin student from scratch (``agents.run.artifacts.reinitialize``)."""
    student: str = ""
    """``"separable"``: the main G is replaced, after slicing, by the widest depthwise-separable
    U-Net (``gan_prune_env.models.separable``) within the budget's MACs, fresh weights: the
    thin student of GAN Compression's own block type. ``"factorised"``: the same network
    starting from the teacher's weights, sliced to its widths and factorised.
    ``"pruned_separable"``: GAN Compression's order, distil then prune: the task's separable
    student (that U-Net at the teacher's width, distilled from the teacher by the separable
    cell at 25%: ``default_separable_student``) narrowed to the same width with its weights
    (``slice_separable_unet``; ``compare.cells.separable_student``)."""
    student_width: float = 1.0
    """``student="separable"``: the widest student as a multiple of the teacher's width
    (``RunConfig.separable_width``); above 1 a wider start to distil once and narrow."""
    student_importance: str = "l1"
    """``student="pruned_separable"``: the channel ranking of the narrowing
    (``RunConfig.separable_importance``)."""
    student_start: str = PLAIN_START
    """``student="pruned_separable"``: the method whose 25% cell distilled the start it narrows
    (``default_separable_student``), a ``separable*`` method of its own recipe."""
    screen: int = 0
    """Candidates of the pipeline's screen after the search (``agents.run.screen``: the uniform
    pair and the search's best distinct pairs by G reward, each re-scored by ``screen_steps``
    steps of the cell's recipe; the lowest L1 to the teacher is fine-tuned); 0: none."""
    screen_steps: int | None = None
    """Steps of each screened candidate's distillation; None: the pipeline's default
    (``agents.run.config.ScreenConfig``)."""
    screen_score: str = "distill"
    """What the screen ranks by (``ScreenConfig.score``): ``distill``, or ``supernet_fid``,
    each candidate sliced from the task's supernet and scored by its real FID on training
    images, not fine-tuned (GAN Compression's search metric; needs ``supernet``)."""
    supernet: bool = False  # the env scores architectures with the task's supernet
    slice_from: str = "teacher"  # weights the found G is sliced from ("teacher", "supernet")
    recipe: dict[str, Any] = field(default_factory=lambda: dict(DATA_TARGETS))
    """The method's ``FinetuneConfig`` changes. Methods default to the dataset's targets with
    neither input mix nor shrunk start, the recipe their committed records were run with before
    teacher targets became the default; the ``*_teacher_targets`` methods use the teacher's
    outputs and today's recipe."""


def _distil_then_prune(variant: str, start_recipe: dict[str, Any], importance: str,
                       start_what: str, narrowed_how: str, kind: str = "a", width: float = 1.0
                       ) -> dict[str, Method]:
    """A variant of distil-then-prune: the start method ``separable_<variant>_teacher_targets``
    (the separable student at ``width`` times the teacher's width, trained with
    ``start_recipe`` on top of the plain start's recipe) and
    ``pruned_separable_<variant>_teacher_targets``, which narrows that start by ``importance``."""
    start = f"separable_{variant}_teacher_targets"
    return {
        start: Method("uniform", student="separable", student_width=width,
                      recipe={**TEACHER_TARGETS, **NOTHING_TO_INHERIT, **start_recipe},
                      label=f"separable U-Net from scratch {start_what}, teacher targets (the "
                            f"start of pruned_separable_{variant})"),
        f"pruned_separable_{variant}_teacher_targets": Method(
            "uniform", student="pruned_separable", student_importance=importance,
            student_start=start, recipe={**TEACHER_TARGETS, "generator_inherit": 1.0},
            label=f"{kind} distilled separable U-Net {narrowed_how}, teacher targets"),
    }


WHOLE_D = {"budget_d": 1.0}
"""The env setting that keeps the teacher's D whole: what G alone searches and fine-tunes with."""
UNIFORM_WHOLE_D = Method("uniform", env=WHOLE_D, label="uniform L1-norm, the teacher's full D")

ABLATIONS: dict[str, Method] = {
    "mggc_no_peer": Method("mggc", {"peer_feedback": False}, label="MGGC, no peer feedback"),
    "mggc_no_density": Method("mggc", env={"objective": {"lambda_kde": 0.0, "lambda_adv": 0.0}},
                              label="MGGC, L1-only reward"),
    "mggc_g_alone": Method("mggc", {"prune_discriminator": False}, env=WHOLE_D,
                           label="MGGC, G alone (full D)"),
}
"""The ablations that test the paper's claims: its density term, its peer feedback, pruning G
and D together. Each also runs as ``<name>_screened_teacher_targets``: today's recipe after the
screen, as ``mggc_screened_teacher_targets``, so the claims are tested under the one reward
that ranks architectures (the screen's short distillation)."""


RANDOM = Method("random", label="random search")
MGGC = Method("mggc", label="MGGC (ours)")
PPO = Method("ppo", label="SB3 PPO")
SCREEN_CANDIDATES = 16
"""Candidates of every ``*_screened_teacher_targets`` method's screen."""


def _screened(method: Method) -> Method:
    """``method``'s search followed by the pipeline's screen, today's recipe."""
    return replace(method, recipe=dict(TEACHER_TARGETS), screen=SCREEN_CANDIDATES,
                   label=f"{method.label}, its best of {SCREEN_CANDIDATES} by a short "
                         "distillation (the pipeline's screen)")


ANCHOR_ALONE = {"lambda_adv": 0.0, "lambda_kde": 0.0}
"""The objective without its density term (the "no density term" ablation's reward): L1 to the
teacher's outputs alone."""


def _on_supernet_reward(method: Method, objective: dict[str, float], what: str) -> Method:
    """``method``'s search on the supernet's reward with ``objective``'s changes, its best pair
    within budget sliced from the teacher and fine-tuned with today's recipe, no screen."""
    return replace(method, recipe=dict(TEACHER_TARGETS), supernet=True,
                   env={**method.env, "objective": dict(objective)},
                   label=f"{method.label} on the supernet's {what}")


def _fid_screened(method: Method) -> Method:
    """``method``'s search on the supernet's reward, then the pipeline's screen by the FID of
    each candidate sliced from the supernet (GAN Compression's search: a supernet, its
    sub-networks judged by the final metric); the pick is sliced from the teacher and
    fine-tuned with today's recipe, as every other method's."""
    return replace(method, recipe=dict(TEACHER_TARGETS), screen=SCREEN_CANDIDATES,
                   screen_score="supernet_fid", supernet=True,
                   label=f"{method.label} on the supernet, its best of {SCREEN_CANDIDATES} by "
                         "the FID of its supernet slice")


METHODS: dict[str, Method] = {
    "scratch": Method("uniform", label="thin student from scratch", reinit=SCRATCH),
    "uniform": Method("uniform", label="uniform L1-norm"),
    "uniform_full_d": UNIFORM_WHOLE_D,
    "uniform_supernet": Method("uniform", supernet=True, slice_from="supernet",
                               label="uniform, sliced from the supernet"),
    "scratch_teacher_targets": Method(
        "uniform", reinit=SCRATCH, recipe={**TEACHER_TARGETS, **NOTHING_TO_INHERIT},
        label="thin student from scratch, teacher targets"),
    "scratch_g_teacher_targets": Method(
        "uniform", reinit=("generator",), recipe={**TEACHER_TARGETS, **NOTHING_TO_INHERIT},
        label="thin G from scratch with the teacher's D, teacher targets"),
    "uniform_teacher_targets": Method("uniform", recipe=TEACHER_TARGETS,
                                      label="uniform L1-norm, teacher targets"),
    # the control of the G-alone ablation: its fine-tune, too, runs against the whole teacher D
    "uniform_full_d_teacher_targets": replace(
        UNIFORM_WHOLE_D, recipe=dict(TEACHER_TARGETS),
        label=f"{UNIFORM_WHOLE_D.label}, teacher targets"),
    "widths_teacher_targets": Method("widths", recipe=TEACHER_TARGETS,
                                     label="learned widths (recipe + soft gates), teacher targets"),
    "separable_teacher_targets": Method(
        "uniform", student="separable", recipe={**TEACHER_TARGETS, **NOTHING_TO_INHERIT},
        label="separable U-Net from scratch with the teacher's D, teacher targets"),
    "separable_wide_teacher_targets": Method(
        "uniform", student="separable", student_width=1.5,
        recipe={**TEACHER_TARGETS, **NOTHING_TO_INHERIT},
        label="separable U-Net up to 1.5x the teacher's width from scratch, teacher targets"),
    "factorised_teacher_targets": Method(
        "uniform", student="factorised", recipe={**TEACHER_TARGETS, **NOTHING_TO_INHERIT},
        label="separable U-Net factorised from the teacher's slice, teacher targets"),
    "pruned_separable_teacher_targets": Method(
        # the distilled weights as they are; the recipe's shrunk start is a variant (--recipe)
        "uniform", student="pruned_separable",
        recipe={**TEACHER_TARGETS, "generator_inherit": 1.0},
        label="the distilled full-width separable U-Net pruned uniformly, teacher targets"),
    **_distil_then_prune("slim", {"lambda_norm_sparsity": 1.0}, "norm_scale",
                         "with network slimming's sparsity term", "narrowed by its norm scales"),
    # wider than the teacher (1.75x: 22% of the wide teacher's MACs), to fill a 25% budget
    **_distil_then_prune("slim_wide", {"lambda_norm_sparsity": 1.0}, "norm_scale",
                         "at 1.75 times the teacher's width with network slimming's sparsity term",
                         "narrowed by its norm scales", width=1.75),
    **_distil_then_prune("slimmable", {"slimmable_widths": [0.8125, 0.5, 0.3125]},  # 13, 8, 5
                         "position", "trained as its narrower copies too",
                         "narrowed to its first channels", "a slimmable"),
    "random": RANDOM,
    "random_teacher_targets": Method("random", recipe=TEACHER_TARGETS,
                                     label="random search, teacher targets"),
    "random_screened_teacher_targets": _screened(RANDOM),
    "mggc_teacher_targets": Method("mggc", recipe=TEACHER_TARGETS,
                                   label="MGGC (ours), teacher targets"),
    "mggc_screened_teacher_targets": _screened(MGGC),
    "random_supernet": Method("random", supernet=True, slice_from="supernet",
                              label="random search on the supernet reward, sliced from it"),
    "random_sn_reward": Method("random", supernet=True,
                               label="random search on the supernet reward"),
    "ppo": PPO,
    "ppo_screened_teacher_targets": _screened(PPO),
    "sac": Method("sac", label="SB3 SAC"),
    "tqc": Method("tqc", label="sb3-contrib TQC"),
    "rllib_ppo": Method("rllib_ppo", label="RLlib PPO (one policy per agent)"),
    "mggc": MGGC,
    "mggc_sn_reward": Method("mggc", supernet=True, label="MGGC on the supernet reward"),
    "random_sn_fid_screened_teacher_targets": _fid_screened(RANDOM),
    "mggc_sn_fid_screened_teacher_targets": _fid_screened(MGGC),
    "mggc_sn_no_density_teacher_targets": _on_supernet_reward(
        MGGC, ANCHOR_ALONE, "L1 reward (no density term)"),
    **ABLATIONS,
    **{f"{name}_screened_teacher_targets": _screened(ablation)
       for name, ablation in ABLATIONS.items()},
    "mggc_no_peer_sn_kde_teacher_targets": _on_supernet_reward(
        ABLATIONS["mggc_no_peer"], DENSITY_ALONE, "density reward (KDE term alone)"),
    "mggc_unprojected": Method("mggc", {"fit_budget": False},
                               label="MGGC, no budget projection"),
    "mggc_gates": Method("mggc", {"mode": "gates"}, label="MGGC, relaxed gates"),
}
LEADERBOARD_ROWS = ("random", "uniform", "ppo", "sac", "tqc", "mggc", "rllib_ppo")
"""The algorithms of ``benchmarks/leaderboard.py``, each also on the density reward below."""
# NAME_sn_kde_teacher_targets: the search on the supernet's density reward, which is
# Pix2PixPruneDensity-v0's with the shipped supernet (--supernet default=its file)
METHODS.update({
    f"{name}_sn_kde_teacher_targets": _on_supernet_reward(METHODS[name], DENSITY_ALONE,
                                                          "density reward (KDE term alone)")
    for name in LEADERBOARD_ROWS})
BASELINES = ("scratch", "uniform", "random", "ppo")
TASKS = ("default", "default_long", "default_wide", "facades")
DYNAMICS_KEYS = {"generator": ("g_loss", "g_adv", "g_kde", "g_rec"),
                 "discriminator": ("d_loss", "d_real", "d_fake")}


def quick_settings() -> dict[str, Any]:
    return {"tasks": ["default"], "budgets": [0.25], "methods": ["uniform", "mggc"],
            "seeds": [0], "rounds": 8, "finetune_steps": 4, "eval_images": 16,
            "latency_runs": 5}


def cell_key(task: str, budget: float, method: str, seed: int) -> str:
    return f"{task}|{budget:g}|{method}|{seed}"


def ordered(items, order) -> list:
    """``items`` in ``order``'s order; unknown ones last."""
    rank = {v: i for i, v in enumerate(order)}
    return sorted(items, key=lambda v: rank.get(v, len(rank)))


def rel_path(path: Path) -> str:
    """``path`` relative to the project root when inside it (for messages and reports)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def check_choices(kind: str, values: list[str], allowed) -> None:
    """Stop before any work when ``values`` holds a name that is not in ``allowed``."""
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise SystemExit(f"error: unknown {kind}(s) {unknown}; choose from {list(allowed)}")
