"""One cell of the comparison: search -> slice -> fine-tune -> evaluate -> record."""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from .spec import (
    DATA_TARGETS, DEFAULT_DATA_ROOT, DYNAMICS_KEYS, ENV_ID, ENV_SEED, FINETUNE_CADENCE, METHODS,
    Method, cell_key,
)

_TEACHER_QUALITY: dict[str, dict[str, float]] = {}
_INCEPTION: list = []  # the FID Inception, loaded once per worker process


def fid_inception():
    """The verified FID Inception weights (``load_fid_inception``), loaded on first use."""
    from gan_prune_env.evaluation import load_fid_inception

    if not _INCEPTION:
        _INCEPTION.append(load_fid_inception())
    return _INCEPTION[0]


def env_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    method = METHODS[spec["method"]]
    kwargs: dict[str, Any] = {"task": spec["task"], "budget_g": spec["budget"],
                              "seed": ENV_SEED, "device": "cpu"}
    if spec.get("teacher"):
        kwargs["teacher"] = spec["teacher"]
    if method.supernet:
        kwargs["supernet"] = spec["supernet"]
    kwargs.update(method.env)
    kwargs.update(spec.get("env") or {})  # --env: checked not to clash with the method's
    return kwargs


def _numbers(mapping: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in mapping.items() if isinstance(v, (int, float))}


