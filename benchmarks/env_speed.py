"""Environment steps per second on CPU, and where the time of one step goes.

Settings (all through ``gymnasium.make``, single view, the generator agent, random actions,
episodes of the default ``rounds`` with the resets they need counted in the time):

* ``default frozen``: the default task with frozen weights (``inner_steps=0``, pure
  architecture evaluation) and the env's defaults: masked scoring, the cache of evaluated
  pairs on (random actions never repeat a pair). The target (the RL-environment issue) is
  >= 65 steps/s on 2 cores;
* ``default frozen, the env before``: the same env scoring as it did before channels-last
  weights and kept real-pair verdicts (contiguous weights, ``cache_size=0``), the baseline of
  the speed-up in the same run;
* ``default frozen, joint view``: both agents act at random (``view="joint"``), so D's
  architecture changes every round and its verdicts on the real pairs cannot be reused (the
  single view's fixed peer submits one D architecture every round);
* ``default frozen, sliced``: the same, scored sliced to the kept channels
  (``evaluation="sliced"``), beside it in the same run;
* ``default frozen, 8 repeated actions``: actions drawn from 8 fixed ones, as a policy that has
  settled revisits its pairs (the cache answers all but the first visit of each);
* ``default frozen, no norm recal.``: the same without re-estimating the pruned generator's
  BatchNorm statistics every step (``recalibrate_norms=False``), to show what that costs;
* ``default frozen, 1 thread``: the first setting with ``torch.set_num_threads(1)``: on a shared
  machine (or with one env per core in a ``SubprocVecEnv``) two OpenMP threads per process
  oversubscribe the cores and every op waits on the slower thread;
* ``default frozen, 2 processes x 1 thread``: the first setting in Gymnasium's async vector env,
  two single-thread worker processes stepping at once (``gymnasium.vector.AsyncVectorEnv``,
  fork): the throughput a vectorised RL library gets out of 2 cores, counted over both workers
  (the steps that only reset a finished episode are not counted). Its cache hit rate lives in
  the workers and is not reported;
* ``default frozen, bfloat16`` and ``default frozen, bfloat16, 2 processes x 1 thread``: the
  first setting and the vector env scoring under bfloat16 autocast (``precision="bfloat16"``,
  worth it on CPUs with native bfloat16 arithmetic, which the header records;
  ``benchmarks/env_precision.py`` measures how its rewards compare);
* ``default inner=1`` and ``default inner=4``: the same with adversarial inner updates;
* ``facades frozen``: the facades task at 128 px. It needs ``$GAN_PRUNE_DATA`` (skipped when
  unset) and a teacher: ``--facades-teacher PATH``, otherwise an *untrained* network pair of the
  facades architecture is built for the measurement (labelled "untrained teacher, speed only":
  step time depends on the architecture, not on the weights); beside it ``facades frozen, the
  env before``, ``facades frozen, sliced`` and both in bfloat16, as for the default task.

Each setting: a warm-up, then ``--repeats`` timed runs of ``--steps`` steps (divided by
``1 + inner_steps`` for the slow settings), round-robin over
the settings (the 2 cores are shared with other work: interleaving spreads background load over
all settings alike); the reported rate is the median over runs (min and max beside it, and the
1-minute load average after each run in the JSON). Setup (first ``make``: task
preparation; second ``make``: the per-process cache) is timed separately.

The frozen default step is then run under cProfile and its time split into: generator forward
(on the evaluation images), norm recalibration (the pruned generator's train-mode pass that
re-estimates its BatchNorm statistics), discriminator forward (the center-conditioned D judging
pairs), feature map (phi of the student outputs for the density term), masks / slicing (setting
masks, the masking hooks inside the forwards, slicing the tensors of an architecture),
MACs (keep ratios -> counts -> kept-MACs ratio), observation building (observations and infos)
and other (losses, gathering pairs, action checks, rewards, Python overhead). The named
callables are wrapped in uniquely named functions so cProfile can tell them apart; the groups do
not overlap and sum to the step time.

Outputs (``--out``, default ``benchmarks/results``): ``env_speed.json``, ``env_speed.md`` and
``env_speed.png``.

    python benchmarks/env_speed.py                 # full run (a few minutes on 2 cores)
    python benchmarks/env_speed.py --quick         # fewer steps and repeats
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=16384 python benchmarks/env_speed.py --out DIR
                                                   # oneDNN keeps 16x the kernels
    python benchmarks/env_speed.py --settings "default frozen, bfloat16, 2 processes x 1 thread" \
        --repeats 15 --out benchmarks/results/env_speed_target   # a few settings, more runs
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import functools
import os
import platform
import pstats
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import gan_prune_env  # noqa: F401  (registers the ids)
from compare.cells import cpu_name, file_sha1, git_commit
from compare.plots import save_figure, subplots
from compare.report import write_outputs
from gan_prune_env.devices import has_native_bfloat16
from gan_prune_env.tasks import DATA_ENV, get_task, teacher_path

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
TARGET_STEPS_PER_S = 65.0
ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
"""oneDNN's kernel cache size, read from the environment when the process starts: the
benchmark's 17 envs in one process crowd the default 1024 (as does sliced scoring's stream of
new channel counts), so the header records it."""
THREADS = 2
UNTRAINED_LABEL = "untrained teacher, speed only"


@dataclass
class Setting:
    name: str
    kwargs: dict[str, Any]
    note: str = ""
    threads: int = THREADS
    action_pool: int = 0  # > 0: actions drawn from this many fixed ones
    workers: int = 0  # > 0: an async vector env of this many single-thread processes
    contiguous: bool = False  # score with contiguous (NCHW) weights, as the env did before
    baseline: str | None = None  # the setting whose rate, run by run, this one is divided by
    result: dict[str, Any] = field(default_factory=dict)


# -- settings ------------------------------------------------------------------------------------

def untrained_facades_teacher(directory: Path) -> str:
    """An untrained generator/discriminator pair of the facades architecture, saved as a
    teacher checkpoint (the task's architecture check then passes)."""
    from gan_prune_env.checkpoint import make_checkpoint, save_checkpoint
    from gan_prune_env.families import build_network, network_config, network_names
    from gan_prune_env.tasks import get_task

    task = get_task("facades")
    nets = {name: build_network(network_config(task.family, name, task.generator,
                                               task.discriminator), seed=i)
            for i, name in enumerate(network_names(task.family))}
    payload = make_checkpoint("teacher", task.family, nets, task.generator, task.discriminator,
                              metadata={"note": UNTRAINED_LABEL})
    return str(save_checkpoint(directory / "facades_untrained_teacher.pt", payload))


def build_settings(args: argparse.Namespace, scratch: Path) -> tuple[list[Setting], list[str]]:
    default = {"task": "default"}
    if args.teacher:
        default["teacher"] = args.teacher
    settings = [
        Setting("default frozen", {**default, "inner_steps": 0}),
        Setting("default frozen, the env before", {**default, "inner_steps": 0, "cache_size": 0},
                contiguous=True, note="NCHW weights, cache_size=0 (nothing kept)"),
        Setting("default frozen, joint view", {**default, "inner_steps": 0, "view": "joint"},
                note="view=joint: both agents random, D changes every round"),
        Setting("default frozen, sliced", {**default, "inner_steps": 0, "evaluation": "sliced"},
                note="evaluation=sliced"),
        Setting("default frozen, 8 repeated actions", {**default, "inner_steps": 0},
                action_pool=8, note="actions from a pool of 8"),
        Setting("default frozen, no norm recal.", {**default, "inner_steps": 0,
                                                   "recalibrate_norms": False},
                note="recalibrate_norms=False"),
        Setting("default frozen, 1 thread", {**default, "inner_steps": 0}, threads=1,
                note="torch.set_num_threads(1)"),
        Setting("default frozen, 2 processes x 1 thread", {**default, "inner_steps": 0},
                threads=1, workers=2, note="AsyncVectorEnv, 2 workers, 1 torch thread each"),
        Setting("default frozen, bfloat16", {**default, "inner_steps": 0,
                                             "precision": "bfloat16"},
                note="precision=bfloat16"),
        Setting("default frozen, bfloat16, 2 processes x 1 thread",
                {**default, "inner_steps": 0, "precision": "bfloat16"}, threads=1, workers=2,
                note="precision=bfloat16; AsyncVectorEnv, 2 workers, 1 torch thread each"),
        Setting("default inner=1", {**default, "inner_steps": 1}),
        Setting("default inner=4", {**default, "inner_steps": 4}),
    ]
    skipped = []
    if not os.environ.get(DATA_ENV):
        skipped.append(f"facades: ${DATA_ENV} is unset")
    elif args.facades_teacher:
        settings.append(Setting("facades frozen", {"task": "facades", "inner_steps": 0,
                                                   "teacher": args.facades_teacher},
                                note=f"teacher {args.facades_teacher}"))
    else:
        teacher = untrained_facades_teacher(scratch)
        settings.append(Setting("facades frozen", {"task": "facades", "inner_steps": 0,
                                                   "teacher": teacher}, note=UNTRAINED_LABEL))
    if os.environ.get(DATA_ENV):
        facades = settings[-1]
        settings.append(Setting("facades frozen, the env before",
                                {**facades.kwargs, "cache_size": 0}, contiguous=True,
                                note=f"{facades.note}; NCHW weights, cache_size=0"))
        settings.append(Setting("facades frozen, sliced",
                                {**facades.kwargs, "evaluation": "sliced"},
                                note=f"{facades.note}; evaluation=sliced"))
        settings.append(Setting("facades frozen, bfloat16",
                                {**facades.kwargs, "precision": "bfloat16"},
                                note=f"{facades.note}; precision=bfloat16"))
        settings.append(Setting("facades frozen, sliced, bfloat16",
                                {**facades.kwargs, "evaluation": "sliced",
                                 "precision": "bfloat16"},
                                note=f"{facades.note}; evaluation=sliced, precision=bfloat16"))
    for setting in settings:
        setting.baseline = _baseline(setting, settings)
    return settings, skipped


def is_new_random(setting: Setting) -> bool:
    """Whether ``setting`` is today's env, frozen, on random actions: what the target counts
    (not the env before, not a policy revisiting its pairs)."""
    return (not setting.kwargs.get("inner_steps") and not setting.contiguous
            and not setting.action_pool)


def chosen_settings(settings: list[Setting], names: list[str]) -> list[Setting]:
    """The settings called ``names``, with the baseline of each, in the benchmark's order; an
    unknown name stops the run with the names there are."""
    known = [s.name for s in settings]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"error: --settings {unknown} not among the settings here: {known}")
    wanted = set(names) | {s.baseline for s in settings if s.name in names and s.baseline}
    return [s for s in settings if s.name in wanted]