def _round_list(values: list[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def recipe_config(steps: int, recipe: dict[str, Any] | None = None):
    """The project's fine-tuning recipe (``FinetuneConfig`` defaults) with ``steps`` steps, the
    ``recipe`` changes and the comparison's checkpoint/logging cadence."""
    from gan_prune_env.finetune import FinetuneConfig

    return FinetuneConfig(**{**FINETUNE_CADENCE, **(recipe or {}), "steps": steps})


RECIPE_BEFORE_FIELD = DATA_TARGETS
"""What a record written before one of these ``FinetuneConfig`` fields existed was fine-tuned
with, where today's default is no longer that behaviour: the data-target methods' recipe,
which pins exactly those fields. Every other field a record lacks was added with a default
that kept the behaviour: today's default."""


def effective_recipe(finetune: dict[str, Any], task: str) -> dict[str, Any]:
    """What a recipe (a record's ``config.finetune``, or :func:`recipe_dict` of a config) does
    on ``task``: the fields added after the record was written at the values it ran with
    (:data:`RECIPE_BEFORE_FIELD`), the "auto" choices resolved for the task's family, in JSON
    types. Two cells ran the same recipe exactly when these are equal; a field no longer known
    is kept, so it differs."""
    from dataclasses import fields

    from gan_prune_env.finetune import FinetuneConfig

    names = {f.name for f in fields(FinetuneConfig)}
    full = {**recipe_dict(FinetuneConfig()), **RECIPE_BEFORE_FIELD, **finetune}
    config = FinetuneConfig(**{k: v for k, v in full.items() if k in names})
    unknown = {k: v for k, v in full.items() if k not in names}
    return {**recipe_dict(config.resolved(_task_family(task))), **unknown}


def _task_family(task: str) -> str:
    return builtin_task(task).family


@functools.lru_cache(maxsize=None)
def builtin_task(task: str):
    """A built-in task's ``TaskConfig`` (family, networks), without needing its images."""
    from gan_prune_env.tasks import DATA_ENV, get_task

    return get_task(task, data_root=os.environ.get(DATA_ENV, str(DEFAULT_DATA_ROOT)))


def recipe_changes(record: dict[str, Any], against_method: bool = True) -> dict[str, Any]:
    """The fields in which a cell's recipe differs from the one its method runs today without
    ``--recipe`` (or, with ``against_method=False``, from the ``FinetuneConfig`` defaults),
    steps aside: how to label a variant, whatever the defaults of its day."""
    ran = effective_recipe(record["config"]["finetune"], record["task"])
    changes = METHODS[record["method"]].recipe if against_method else {}
    today = effective_recipe(recipe_dict(recipe_config(ran["steps"], changes)), record["task"])
    return {k: v for k, v in ran.items() if k != "steps" and today.get(k) != v}


def recipe_dict(config) -> dict[str, Any]:
    """A ``FinetuneConfig`` as its record stores it (JSON types)."""
    from gan_prune_env.config import to_dict

    return json.loads(json.dumps(to_dict(config)))


def finetune_sliced(pair, env, config, work_dir: str | Path, seed: int) -> float:
    """Fine-tune a sliced pair (``agents.run.artifacts.PrunedPair``) in place with ``config``
    (``finetune_pair``; the env gives the task, the objective and the pool), in a scratch folder
    under ``work_dir`` that is deleted afterwards. Returns the wall time in seconds."""
    from agents.run.finetune_ranks import finetune_sliced_pair

    t0 = time.perf_counter()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    ft_dir = Path(tempfile.mkdtemp(prefix="ft_", dir=work))
    try:
        finetune_sliced_pair(pair, env, config, ft_dir, seed, "cpu", progress=False)
    finally:
        shutil.rmtree(ft_dir, ignore_errors=True)
    return time.perf_counter() - t0


def evaluate_sliced(pair, task_name: str, task, n_images: int, fid: bool = True
                    ) -> tuple[dict[str, float], dict[str, float]]:
    """The evaluation protocol (``evaluate_generator``, with the FID Inception unless ``fid`` is
    False) of a pair's main generator and of the teacher's, on the first ``n_images`` test
    images. The teacher's numbers are computed once per process and task."""
    from agents.run.artifacts import MAIN

    g_name = MAIN[task.family][0]
    teacher_g, pruned_g = pair.teacher[g_name], pair.networks[g_name]
    quality = evaluate_against_teacher(pruned_g, teacher_g, task, n_images, fid)
    tq_key = f"{task_name}|{n_images}"
    if tq_key not in _TEACHER_QUALITY:
        _TEACHER_QUALITY[tq_key] = evaluate_against_teacher(teacher_g, teacher_g, task,
                                                            n_images, fid)
    return quality, _TEACHER_QUALITY[tq_key]


def evaluate_against_teacher(generator, teacher_g, task, n_images: int, fid: bool = True
                             ) -> dict[str, float]:
    """The cells' evaluation protocol of one generator against the teacher's G: one place, so
    that ``compare_methods.py same-teacher`` reproduces a recorded teacher's numbers exactly."""
    from gan_prune_env.evaluation import evaluate_generator

    return _numbers(evaluate_generator(
        generator, task.data, task.family, teacher=teacher_g, device="cpu",
        max_images=n_images, progress=False, fid_weights=fid_inception() if fid else None))


def separable_student(pair, env, budget: float, seed: int, kind: str,
                      source: str | None = None, width: float = 1.0, importance: str = "l1"
                      ) -> dict[str, Any]:
    """Replace the pair's main G by the widest separable U-Net within ``budget`` of the
    teacher's G MACs: GAN Compression's block type at the cell's budget. ``kind`` (a
    ``Method.student``) sets its weights: ``"separable"`` and ``"pruned_separable"`` as a run's
    ``student`` does (``agents.run.artifacts.use_student``: fresh at ``seed``, or the separable
    G of the checkpoint ``source`` narrowed by ``importance``, ``Method.student_importance``;
    ``width``, ``Method.student_width``);
    ``"factorised"``, the teacher's: the teacher
    sliced to the student's widths (the env's channel ranking, as uniform pruning slices) and
    each conv factorised into its separable form (``factorised_unet``, middle norms calibrated
    on the env's calibration images). Returns the record's ``config.student``."""
    import torch

    from agents.run.artifacts import MAIN, use_student
    from gan_prune_env.checkpoint import embedded_configs
    from gan_prune_env.models import factorised_unet
    from gan_prune_env.pruning import slice_model
    from gan_prune_env.pruning.macs import count_macs
    from gan_prune_env.students import separable_config, widest_separable

    task = env.game.task
    g_name, config = MAIN[task.family][0], task.generator
    if kind != "factorised":
        use_student(pair, task, kind, budget, seed, source, width, importance)
        student = {"kind": kind, "ngf": pair.generator_config.ngf}
        if kind == "pruned_separable":
            student["source"] = {"ngf": embedded_configs(source)[0].ngf,
                                 "sha1": file_sha1(source)}
            student["importance"] = importance
        return student
    example = torch.zeros(1, *pair.input_shape[g_name])
    ngf = widest_separable(config, budget * count_macs(pair.teacher[g_name], example),
                           example).ngf
    space = env.game.spaces["generator"]
    source_net = slice_model(pair.teacher[g_name], space, space.num_channels * ngf // config.ngf)
    pair.networks[g_name] = factorised_unet(source_net, env.game.calibration_inputs)
    pair.generator_config = separable_config(config, ngf)
    pair.kept.pop(g_name)
    return {"kind": kind, "ngf": ngf}


def method_recipe(method: Method, spec: dict[str, Any]) -> dict[str, Any]:
    """The cell's recipe changes: the method's own, overridden by the run's (``--recipe``, or a
    recipe-curve variant), which the record keeps under ``recipe``."""
    return {**method.recipe, **(spec.get("recipe") or {})}


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Search, slice, fine-tune, evaluate one cell; returns its JSON record."""
    import torch

    from agents import AGENT_CLASSES
    from agents.base import SearchTracker
    from agents.run.artifacts import MAIN, compute_table, reinitialize, save_pruned, slice_pair
    from agents.run.config import ScreenConfig
    from agents.run.screen import screen, screen_recipe
    from gan_prune_env.config import to_dict
    from gan_prune_env.envs import make_parallel_env
    from gan_prune_env.latency import measure_latencies
    from gan_prune_env.tasks import teacher_path

    torch.set_num_threads(spec.get("threads", 1))
    started = time.time()
    method, seed = METHODS[spec["method"]], spec["seed"]
    ft_config = recipe_config(spec["finetune_steps"], method_recipe(method, spec))
    if ft_config.prune_stages > 1 and (method.reinit or method.student
                                       or method.slice_from != "teacher"):
        raise ValueError(f"{spec['method']}: prune_stages > 1 narrows the teacher's weights in "
                         "stages; it does not apply to a scratch student or a supernet slice")
    torch.manual_seed(seed)
    np.random.seed(seed)
    kwargs = env_kwargs(spec)
    env = make_parallel_env(ENV_ID, **kwargs)
    task = env.game.task

    agent = AGENT_CLASSES[method.agent]({"seed": seed, **method.params})
    tracker = SearchTracker()
    t0 = time.perf_counter()
    agent.learn(env, spec["rounds"], tracker)
    del tracker.history[spec["rounds"]:]  # an algorithm may overshoot its last rollout
    search_s = time.perf_counter() - t0
    agent.close()
    best = tracker.best
    if best is None:
        raise RuntimeError(f"{cell_key(spec['task'], spec['budget'], spec['method'], seed)}: "
                           "the search evaluated no architecture")
    t0, screened = time.perf_counter(), None
    screen_steps = method.screen_steps or ScreenConfig().distill_steps
    if method.screen:
        best, screened = screen(env, tracker.history, method.screen,
                                screen_recipe(ft_config, screen_steps), seed,
                                Path(spec["work_dir"]), slice_from=method.slice_from,
                                score=method.screen_score)
    screen_s = time.perf_counter() - t0

    pair = slice_pair(env, best, "cpu", method.slice_from)
    if method.reinit:
        reinitialize(pair, seed, method.reinit)
    student = (separable_student(pair, env, spec["budget"], seed, method.student,
                                 spec.get("separable_student"), method.student_width,
                                 method.student_importance)
               if method.student else None)
    if spec.get("save_generator") and not student:
        raise ValueError(f"{spec['method']}: --save-generator keeps a separable student; this "
                         "method has none")
    finetune_s = finetune_sliced(pair, env, ft_config, spec["work_dir"], seed)
    if spec.get("save_generator"):  # the run's pruned.pt format: a run's student can read it
        save_pruned(pair, task, Path(spec["save_generator"]),
                    metadata={"cell": cell_key(spec["task"], spec["budget"], spec["method"],
                                               seed)})

    t0 = time.perf_counter()
    g_name = MAIN[task.family][0]
    teacher_g, pruned_g = pair.teacher[g_name], pair.networks[g_name]
    n_images = spec["eval_images"]
    quality, teacher_quality = evaluate_sliced(pair, spec["task"], task, n_images,
                                               fid=spec.get("fid", True))
    example = torch.zeros(1, *pair.input_shape[g_name])
    latency = measure_latencies([teacher_g, pruned_g], example, spec["latency_runs"], threads=1)
    evaluate_s = time.perf_counter() - t0

    history = tracker.history
    dynamics: dict[str, list] = {}
    for agent_name, keys in DYNAMICS_KEYS.items():
        for key in keys:
            dynamics[key] = _round_list([c.loss_terms[agent_name][key] for c in history])
        dynamics[f"reward_{agent_name}"] = _round_list([c.rewards[agent_name] for c in history])
        dynamics[f"compute_{agent_name}"] = _round_list(
            [c.compute_ratio[agent_name] for c in history])
    dynamics["within_budget"] = [bool(c.within_budget) for c in history]

    return {
        "key": cell_key(spec["task"], spec["budget"], spec["method"], seed),
        "task": spec["task"], "budget": spec["budget"], "method": spec["method"], "seed": seed,
        "rounds": spec["rounds"], "finetune_steps": spec["finetune_steps"],
        "eval_images": n_images, "recipe": spec.get("recipe", {}), "env": spec.get("env", {}),
        "config": {"agent": method.agent, "agent_params": method.params, "env": kwargs,
                   # L_G_ref when the env had to take it from the uniform pair (L1-only reward)
                   "g_reference_patched": (env.game.reference_terms["g_loss"]
                                           if env.game.reference_source == "uniform" else None),
                   "finetune": to_dict(ft_config), "env_seed": ENV_SEED,
                   "slice_from": method.slice_from, **({"student": student} if student else {}),
                   "budget_d": env.config.budget_d, "latency_runs": spec["latency_runs"]},
        "best": {"round": best.round, "within_budget": best.within_budget,
                 "compute_ratio": best.compute_ratio, "rewards": best.rewards,
                 "kept_channels": best.kept_channels},
        **({"screen": {"candidates": method.screen, "steps": screen_steps,
                       "score": method.screen_score, "scores": screened}}
           if screened else {}),
        "compute": compute_table(pair),
        "quality": quality,
        "teacher_quality": teacher_quality,
        "latency_ms": {"teacher": latency[0].as_dict(), "pruned": latency[1].as_dict()},
        "reference_terms": {k: float(v) for k, v in env.game.reference_terms.items()},
        "dynamics": dynamics,
        "timing_s": {"search": search_s, **({"screen": screen_s} if screened else {}),
                     "finetune": finetune_s, "evaluate": evaluate_s,
                     "total": time.time() - started},
        "started_at": _dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "finished_at": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": host_info(),
        "commit": git_commit(), "teacher_sha1": file_sha1(teacher_path(task)),
        **({"supernet_sha1": file_sha1(Path(kwargs["supernet"]))} if "supernet" in kwargs
           else {}),
    }


def git_commit() -> str:
    """HEAD of the project's checkout, ``+dirty`` when tracked files differ from it."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=root).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_name() -> str:
    """The processor's model name: CPU results differ in the last digits between processor
    models (their math kernels differ), so a record says which it ran on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_info(**extra: Any) -> dict[str, Any]:
    """Where a record was measured (versions, processor, cores), with ``extra`` entries."""
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.machine(), "cpu": cpu_name(), "cpus": os.cpu_count(), **extra}


def file_sha1(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


PARENT_POLL_S = 1.0
"""How often a pool worker checks that the process that started it is still alive."""


def _exit_with_parent(parent: int) -> None:
    """Exit this worker once ``parent`` is gone (the worker is re-parented: ``getppid`` changes).

    A pool's workers outlive a parent killed by a signal (``kill``, an out-of-memory kill, a
    closed terminal): they would finish their cell, each hours of a core, and hold the cores
    that the resumed run needs. A resumed run re-runs unfinished cells anyway."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def configure_worker(data_root: str | None) -> None:
    """Set up a process that runs cells: one torch thread, the data root."""
    import torch

    torch.set_num_threads(1)
    if data_root:
        os.environ["GAN_PRUNE_DATA"] = data_root


def pool_worker_init(data_root: str | None) -> None:
    """A pool worker's initializer: :func:`configure_worker`, and exit when the parent dies.
    (Not for the run's own process, which ``nohup`` and ``&`` leave re-parented on purpose.)"""
    configure_worker(data_root)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="exit-with-parent").start()


def run_cells(cells: list[dict[str, Any]], workers: int, data_root: str | None,
              on_record: Callable[[dict[str, Any]], None],
              name: Callable[[dict[str, Any]], str],
              cell_fn: Callable[[dict[str, Any]], dict[str, Any]] = run_cell,
              ray_address: str | None = None) -> list[str]:
    """Run ``cells`` (:func:`run_cell` specs, or those of ``cell_fn``: a module-level function,
    so that worker processes can import it) in ``workers`` processes of one torch thread each,
    handing every finished record to ``on_record`` at once (so results are appended as cells
    finish); a failing cell is reported and skipped. Returns the names of the failed cells.

    With ``ray_address`` the cells are Ray tasks instead (:func:`run_cells_on_ray`): ``"local"``
    starts Ray on this machine with ``workers`` CPUs, anything else is handed to ``ray.init``
    (``"auto"``: the cluster this machine belongs to)."""
    failed: list[str] = []

    def failure(cell: dict[str, Any]) -> None:
        print(f"cell {name(cell)} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        failed.append(name(cell))

    if ray_address is not None:
        run_cells_on_ray(cells, workers, data_root, on_record, failure, cell_fn, ray_address)
        return failed
    if workers <= 1:
        configure_worker(data_root)
        for cell in cells:
            try:
                on_record(cell_fn(cell))
            except Exception:  # report it now, go on with the other cells
                failure(cell)
        return failed
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                             initializer=pool_worker_init, initargs=(data_root,)) as pool:
        futures = {pool.submit(cell_fn, cell): cell for cell in cells}
        for future in as_completed(futures):
            try:
                on_record(future.result())
            except Exception:
                failure(futures[future])
    return failed


def _ray_cell(cell_fn: Callable[[dict[str, Any]], dict[str, Any]], cell: dict[str, Any],
              data_root: str | None) -> dict[str, Any]:
    """One cell inside a Ray worker, set up as a pool worker is (one torch thread, the data)."""
    configure_worker(data_root)
    return cell_fn(cell)


def run_cells_on_ray(cells: list[dict[str, Any]], workers: int, data_root: str | None,
                     on_record: Callable[[dict[str, Any]], None],
                     failure: Callable[[dict[str, Any]], None],
                     cell_fn: Callable[[dict[str, Any]], dict[str, Any]],
                     address: str) -> None:
    """Each cell a Ray task of one CPU, records handed to ``on_record`` as tasks finish.

    Why Ray and not the process pool: the cells of a benchmark are independent and long (a
    fine-tune each), so a cluster runs as many at once as it has CPUs; the same command runs on
    one machine (``address="local"``, ``workers`` CPUs) or on every node of a running cluster
    (``"auto"``). The workers import the cell function by name and read the teachers, data and
    scratch folder by path: on several nodes the checkout, ``$GAN_PRUNE_DATA`` and the output
    folder must be at the same paths on each (a shared file system), as for ``torchrun``.
    Ray's own start-up is the cost (seconds), against minutes a cell.
    """
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        # the workers import the cell function as this process does: with its module path
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
        options = ({"num_cpus": workers} if address == "local" else {"address": address})
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env,
                 **options)
    task = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
    pending = {task.remote(cell_fn, cell, data_root): cell for cell in cells}
    try:
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(done)
            try:
                on_record(ray.get(done))
            except Exception:  # a failed task re-raises here: report it, go on
                failure(cell)
    finally:
        if started_here:
            ray.shutdown()