def _baseline(setting: Setting, settings: list[Setting]) -> str | None:
    """``<task> frozen, the env before`` for every other frozen setting of that task: its rate
    divided by the baseline's in the same round-robin run cancels most of the background load
    of a shared machine, which moves both alike."""
    if setting.kwargs.get("inner_steps") or setting.contiguous:
        return None
    names = {s.name for s in settings}
    name = f"{setting.kwargs['task']} frozen, the env before"
    return name if name in names else None


# -- timing --------------------------------------------------------------------------------------

def run_steps(env: gym.Env, steps: int, rng: np.random.Generator, action_pool: int = 0
              ) -> float:
    """Seconds for ``steps`` random-action steps (resetting at episode ends); with
    ``action_pool`` the actions are drawn from that many fixed random ones."""
    low, high, shape = env.action_space.low, env.action_space.high, env.action_space.shape
    actions = rng.uniform(low, high, (steps, *shape)).astype(np.float32)
    if action_pool:
        actions = actions[rng.integers(0, min(action_pool, steps), steps)]
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start


def run_vector_steps(env: gym.vector.VectorEnv, steps: int, rng: np.random.Generator
                     ) -> tuple[int, float]:
    """(evaluated env steps, seconds) for ``steps`` random-action steps of a vector env that
    resets a finished episode on its next step (``AutoresetMode.NEXT_STEP``): that reset step
    evaluates nothing, so it is timed but not counted, as the single env's resets are."""
    space = env.single_action_space
    actions = rng.uniform(space.low, space.high,
                          (steps, env.num_envs, *space.shape)).astype(np.float32)
    resetting = np.zeros(env.num_envs, dtype=bool)
    evaluated = 0
    start = time.perf_counter()
    for action in actions:
        evaluated += int((~resetting).sum())
        _, _, terminated, truncated, _ = env.step(action)
        resetting = terminated | truncated
    return evaluated, time.perf_counter() - start


def _single_thread_env(kwargs: dict[str, Any]) -> gym.Env:
    """Runs in a vector env's worker process: one torch thread, so that the workers share the
    cores instead of oversubscribing them."""
    torch.set_num_threads(1)
    return gym.make("Pix2PixPrune-v0", **kwargs)


def make_workers(setting: Setting) -> gym.vector.AsyncVectorEnv:
    """``setting.workers`` forked processes, each with one env of ``setting.kwargs`` (the task
    preparation already cached in this process is inherited, not redone)."""
    return gym.vector.AsyncVectorEnv(
        [functools.partial(_single_thread_env, setting.kwargs)] * setting.workers,
        context="fork", autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


def timed_run(setting: Setting, env: gym.Env | gym.vector.VectorEnv, steps: int,
              rng: np.random.Generator) -> float:
    """Steps per second of one timed run (over all workers for a vector setting)."""
    if setting.workers:
        evaluated, seconds = run_vector_steps(env, steps, rng)
        return evaluated / seconds
    return steps / run_steps(env, steps, rng, setting.action_pool)


def steps_for(setting: Setting, args: argparse.Namespace) -> int:
    """Timed steps per run: ``--steps``, divided by (1 + inner_steps), at least 4."""
    return max(4, args.steps // (1 + setting.kwargs.get("inner_steps", 0)))


def prepare(setting: Setting, args: argparse.Namespace) -> gym.Env | gym.vector.VectorEnv:
    """Make the env twice (task preparation, then the cached path) and warm it up; a vector
    setting forks its workers from this process instead and warms them up (its single env
    only serves for the setting's description)."""
    start = time.perf_counter()
    env = gym.make("Pix2PixPrune-v0", **setting.kwargs)
    first_make = time.perf_counter() - start
    env.close()
    start = time.perf_counter()
    env = gym.make("Pix2PixPrune-v0", **setting.kwargs)
    cached_make = time.perf_counter() - start
    game = env.unwrapped.game
    if setting.contiguous:
        for network in (game.generator, game.discriminator):
            network.to(memory_format=torch.contiguous_format)
    setting.result = {
        "first_make_s": first_make,
        "cached_make_s": cached_make,
        "resolution": int(game.eval_batch.inputs.shape[-1]),
        "eval_images": int(game.eval_batch.inputs.shape[0]),
        "eval_pairs": int(game.eval_batch.neighbour_pos.numel()),
        "rounds": game.config.rounds,
        "groups": {a: game.num_groups(a) for a in ("generator", "discriminator")},
        "full_macs": {a: int(game.spaces[a].full_macs) for a in ("generator", "discriminator")},
        "steps_per_run": steps_for(setting, args),
        "rates": [],
        "cache_hit_rates": [],
        "load_1min": [],
    }
    if setting.workers:  # the single env only described the setting
        env.close()
        env = make_workers(setting)
    env.reset(seed=0)
    timed_run(setting, env, max(args.warmup, 1), np.random.default_rng(0))  # the warm-up
    return env


def measure(settings: list[Setting], args: argparse.Namespace) -> None:
    """Timed runs, round-robin over the settings so that background load (this machine is
    shared) hits every setting alike; the median over runs is the reported rate."""
    envs = []
    for setting in settings:
        print(f"[env_speed] preparing {setting.name} ...", flush=True)
        envs.append(prepare(setting, args))
    rng = np.random.default_rng(1)
    for repeat in range(args.repeats):
        for setting, env in zip(settings, envs):
            env.reset(seed=repeat)
            torch.set_num_threads(setting.threads)
            steps = steps_for(setting, args)
            try:
                setting.result["rates"].append(timed_run(setting, env, steps, rng))
            finally:
                torch.set_num_threads(THREADS)
            if not setting.workers:
                setting.result["cache_hit_rates"].append(env.unwrapped.game.cache_hit_rate)
            setting.result["load_1min"].append(round(os.getloadavg()[0], 2))
        print(f"[env_speed] run {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{s.name} {s.result['rates'][-1]:.2f}" for s in settings), flush=True)
    for setting, env in zip(settings, envs):
        rates = setting.result["rates"]
        setting.result.update({
            "steps_per_s_median": statistics.median(rates),
            "steps_per_s_min": min(rates),
            "steps_per_s_max": max(rates),
            "ms_per_step_median": 1000.0 / statistics.median(rates),
        })
        env.close()
    by_name = {s.name: s for s in settings}
    for setting in settings:
        if setting.baseline is not None:
            ratios = [r / b for r, b in zip(setting.result["rates"],
                                            by_name[setting.baseline].result["rates"])]
            setting.result.update({"baseline": setting.baseline, "speedup_per_run": ratios,
                                   "speedup_median": statistics.median(ratios)})


# -- profile -------------------------------------------------------------------------------------

GROUPS = ("generator forward", "norm recalibration", "discriminator forward", "feature map",
          "masks / slicing", "MACs", "observation building", "other")


_FACTORIES: dict[str, Any] = {}


def _named(name: str, fn):
    """``fn`` behind a function called ``name`` (visible to cProfile). Every wrapper of one name
    shares one code object: cProfile's stats are keyed by (file, line, name), so separate code
    objects of the same name would overwrite each other instead of adding up."""
    if name not in _FACTORIES:
        namespace: dict[str, Any] = {}
        exec(f"def factory(_fn):\n    def {name}(*args, **kwargs):\n"
             f"        return _fn(*args, **kwargs)\n    return {name}\n", namespace)
        _FACTORIES[name] = namespace["factory"]
    return _FACTORIES[name](fn)


def _by_mode(net, evaluating, recalibrating):
    """Call ``evaluating`` or ``recalibrating`` depending on whether ``net``'s norms are in
    train mode at call time: only the norm re-estimation pass puts them there (the rest of the
    network stays in eval mode during it)."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def dispatch(*args, **kwargs):
        return (recalibrating if any(m.training for m in norms) else evaluating)(*args, **kwargs)
    return dispatch


def instrument(game) -> None:
    """Route the step's heavy callables through uniquely named wrappers."""
    for role, net in (("generator", game.generator), ("discriminator", game.discriminator)):
        net.forward = _by_mode(net, _named(f"bench_{role}_forward", net.forward),
                               _named(f"bench_{role}_recalibration", net.forward))
        for module in net.modules():  # the maskers' forward pre-hooks
            for key, hook in list(module._forward_pre_hooks.items()):
                module._forward_pre_hooks[key] = _by_mode(
                    net, _named(f"bench_{role}_mask_hook", hook),
                    _named(f"bench_{role}_recalibration_mask_hook", hook))
    phi = game.objective.feature_map
    phi.forward = _named("bench_feature_map", phi.forward)
    for masker in game.maskers.values():
        masker.set_counts = _named("bench_set_masks", masker.set_counts)
    for slicer in (game.slicers or {}).values():
        slicer.tensors = _named("bench_slice_tensors", slicer.tensors)
    for space in game.spaces.values():
        space.counts_for_ratios = _named("bench_counts_for_ratios", space.counts_for_ratios)
        space.macs_ratio = _named("bench_macs_ratio", space.macs_ratio)


PLUMBING = {  # call-chain layers every step passes through; they would top a cumulative list
    "module.py": ("_wrapped_call_impl", "_call_impl", "inner"), "container.py": ("forward",),
    "_contextlib.py": ("decorate_context",), "env_speed.py": ("dispatch",),
    "common.py": ("step",), "core.py": ("step",), "order_enforcing.py": ("step",),
    "env_checker.py": ("step",), "views.py": ("step", "_step_parallel"),
    "parallel.py": ("step",), "game.py": ("play_round",),
}


def _is_plumbing(filename: str, name: str) -> bool:
    return name in PLUMBING.get(Path(filename).name, ()) or name == "<lambda>"


def profile_step(args: argparse.Namespace) -> dict[str, Any]:
    kwargs = {"teacher": args.teacher} if args.teacher else {}
    env = gym.make("Pix2PixPrune-v0", task="default", inner_steps=0, **kwargs)
    view = env.unwrapped
    instrument(view.game)
    parallel = view.parallel
    parallel._observe = _named("bench_observe", parallel._observe)
    parallel._info = _named("bench_info", parallel._info)
    rng = np.random.default_rng(1)
    env.reset(seed=0)
    run_steps(env, max(args.warmup, 1), rng)
    env.reset(seed=0)
    # time only env.step (resets outside), with a named wrapper as the root
    step = _named("bench_env_step", env.step)
    actions = rng.uniform(-1, 1, (args.profile_steps, *env.action_space.shape)).astype(np.float32)
    profiler = cProfile.Profile()
    for action in actions:
        profiler.enable()
        _, _, terminated, _, _ = step(action)
        profiler.disable()
        if terminated:
            env.reset()
    stats = pstats.Stats(profiler)
    cum = {}
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        if name.startswith("bench_"):
            cum[name] = cum.get(name, 0.0) + cumtime
    total = cum["bench_env_step"]
    g_hooks = cum.get("bench_generator_mask_hook", 0.0)
    g_calibration_hooks = cum.get("bench_generator_recalibration_mask_hook", 0.0)
    d_hooks = cum.get("bench_discriminator_mask_hook", 0.0)
    groups = {
        "generator forward": cum["bench_generator_forward"] - g_hooks,
        "norm recalibration": cum.get("bench_generator_recalibration", 0.0) - g_calibration_hooks,
        "discriminator forward": cum["bench_discriminator_forward"] - d_hooks,
        "feature map": cum["bench_feature_map"],
        # the hooks of the feature map's frozen D copy: none (it is not masked)
        "masks / slicing": (cum.get("bench_set_masks", 0.0) + g_hooks + g_calibration_hooks
                            + d_hooks + cum.get("bench_slice_tensors", 0.0)),
        "MACs": cum.get("bench_counts_for_ratios", 0.0) + cum.get("bench_macs_ratio", 0.0),
        "observation building": cum.get("bench_observe", 0.0) + cum.get("bench_info", 0.0),
    }
    groups["other"] = total - sum(groups.values())
    n = args.profile_steps
    def ranked(column: int) -> list[dict[str, Any]]:
        rows = []
        for (filename, line, name), (_, ncalls, tottime, cumtime, _) in sorted(
                stats.stats.items(), key=lambda item: -item[1][column]):
            if name.startswith("bench_") or _is_plumbing(filename, name):
                continue
            rows.append({"function": f"{Path(filename).name}:{line}({name})",
                         "calls_per_step": ncalls / n, "cum_ms_per_step": 1000 * cumtime / n,
                         "own_ms_per_step": 1000 * tottime / n})
            if len(rows) >= args.top:
                break
        return rows

    env.close()
    return {
        "steps": n,
        "ms_per_step_profiled": 1000 * total / n,
        "groups_ms_per_step": {k: 1000 * v / n for k, v in groups.items()},
        "groups_share": {k: v / total for k, v in groups.items()},
        "top_functions": ranked(3),
        "top_functions_own_time": ranked(2),
        "load_1min": round(os.getloadavg()[0], 2),
        "note": "cProfile adds overhead to Python-heavy code; shares matter more than totals",
    }


# -- outputs -------------------------------------------------------------------------------------

def _speedup(setting: dict[str, Any]) -> str:
    if "speedup_median" not in setting:
        return ""
    ratios = setting["speedup_per_run"]
    return f"{setting['speedup_median']:.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def _hit_rate(setting: dict[str, Any]) -> str:
    rates = setting["cache_hit_rates"]
    return f"{statistics.mean(rates):.0%}" if rates else "n/a"


def _best_line(report: dict[str, Any]) -> str:
    best = report["best_default_frozen"]
    if best is None:
        return "no setting of it was timed"
    return (f"the best such setting (random actions, today's env): {best['setting']}, "
            f"{best['steps_per_s']:.1f} steps/s ({'met' if report['meets_target'] else 'not met'})")


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    lines = [
        "# Environment speed", "",
        f"{report['created']}, commit {report['commit']}, "
        f"{report['machine'].get('cpu', 'processor not recorded')}, "
        f"{report['machine']['cpu_count']} CPU cores, torch "
        f"{report['machine']['torch']} with {THREADS} threads, native bfloat16 "
        f"{report['machine'].get('native_bfloat16', 'not recorded')}, oneDNN primitive cache "
        f"{report['machine'].get('onednn_primitive_cache_capacity', 'not recorded')}, "
        "load average before/after "
        f"{report['machine']['load_before']} / {report['machine']['load_after']}.",
        "Random actions (unless the setting says otherwise), single view (generator agent), "
        "episode resets included; median over "
        f"{report['repeats']} runs of {report['steps']} steps (divided by 1 + inner_steps) after "
        "a warm-up, runs interleaved "
        "over the settings (shared machine: see the load column). Target: "
        f">= {TARGET_STEPS_PER_S:g} steps/s frozen on the default task; {_best_line(report)}.",
        "",
        "**x before**: the setting's rate divided by that of `<task> frozen, the env before` "
        "(the env as it scored before channels-last weights and kept verdicts) in the same run; "
        "median over runs, min-max beside it.", "",
        "| setting | steps/s (median) | min-max | x before | ms/step | cache hits | px | eval "
        "images / pairs | first make s | cached make s | load 1-min | note | teacher SHA-1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in report["settings"]:
        lines.append(
            f"| {s['name']} | {s['steps_per_s_median']:.2f} | {s['steps_per_s_min']:.2f}-"
            f"{s['steps_per_s_max']:.2f} | {_speedup(s)} | {s['ms_per_step_median']:.0f} | "
            f"{_hit_rate(s)} | {s['resolution']} | "
            f"{s['eval_images']} / {s['eval_pairs']} | {s['first_make_s']:.1f} | "
            f"{s['cached_make_s']:.2f} | {min(s['load_1min']):.1f}-{max(s['load_1min']):.1f} | "
            f"{s['note']} | {s['teacher_sha1'][:12]} |")
    for reason in report["skipped"]:
        lines.append(f"\nSkipped: {reason}.")
    prof = report["profile"]
    lines += ["", f"## Where a frozen default step goes (cProfile, {prof['steps']} steps, "
              f"{prof['ms_per_step_profiled']:.0f} ms/step under the profiler, {THREADS} threads, "
              f"load {prof['load_1min']})", "",
              "| group | ms/step | share |", "|---|---:|---:|"]
    for group in GROUPS:
        lines.append(f"| {group} | {prof['groups_ms_per_step'][group]:.1f} | "
                     f"{100 * prof['groups_share'][group]:.1f}% |")
    for title, key in (("cumulative", "top_functions"), ("own", "top_functions_own_time")):
        lines += ["", f"Top functions by {title} time (call-chain plumbing such as "
                  "``Module._call_impl`` and the env wrappers left out):", "",
                  "| function | calls/step | cum ms/step | own ms/step |", "|---|---:|---:|---:|"]
        for row in prof[key]:
            lines.append(f"| `{row['function']}` | {row['calls_per_step']:.0f} | "
                         f"{row['cum_ms_per_step']:.1f} | {row['own_ms_per_step']:.1f} |")
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, report: dict[str, Any]) -> None:
    settings = report["settings"]
    fig, (ax, bx) = subplots(1, 2, figsize=(max(12.0, 0.85 * len(settings) + 4), 4.5),
                             gridspec_kw={"width_ratios": [3, 2]})
    labels = [s["name"].replace(", ", ",\n") + (f"\n({s['note']})" if s["note"] == UNTRAINED_LABEL
                                                else "") for s in settings]
    medians = [s["steps_per_s_median"] for s in settings]
    errors = np.array([[m - s["steps_per_s_min"], s["steps_per_s_max"] - m]
                       for m, s in zip(medians, settings)]).T
    colors = ["tab:green" if s["threads"] != THREADS else "tab:purple" if "facades" in s["name"]
              else "tab:blue" if "frozen" in s["name"] else "tab:orange" for s in settings]
    bars = ax.bar(range(len(settings)), medians, yerr=errors, capsize=4, color=colors)
    for bar, value in zip(bars, medians):
        ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    ax.axhline(TARGET_STEPS_PER_S, color="tab:red", linestyle="--",
               label=f"target {TARGET_STEPS_PER_S:g} steps/s (frozen, default)")
    ax.set_xticks(range(len(settings)), labels, fontsize=8)
    ax.set_ylabel("env steps / s (median, min-max)")
    ax.set_title(f"Environment speed, {THREADS} CPU threads")
    ax.legend(fontsize=8)

    prof = report["profile"]
    values = [prof["groups_ms_per_step"][g] for g in GROUPS]
    bx.barh(range(len(GROUPS)), values, color="tab:gray")
    for i, (value, group) in enumerate(zip(values, GROUPS)):
        bx.annotate(f"{value:.1f} ms ({100 * prof['groups_share'][group]:.0f}%)", (value, i),
                    va="center", xytext=(3, 0), textcoords="offset points", fontsize=8)
    bx.set_yticks(range(len(GROUPS)), GROUPS, fontsize=8)
    bx.invert_yaxis()
    bx.set_xlim(0, max(values) * 1.45)
    bx.set_xlabel("ms per step (under cProfile)")
    bx.set_title("Frozen default step, by group")
    save_figure(fig, path)


# -- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=24, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per setting")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps first")
    parser.add_argument("--profile-steps", type=int, default=24)
    parser.add_argument("--top", type=int, default=15, help="functions listed in the profile")
    parser.add_argument("--facades-teacher", default=None,
                        help="teacher checkpoint of the facades task (default: an untrained "
                             "network pair, speed only)")
    parser.add_argument("--teacher", default=None,
                        help="teacher checkpoint of the default task (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="8 steps x 3 runs, 8 profiled")
    parser.add_argument("--settings", nargs="+", default=None, metavar="NAME",
                        help="time only these settings (and the baseline each is divided by), "
                             "e.g. to time a few with more --repeats; write them to another "
                             "--out")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.warmup, args.profile_steps = 8, 3, 2, 8
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(THREADS)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as scratch:
        settings, skipped = build_settings(args, Path(scratch))
        if args.settings:
            settings = chosen_settings(settings, args.settings)
        teachers = {s.name: file_sha1(s.kwargs.get("teacher") or teacher_path(get_task("default")))
                    for s in settings}
        measure(settings, args)
    print("[env_speed] profiling the frozen default step ...", flush=True)
    profile = profile_step(args)
    report = {
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {"platform": platform.platform(), "cpu": cpu_name(),
                    "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "threads": THREADS,
                    "native_bfloat16": has_native_bfloat16(torch.device("cpu")),
                    "onednn_primitive_cache_capacity":
                        os.environ.get(ONEDNN_CACHE_ENV, "default (1024)"),
                    "load_before": load_before,
                    "load_after": [round(x, 2) for x in os.getloadavg()]},
        "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup,
        "target_steps_per_s": TARGET_STEPS_PER_S,
        "settings": [{"name": s.name, "kwargs": s.kwargs, "note": s.note, "threads": s.threads,
                      "teacher_sha1": teachers[s.name], **s.result}
                     for s in settings],
        "skipped": skipped,
        "profile": profile,
    }
    best = max((s for s in settings if s.kwargs["task"] == "default" and is_new_random(s)),
               key=lambda s: s.result["steps_per_s_median"], default=None)
    report["best_default_frozen"] = best and {"setting": best.name,
                                              "steps_per_s": best.result["steps_per_s_median"]}
    report["meets_target"] = best and best.result["steps_per_s_median"] >= TARGET_STEPS_PER_S
    write_outputs(args.out, "env_speed", report, write_markdown, plot)
    return report


if __name__ == "__main__":
    main()