def add_ray_argument(parser) -> None:
    """The ``--ray [ADDRESS]`` flag of the scripts whose cells :func:`run_cells` runs."""
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="run the cells as Ray tasks (one CPU each) instead of a process "
                             "pool: alone, on this machine with --workers CPUs; with an address "
                             "(e.g. auto), on that running cluster, whose nodes share the "
                             "checkout, data and output paths (needs the [rllib] extra's ray)")


def run_pending(todo: list[dict[str, Any]], workers: int, data_root: str | None,
                on_record: Callable[[dict[str, Any]], None],
                name: Callable[[dict[str, Any]], str], work_dir: str | Path,
                cell_fn: Callable[[dict[str, Any]], dict[str, Any]] = run_cell,
                ray_address: str | None = None) -> bool:
    """:func:`run_cells` on what is left, then remove the scratch ``work_dir`` if it is empty,
    print the wall time and the failed cells (not recorded, so a rerun retries them). True when
    none failed. Each fine-tune deletes its own folder in ``work_dir``; what is left there
    belongs to another run sharing the folder (or to a killed one) and is not touched."""
    began = time.perf_counter()
    failed = (run_cells(todo, workers, data_root, on_record, name, cell_fn, ray_address)
              if todo else [])
    with contextlib.suppress(OSError):  # absent, or not empty: in use by another run
        Path(work_dir).rmdir()
    print(f"run finished in {time.perf_counter() - began:.0f} s wall", flush=True)
    if failed:
        print(f"{len(failed)} cell(s) FAILED (not recorded; rerun to retry): {failed}",
              file=sys.stderr, flush=True)
    return not failed
