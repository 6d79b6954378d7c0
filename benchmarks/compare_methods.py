"""Does the local-density method (MGGC) beat the baselines at equal compute?

Every method gets the SAME search length (env rounds) and the SAME fine-tuning recipe; each
(task, budget, method, seed) cell runs

    search (``rounds`` env rounds) -> best pair within budget -> slice G and D physically
    -> fine-tune (``finetune_pair``, one ``FinetuneConfig`` for all) -> evaluate on the test
    split (PSNR/SSIM to ground truth and to the teacher, proxy FD; never called FID)
    -> MACs / params of G and D (``compute_table``) -> CPU latency of the sliced G, timed
    interleaved with the teacher G in the same call (``measure_latencies``)

and records the search's per-round G and D loss terms (the tracker history) for the
pruning-dynamics analysis. Each finished cell is appended to a JSONL file at once (one line,
flushed and fsynced), so a run can be stopped and resumed: finished cells are skipped.

Methods (``--methods``):

=================  ==============================================================================
``uniform``        every group at the largest uniform keep ratio (L1-norm channel ranking)
``random``         random per-group ratios rescaled onto the budget, best of the search
``ppo``            SB3 PPO, alternating genG / genD single-agent views
``mggc``           the paper-style genG/genD hypernetworks on the local-density reward (ours)
``mggc_no_peer``   ablation: ``peer_feedback=False`` (the peer's feedback is zeroed)
``mggc_no_density`` ablation: env objective ``lambda_kde=0, lambda_adv=0`` (L1 distillation
                   only in the reward; fine-tuning unchanged)
``mggc_g_alone``   ablation: ``prune_discriminator=False`` (genG alone, D kept full; the env's
                   ``budget_d`` is 1.0 so that a full D counts as within budget)
=================  ==============================================================================

Tasks (``--tasks``): ``default`` (procedural label->photo 64x64, the shipped teacher) and
``facades`` (labels->photo 128x128, ``unet_128`` ngf 32 / PatchGAN ndf 64, a teacher trained by
the ``teacher`` sub-command). Budgets (``--budgets``) are the env's ``budget_g`` (kept-MACs ratio
of the generator); ``budget_d`` stays at the env default (0.5). The env's data-selection seed is
fixed (0) so that every cell sees the same task; ``--seeds`` seed the agent, the global RNGs and
the fine-tuning.

Facades teacher recipe (``teacher`` sub-command, defaults): the built-in ``facades`` task's
Pix2Pix recipe (Adam 2e-4, betas 0.5/0.999, vanilla GAN + 100 * L1, load 143 / random crop 128,
flips) with ``n_steps=1500`` at batch size 1 (about 3.75 epochs of the 400 training pairs;
``epochs`` unset), linear LR decay over the last 500 steps, seed 0, one CPU thread: about 10-15
minutes on 2 shared CPU cores. A deliberately small, fast teacher, far from the reference
200-epoch one; it is the network to compress, not a result.

Examples::

    python benchmarks/compare_methods.py run --quick                       # smoke (about 1 min)
    python benchmarks/compare_methods.py run --tasks default --budgets 0.25 0.10 \\
        --seeds 0 1 2 --rounds 200 --finetune-steps 300 --workers 2
    python benchmarks/compare_methods.py teacher --out runs/compare_facades_teacher
    python benchmarks/compare_methods.py run --tasks facades --budgets 0.25 \\
        --methods uniform mggc --facades-teacher runs/compare_facades_teacher/teacher.pt
    python benchmarks/compare_methods.py report        # JSONL -> compare_methods.md + plots

Outputs (``--out``, default ``benchmarks/results``): ``compare_methods.jsonl`` (one record per
cell), ``compare_methods.md`` (tables, winners, dynamics statistics),
``compare_quality_vs_macs.png`` and ``compare_dynamics.png``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results"
RESULTS_FILE = "compare_methods.jsonl"
REPORT_FILE = "compare_methods.md"
QUALITY_PLOT = "compare_quality_vs_macs.png"
DYNAMICS_PLOT = "compare_dynamics.png"
DEFAULT_FACADES_TEACHER = ROOT / "runs" / "compare_facades_teacher" / "teacher.pt"
DEFAULT_DATA_ROOT = Path("/work/shared/data")
ENV_ID = "Pix2PixPrune-v0"
ENV_SEED = 0  # selects pool / evaluation images: the same task for every cell

# The fine-tuning recipe of every cell: the project's default run recipe (configs/default.yaml)
# with the step count from the command line (lr decay is clamped to the step count).
FINETUNE_BASE = {"batch_size": 8, "lr": 2e-4, "lambda_task": 100.0, "lambda_distill": 10.0,
                 "lr_decay_steps": 300, "lambda_density": 0.0, "save_every": 100_000,
                 "log_every": 50, "image_every": 0}


@dataclass(frozen=True)
class Method:
    agent: str
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    label: str = ""


METHODS: dict[str, Method] = {
    "uniform": Method("uniform", label="uniform L1-norm"),
    "random": Method("random", label="random search"),
    "ppo": Method("ppo", label="SB3 PPO"),
    "mggc": Method("mggc", label="MGGC (ours)"),
    "mggc_no_peer": Method("mggc", {"peer_feedback": False}, label="MGGC, no peer feedback"),
    "mggc_no_density": Method("mggc", env={"objective": {"lambda_kde": 0.0, "lambda_adv": 0.0}},
                              label="MGGC, L1-only reward"),
    "mggc_g_alone": Method("mggc", {"prune_discriminator": False}, env={"budget_d": 1.0},
                           label="MGGC, G alone (full D)"),
}
BASELINES = ("uniform", "random", "ppo")
TASKS = ("default", "facades")
DYNAMICS_KEYS = {"generator": ("g_loss", "g_adv", "g_kde", "g_rec"),
                 "discriminator": ("d_loss", "d_real", "d_fake")}
# metric key, header, higher is better, format
METRICS = [
    ("g_macs_m", "G MACs (M)", False, "{:.2f}"),
    ("g_params_m", "G params (M)", False, "{:.3f}"),
    ("psnr", "PSNR (dB)", True, "{:.2f}"),
    ("psnr_teacher", "PSNR-T (dB)", True, "{:.2f}"),
    ("ssim", "SSIM", True, "{:.3f}"),
    ("proxy_fd", "proxy FD", False, "{:.3f}"),
    ("latency_ms", "G latency (ms)", False, "{:.2f}"),
]
QUALITY = ("psnr", "psnr_teacher", "ssim", "proxy_fd")


def quick_settings() -> dict[str, Any]:
    return {"tasks": ["default"], "budgets": [0.25], "methods": ["uniform", "mggc"],
            "seeds": [0], "rounds": 8, "finetune_steps": 4, "eval_images": 16,
            "latency_runs": 5}


# ----------------------------------------------------------------------------------------------
# one cell
# ----------------------------------------------------------------------------------------------
_TEACHER_QUALITY: dict[str, dict[str, float]] = {}


def cell_key(task: str, budget: float, method: str, seed: int) -> str:
    return f"{task}|{budget:g}|{method}|{seed}"


def env_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    method = METHODS[spec["method"]]
    kwargs: dict[str, Any] = {"task": spec["task"], "budget_g": spec["budget"],
                              "seed": ENV_SEED, "device": "cpu"}
    if spec["task"] == "facades":
        kwargs["teacher"] = spec["facades_teacher"]
    kwargs.update(method.env)
    return kwargs


def _numbers(mapping: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in mapping.items() if isinstance(v, (int, float))}


def _round_list(values: list[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Search, slice, fine-tune, evaluate one cell; returns its JSON record."""
    import torch

    from agents import AGENT_CLASSES
    from agents.base import SearchTracker
    from agents.run.artifacts import MAIN, compute_table, slice_pair
    from gan_prune_env.config import to_dict
    from gan_prune_env.data import build_dataset
    from gan_prune_env.envs import make_parallel_env
    from gan_prune_env.evaluation import evaluate_paired
    from gan_prune_env.finetune import FinetuneConfig, finetune_pair
    from gan_prune_env.latency import measure_latencies

    torch.set_num_threads(spec.get("threads", 1))
    started = time.time()
    method, seed = METHODS[spec["method"]], spec["seed"]
    torch.manual_seed(seed)
    np.random.seed(seed)
    kwargs = env_kwargs(spec)
    env = make_parallel_env(ENV_ID, **kwargs)
    task = env.game.prepared.task

    agent = AGENT_CLASSES[method.agent]({"seed": seed, **method.params})
    tracker = SearchTracker()
    t0 = time.perf_counter()
    agent.learn(env, spec["rounds"], tracker)
    del tracker.history[spec["rounds"]:]  # an algorithm may overshoot its last rollout
    search_s = time.perf_counter() - t0
    if hasattr(agent, "close"):
        agent.close()
    best = tracker.best
    if best is None:
        raise RuntimeError(f"{cell_key(spec['task'], spec['budget'], spec['method'], seed)}: "
                           "the search evaluated no architecture")

    pair = slice_pair(env, best, "cpu")
    ft_config = FinetuneConfig(**{**FINETUNE_BASE, "steps": spec["finetune_steps"]})
    t0 = time.perf_counter()
    work = Path(spec["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    ft_dir = Path(tempfile.mkdtemp(prefix="ft_", dir=work))
    try:
        finetune_pair(pair.networks, pair.teacher, task, ft_config, ft_dir, kept=pair.kept,
                      input_shape=pair.input_shape, seed=seed, device="cpu", progress=False,
                      objective=env.game.objective, pool=env.game.prepared.train_pool)
    finally:
        shutil.rmtree(ft_dir, ignore_errors=True)
    finetune_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    g_name = MAIN[task.family][0]
    teacher_g, pruned_g = pair.teacher[g_name], pair.networks[g_name]
    dataset = build_dataset(task.data, "test")
    n_images = spec["eval_images"]
    quality = _numbers(evaluate_paired(pruned_g, dataset, teacher=teacher_g, device="cpu",
                                       max_images=n_images, progress=False))
    tq_key = f"{spec['task']}|{n_images}"
    if tq_key not in _TEACHER_QUALITY:
        _TEACHER_QUALITY[tq_key] = _numbers(evaluate_paired(
            teacher_g, dataset, teacher=teacher_g, device="cpu", max_images=n_images,
            progress=False))
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
        "eval_images": n_images,
        "config": {"agent": method.agent, "agent_params": method.params, "env": kwargs,
                   "finetune": to_dict(ft_config), "env_seed": ENV_SEED,
                   "budget_d": env.config.budget_d, "latency_runs": spec["latency_runs"]},
        "best": {"round": best.round, "within_budget": best.within_budget,
                 "compute_ratio": best.compute_ratio, "rewards": best.rewards,
                 "kept_channels": best.kept_channels},
        "compute": compute_table(pair),
        "quality": quality,
        "teacher_quality": _TEACHER_QUALITY[tq_key],
        "latency_ms": {"teacher": latency[0].as_dict(), "pruned": latency[1].as_dict()},
        "reference_terms": {k: float(v) for k, v in env.game.reference_terms.items()},
        "dynamics": dynamics,
        "timing_s": {"search": search_s, "finetune": finetune_s, "evaluate": evaluate_s,
                     "total": time.time() - started},
        "started_at": _dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "finished_at": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "machine": platform.machine(), "cpus": os.cpu_count()},
    }


def _worker_init(data_root: str | None) -> None:
    import torch

    torch.set_num_threads(1)
    if data_root:
        os.environ["GAN_PRUNE_DATA"] = data_root


# ----------------------------------------------------------------------------------------------
# JSONL store
# ----------------------------------------------------------------------------------------------
def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (interrupted write) is ignored."""
    if not path.is_file():
        return []
    records = []
    with path.open() as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"warning: {path}:{number} is not valid JSON (interrupted write?); "
                      "ignored", file=sys.stderr)
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# ----------------------------------------------------------------------------------------------
# run
# ----------------------------------------------------------------------------------------------
def plan_cells(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seeds outermost, so a stopped run leaves complete tables for its first seeds."""
    cells = []
    for seed in args.seeds:
        for task in args.tasks:
            for budget in args.budgets:
                for method in args.methods:
                    cells.append({
                        "task": task, "budget": float(budget), "method": method,
                        "seed": int(seed), "rounds": args.rounds,
                        "finetune_steps": args.finetune_steps,
                        "eval_images": args.eval_images, "latency_runs": args.latency_runs,
                        "facades_teacher": args.facades_teacher,
                        "work_dir": str(args.work_dir), "threads": 1})
    return cells


def _check_protocol(done: dict[str, dict], cell: dict[str, Any]) -> bool:
    """True when the cell is finished; a finished cell of another protocol is an error."""
    record = done.get(cell_key(cell["task"], cell["budget"], cell["method"], cell["seed"]))
    if record is None:
        return False
    for key in ("rounds", "finetune_steps", "eval_images"):
        if record[key] != cell[key]:
            raise SystemExit(
                f"error: {record['key']} was run with {key}={record[key]}, this run asks for "
                f"{cell[key]}; use another --results file to compare protocols")
    return True


def command_run(args: argparse.Namespace) -> int:
    if args.quick:
        for key, value in quick_settings().items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    defaults = {"tasks": ["default"], "budgets": [0.25, 0.10], "methods": list(METHODS),
                "seeds": [0, 1, 2], "rounds": 200, "finetune_steps": 300, "eval_images": 100,
                "latency_runs": 30}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"error: unknown method(s) {unknown}; choose from {list(METHODS)}")
    bad = [t for t in args.tasks if t not in TASKS]
    if bad:
        raise SystemExit(f"error: unknown task(s) {bad}; choose from {list(TASKS)}")
    if args.rounds < 1 or args.finetune_steps < 0:
        raise SystemExit("error: --rounds must be >= 1 and --finetune-steps >= 0")
    out = Path(args.out)
    results = Path(args.results) if args.results else out / RESULTS_FILE
    args.work_dir = Path(args.work_dir) if args.work_dir else out / ".compare_work"
    data_root = _data_root(args)
    if "facades" in args.tasks:
        args.facades_teacher = str(_facades_teacher(args))
    else:
        args.facades_teacher = None

    done = {r["key"]: r for r in read_records(results)}
    cells = plan_cells(args)
    todo = [c for c in cells if not _check_protocol(done, c)]
    print(f"{len(cells)} cells, {len(cells) - len(todo)} already in {results} (skipped), "
          f"{len(todo)} to run with {args.workers} worker(s)", flush=True)
    began = time.perf_counter()
    if todo:
        if args.workers <= 1:
            _worker_init(data_root)
            for cell in todo:
                _finish(results, run_cell(cell), began)
        else:
            context = get_context("spawn")
            with ProcessPoolExecutor(args.workers, mp_context=context, initializer=_worker_init,
                                     initargs=(data_root,)) as pool:
                futures = {pool.submit(run_cell, c): c for c in todo}
                for future in as_completed(futures):
                    _finish(results, future.result(), began)
        shutil.rmtree(args.work_dir, ignore_errors=True)
    print(f"run finished in {time.perf_counter() - began:.0f} s wall", flush=True)
    if not args.no_report:
        make_report(results, out)
    return 0


def _finish(results: Path, record: dict[str, Any], began: float) -> None:
    append_record(results, record)
    t = record["timing_s"]
    print(f"[{time.perf_counter() - began:6.0f} s] {record['key']}: PSNR "
          f"{record['quality']['psnr']:.2f}, G MACs ratio "
          f"{record['compute']['generator/pruned']['macs'] / record['compute']['generator/teacher']['macs']:.3f}"
          f" (search {t['search']:.0f} s, fine-tune {t['finetune']:.0f} s, eval "
          f"{t['evaluate']:.0f} s)", flush=True)


def _data_root(args: argparse.Namespace) -> str | None:
    root = args.data_root or os.environ.get("GAN_PRUNE_DATA")
    if root is None and DEFAULT_DATA_ROOT.is_dir():
        root = str(DEFAULT_DATA_ROOT)
    if root:
        os.environ["GAN_PRUNE_DATA"] = root
    return root


def _facades_teacher(args: argparse.Namespace) -> Path:
    path = Path(args.facades_teacher) if args.facades_teacher else DEFAULT_FACADES_TEACHER
    if not path.is_file():
        raise SystemExit(f"error: facades teacher not found at {path}; train one with "
                         f"`python {Path(__file__).name} teacher --out {path.parent}` or pass "
                         "--facades-teacher PATH")
    if not os.environ.get("GAN_PRUNE_DATA"):
        raise SystemExit("error: task facades needs $GAN_PRUNE_DATA (or --data-root), the "
                         "folder that holds facades/")
    return path.resolve()


# ----------------------------------------------------------------------------------------------
# teacher
# ----------------------------------------------------------------------------------------------
def teacher_overrides(args: argparse.Namespace) -> list[str]:
    return ["epochs:null", f"n_steps:{args.steps}", f"batch_size:{args.batch_size}",
            f"lr_decay_steps:{args.decay_steps}", f"seed:{args.seed}", "num_threads:1",
            "image_every:500", "save_every:250", f"progress:{str(args.progress).lower()}"]


def command_teacher(args: argparse.Namespace) -> int:
    _data_root(args)
    if not os.environ.get("GAN_PRUNE_DATA"):
        raise SystemExit("error: set $GAN_PRUNE_DATA or --data-root (folder holding facades/)")
    from gan_prune_env.teacher.loop import train_teacher
    from gan_prune_env.teacher.train import build_config

    config = build_config("facades", overrides=teacher_overrides(args))
    began = time.perf_counter()
    path = train_teacher(config, args.out, resume=True)
    print(f"{path} ({time.perf_counter() - began:.0f} s)")
    return 0


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def cell_metrics(record: dict[str, Any]) -> dict[str, float]:
    c, q, lat = record["compute"], record["quality"], record["latency_ms"]
    teacher_ms, pruned_ms = lat["teacher"]["median_ms"], lat["pruned"]["median_ms"]
    return {
        "g_macs_m": c["generator/pruned"]["macs"] / 1e6,
        "g_params_m": c["generator/pruned"]["params"] / 1e6,
        "d_macs_m": c["discriminator/pruned"]["macs"] / 1e6,
        "d_params_m": c["discriminator/pruned"]["params"] / 1e6,
        "g_ratio": c["generator/pruned"]["macs"] / c["generator/teacher"]["macs"],
        "d_ratio": c["discriminator/pruned"]["macs"] / c["discriminator/teacher"]["macs"],
        "psnr": q["psnr"], "psnr_teacher": q["psnr_teacher"], "ssim": q["ssim"],
        "ssim_teacher": q["ssim_teacher"], "proxy_fd": q["proxy_fd"],
        "latency_ms": pruned_ms, "speedup": teacher_ms / pruned_ms,
        "within_budget": float(record["best"]["within_budget"]),
        "search_s": record["timing_s"]["search"], "finetune_s": record["timing_s"]["finetune"],
        "total_s": record["timing_s"]["total"],
    }


@dataclass
class Stat:
    mean: float
    std: float
    lo: float
    hi: float
    n: int
    values: list[float]

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        a = np.asarray(values, dtype=float)
        std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
        return cls(float(a.mean()), std, float(a.min()), float(a.max()), len(a), list(values))

    def pm(self, fmt: str) -> str:
        return f"{fmt.format(self.mean)} ± {fmt.format(self.std)}"

    def range(self, fmt: str) -> str:
        return f"{fmt.format(self.lo)}–{fmt.format(self.hi)}"


def aggregate(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Stat]]:
    groups: dict[tuple, list[dict[str, float]]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["budget"], r["method"])].append(cell_metrics(r))
    return {key: {m: Stat.of([row[m] for row in rows]) for m in rows[0]}
            for key, rows in groups.items()}


def _ordered(items, order):
    rank = {v: i for i, v in enumerate(order)}
    return sorted(items, key=lambda v: rank.get(v, len(rank)))


def _by_seed(records, task, budget, method, metric) -> dict[int, float]:
    return {r["seed"]: cell_metrics(r)[metric] for r in records
            if r["task"] == task and r["budget"] == budget and r["method"] == method}


def winners_section(records, stats, task, budgets, methods) -> list[str]:
    lines = []
    for budget in budgets:
        present = [m for m in methods if (task, budget, m) in stats]
        if len(present) < 2:
            continue
        lines.append(f"**Budget {budget:.0%}** (G MACs target):")
        for metric, header, higher, fmt in METRICS:
            if metric not in QUALITY:
                continue
            ranked = sorted(present, key=lambda m: stats[(task, budget, m)][metric].mean,
                            reverse=higher)
            win, second = ranked[0], ranked[1]
            sw, ss = stats[(task, budget, win)][metric], stats[(task, budget, second)][metric]
            margin = abs(sw.mean - ss.mean)
            spread = max(sw.std, ss.std)
            if sw.n > 1 and ss.n > 1:
                verdict = "beyond" if margin > spread else "within"
                verdict = f"{verdict} the larger seed std ({fmt.format(spread)})"
            else:
                verdict = "one seed: no spread to compare with"
            lines.append(f"- {header}: **{win}** {sw.pm(fmt)} (seeds {sw.range(fmt)}), runner-up "
                         f"{second} {ss.pm(fmt)}; margin {fmt.format(margin)}, {verdict}.")
        if "mggc" in present:
            base = [m for m in BASELINES if m in present]
            for metric, header, higher, fmt in METRICS:
                if metric not in ("psnr", "psnr_teacher") or not base:
                    continue
                best_base = max(base, key=lambda m: stats[(task, budget, m)][metric].mean
                                * (1 if higher else -1))
                ours = _by_seed(records, task, budget, "mggc", metric)
                theirs = _by_seed(records, task, budget, best_base, metric)
                common = sorted(set(ours) & set(theirs))
                if not common:
                    continue
                diffs = Stat.of([ours[s] - theirs[s] for s in common])
                sign = "beats" if (diffs.mean > 0) == higher and diffs.mean != 0 else \
                    "does NOT beat"
                lines.append(f"- mggc vs best baseline by {header} ({best_base}): mggc {sign} it;"
                             f" paired-by-seed difference {diffs.pm('{:+.2f}')} "
                             f"(min {diffs.lo:+.2f}, max {diffs.hi:+.2f}, n={diffs.n}).")
        lines.append("")
    return lines


def dynamics_stats(record: dict[str, Any]) -> dict[str, float]:
    """Stability of the search's per-round losses over its second half (raw rounds)."""
    d, ref = record["dynamics"], record["reference_terms"]
    half = len(d["g_loss"]) // 2
    g = np.asarray(d["g_loss"][half:]) / ref["g_loss"]
    dl = np.asarray(d["d_loss"][half:])
    rec = np.asarray(d["g_rec"][half:])
    within = np.asarray(d["within_budget"][half:], dtype=float)
    diff = np.abs(np.diff(g)) if len(g) > 1 else np.zeros(1)
    return {"g_norm_mean": float(g.mean()), "g_norm_std": float(g.std()),
            "g_norm_tv": float(diff.mean()), "g_rec_std": float(rec.std()),
            "d_dev_mean": float(np.mean(np.abs(dl - ref["d_loss"]) / ref["d_loss"])),
            "d_std": float(dl.std()), "within_frac": float(within.mean())}


DYN_COLUMNS = [("g_norm_mean", "L_G/L_G,ref mean", "{:.3f}"),
               ("g_norm_std", "L_G/ref std", "{:.3f}"),
               ("g_norm_tv", "mean abs round-to-round change of L_G/ref", "{:.3f}"),
               ("g_rec_std", "L1-to-teacher std", "{:.4f}"),
               ("d_dev_mean", "abs(L_D - ref)/ref mean", "{:.3f}"),
               ("d_std", "L_D std", "{:.4f}"),
               ("within_frac", "rounds within budget", "{:.2f}")]


def dynamics_section(records, task, budgets, methods) -> list[str]:
    lines = []
    for budget in budgets:
        rows = []
        for method in methods:
            recs = [r for r in records if (r["task"], r["budget"], r["method"]) ==
                    (task, budget, method)]
            if not recs:
                continue
            per_seed = [dynamics_stats(r) for r in recs]
            cells = [Stat.of([s[k] for s in per_seed]).pm(fmt) for k, _, fmt in DYN_COLUMNS]
            rows.append(f"| {method} | {len(recs)} | " + " | ".join(cells) + " |")
        if rows:
            lines.append(f"Budget {budget:.0%}, second half of the search (rounds "
                         f"{len(recs[0]['dynamics']['g_loss']) // 2}+), per-seed statistic, "
                         "mean ± std over seeds:\n")
            lines.append("| method | seeds | " + " | ".join(h for _, h, _ in DYN_COLUMNS) + " |")
            lines.append("|---|---|" + "---|" * len(DYN_COLUMNS))
            lines += rows
            lines.append("")
    return lines


def make_report(results: Path, out: Path) -> Path:
    records = read_records(results)
    out.mkdir(parents=True, exist_ok=True)
    if not records:
        raise SystemExit(f"error: no records in {results}")
    stats = aggregate(records)
    tasks = _ordered({r["task"] for r in records}, TASKS)
    methods_all = _ordered({r["method"] for r in records}, list(METHODS))
    lines = ["# Does the local-density method beat the baselines at equal compute?", "",
             f"Generated by `benchmarks/compare_methods.py report` from `{_rel(results)}` "
             f"({len(records)} cells) on {_dt.date.today().isoformat()}.", "",
             "Protocol: every method searches for the same number of env rounds, the best pair "
             "within both budgets (best G reward) is sliced physically, fine-tuned with the same "
             "recipe, and evaluated on the test split. Quality: PSNR/SSIM to the ground truth, "
             "PSNR-T = PSNR to the teacher's outputs, proxy FD = Fréchet distance in the "
             "project's fixed random-feature space (**not FID**; lower is better). MACs: field "
             "convention (transposed convs at output resolution), one image at the task's "
             "resolution. Latency: CPU, batch 1, 1 thread, median of interleaved runs with the "
             "teacher in the same call, on a shared 2-core machine (noisy; compare within a "
             "row's speed-up). Values: mean ± sample std over seeds; min–max in the detail "
             "tables.", ""]
    first = records[0]
    ft = first["config"]["finetune"]
    lines.append(f"Search rounds: {sorted({r['rounds'] for r in records})}; fine-tuning steps: "
                 f"{sorted({r['finetune_steps'] for r in records})} (batch {ft['batch_size']}, "
                 f"Adam lr {ft['lr']}, L1-to-target x{ft['lambda_task']:g}, distillation "
                 f"x{ft['lambda_distill']:g}, linear decay over the last "
                 f"{min(ft['lr_decay_steps'], ft['steps'])} steps); test images evaluated: "
                 f"{sorted({r['eval_images'] for r in records})}; D budget: env default 0.5 "
                 "(1.0 for mggc_g_alone, whose D stays full).")
    lines.append("")
    for task in tasks:
        recs = [r for r in records if r["task"] == task]
        budgets = sorted({r["budget"] for r in recs}, reverse=True)
        methods = _ordered({r["method"] for r in recs}, list(METHODS))
        teacher = recs[0]
        tq, tc = teacher["teacher_quality"], teacher["compute"]
        lines.append(f"## Task `{task}`\n")
        lines.append(f"Teacher: G {tc['generator/teacher']['macs'] / 1e6:.2f} M MACs, "
                     f"{tc['generator/teacher']['params'] / 1e6:.3f} M params; D "
                     f"{tc['discriminator/teacher']['macs'] / 1e6:.2f} M MACs, "
                     f"{tc['discriminator/teacher']['params'] / 1e6:.3f} M params; PSNR "
                     f"{tq['psnr']:.2f} dB, SSIM {tq['ssim']:.3f}, proxy FD {tq['proxy_fd']:.3f};"
                     f" G latency {np.median([r['latency_ms']['teacher']['median_ms'] for r in recs]):.2f}"
                     " ms (median over cells).\n")
        header = ["method"] + [f"{h} @{b:.0%}" for b in budgets for _, h, _, _ in METRICS]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|---" * len(header) + "|")
        flagged = False
        for method in methods:
            missed = any(stats[(task, b, method)]["within_budget"].mean < 1 for b in budgets
                         if (task, b, method) in stats)
            flagged |= missed
            row = [method + (" †" if missed else "")]
            for b in budgets:
                s = stats.get((task, b, method))
                for metric, _, _, fmt in METRICS:
                    row.append(s[metric].pm(fmt) if s else "—")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        if flagged:
            lines.append("† in at least one seed the search found no pair within both budgets, "
                         "so the pair closest to the G budget was used (see 'best within "
                         "budget' below); its MACs may exceed the budget.\n")
        lines.append("### Winners\n")
        lines += winners_section(records, stats, task, budgets, methods)
        lines.append("### Details per budget (min–max over seeds)\n")
        for b in budgets:
            lines.append(f"Budget {b:.0%}:\n")
            lines.append("| method | seeds | G MACs ratio | D MACs ratio | D params (M) | PSNR | "
                         "PSNR-T | SSIM | proxy FD | G speed-up vs teacher | best within "
                         "budget | search s | fine-tune s |")
            lines.append("|---" * 13 + "|")
            for method in methods:
                s = stats.get((task, b, method))
                if not s:
                    continue
                lines.append(
                    f"| {method} | {s['psnr'].n} | {s['g_ratio'].pm('{:.3f}')} | "
                    f"{s['d_ratio'].pm('{:.3f}')} | {s['d_params_m'].pm('{:.3f}')} | "
                    f"{s['psnr'].range('{:.2f}')} | {s['psnr_teacher'].range('{:.2f}')} | "
                    f"{s['ssim'].range('{:.3f}')} | {s['proxy_fd'].range('{:.3f}')} | "
                    f"{s['speedup'].pm('{:.2f}')}x | {s['within_budget'].mean:.0%} | "
                    f"{s['search_s'].mean:.0f} | {s['finetune_s'].mean:.0f} |")
            lines.append("")
        lines.append("### Pruning dynamics during the search\n")
        lines.append("Per-round loss terms of the architecture pairs the search evaluated "
                     "(frozen weights, `inner_steps=0`: each round scores a proposed pair). "
                     "L_G is normalised by the unpruned pair's value. For `mggc_g_alone` the "
                     "judge of L_G and L_D is the full D, for the others the pruned D, so "
                     "their adversarial terms are not on the same scale; L1-to-teacher "
                     "(`g_rec`) does not depend on D. Lower std / change = steadier search.\n")
        lines += dynamics_section(records, task, budgets, methods)
    lines.append("## Wall time\n")
    starts = [_dt.datetime.fromisoformat(r["started_at"]) for r in records]
    ends = [_dt.datetime.fromisoformat(r["finished_at"]) for r in records]
    cell_sum = sum(r["timing_s"]["total"] for r in records)
    lines.append(f"{len(records)} cells; sum of cell times {cell_sum / 60:.1f} min; first start "
                 f"to last finish {(max(ends) - min(starts)).total_seconds() / 60:.1f} min "
                 "(includes pauses between resumed runs). Per cell, mean: search "
                 f"{np.mean([r['timing_s']['search'] for r in records]):.0f} s, fine-tune "
                 f"{np.mean([r['timing_s']['finetune'] for r in records]):.0f} s, evaluation "
                 f"{np.mean([r['timing_s']['evaluate'] for r in records]):.0f} s.\n")
    lines.append(f"Plots: `{QUALITY_PLOT}` (quality vs G MACs), `{DYNAMICS_PLOT}` (search "
                 "dynamics, mggc vs mggc_g_alone).\n")
    lines.append("Regenerate: `python benchmarks/compare_methods.py report"
                 + ("" if results == out / RESULTS_FILE else f" --results {_rel(results)}")
                 + ("" if out == DEFAULT_OUT else f" --out {_rel(out)}") + "`\n")
    path = out / REPORT_FILE
    path.write_text("\n".join(lines))
    plot_quality(records, stats, out / QUALITY_PLOT, methods_all)
    plot_dynamics(records, out / DYNAMICS_PLOT)
    print(f"wrote {path}, {out / QUALITY_PLOT}, {out / DYNAMICS_PLOT}")
    return path


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


MARKERS = {"uniform": "s", "random": "^", "ppo": "v", "mggc": "o", "mggc_no_peer": "P",
           "mggc_no_density": "X", "mggc_g_alone": "D"}
COLORS = {"uniform": "tab:gray", "random": "tab:olive", "ppo": "tab:purple", "mggc": "tab:red",
          "mggc_no_peer": "tab:orange", "mggc_no_density": "tab:blue",
          "mggc_g_alone": "tab:green"}


def plot_quality(records, stats, path: Path, methods: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = _ordered({r["task"] for r in records}, TASKS)
    panels = [("psnr", "PSNR to ground truth (dB)"), ("psnr_teacher", "PSNR to teacher (dB)"),
              ("proxy_fd", "proxy FD (lower is better)")]
    fig, axes = plt.subplots(len(tasks), len(panels), figsize=(5.2 * len(panels),
                                                              4.2 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        teacher = next(r for r in records if r["task"] == task)
        t_macs = teacher["compute"]["generator/teacher"]["macs"] / 1e6
        budgets = sorted({r["budget"] for r in records if r["task"] == task})
        for col, (metric, label) in enumerate(panels):
            ax = axes[row][col]
            n_methods = len(methods)
            for i, method in enumerate(methods):
                xs, ys, xe, ye = [], [], [], []
                for b in budgets:
                    s = stats.get((task, b, method))
                    if not s:
                        continue
                    # a small multiplicative offset per method keeps the error bars apart
                    xs.append(s["g_macs_m"].mean * (1 + 0.025 * (i - (n_methods - 1) / 2)))
                    xe.append(s["g_macs_m"].std)
                    ys.append(s[metric].mean)
                    ye.append(s[metric].std)
                if xs:
                    ax.errorbar(xs, ys, xerr=xe, yerr=ye, marker=MARKERS.get(method, "o"),
                                color=COLORS.get(method), linestyle="-" if method == "mggc"
                                else ":", linewidth=1, capsize=3, markersize=6, label=method)
            tq = teacher["teacher_quality"].get(metric)
            if tq is not None and math.isfinite(tq):
                ax.axhline(tq, color="black", linewidth=0.8, linestyle="--",
                           label=f"teacher ({t_macs:.1f} M MACs)")
            for b in budgets:
                ax.axvline(b * t_macs, color="0.85", linewidth=0.8, zorder=0)
            ax.set_xlabel("generator MACs (M), field convention")
            ax.set_ylabel(label)
            ax.set_title(f"{task}: {label.split(' (')[0]}")
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle("Quality vs generator MACs after equal search + fine-tuning "
                 "(mean ± std over seeds; grey lines: budgets)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_dynamics(records, path: Path, methods=("mggc", "mggc_g_alone")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r["task"], r["budget"]) for r in records if r["method"] in methods},
                  key=lambda k: (TASKS.index(k[0]) if k[0] in TASKS else 9, -k[1]))
    panels = [("g_norm", "L_G / L_G,ref (genG's loss)"),
              ("g_rec", "L1 to teacher (g_rec, D-independent)"),
              ("d_loss", "L_D (judge's loss); dashed: L_D,ref"),
              ("compute_generator", "G kept-MACs ratio")]
    fig, axes = plt.subplots(max(len(keys), 1), len(panels),
                             figsize=(4.6 * len(panels), 3.3 * max(len(keys), 1)), squeeze=False)
    for row, (task, budget) in enumerate(keys):
        for method in methods:
            recs = [r for r in records if (r["task"], r["budget"], r["method"]) ==
                    (task, budget, method)]
            if not recs:
                continue
            n = min(len(r["dynamics"]["g_loss"]) for r in recs)
            window = max(1, n // 25)
            for col, (key, label) in enumerate(panels):
                series = []
                for r in recs:
                    d = r["dynamics"]
                    v = np.asarray(d["g_loss"][:n]) / r["reference_terms"]["g_loss"] \
                        if key == "g_norm" else np.asarray(d[key][:n], dtype=float)
                    series.append(_smooth(v, window))
                arr = np.stack(series)
                x = np.arange(1, n + 1)
                ax = axes[row][col]
                color = COLORS.get(method)
                ax.plot(x, arr.mean(0), color=color, label=f"{method} (n={len(recs)})")
                ax.fill_between(x, arr.min(0), arr.max(0), color=color, alpha=0.18)
                if key == "d_loss":
                    ax.axhline(recs[0]["reference_terms"]["d_loss"], color="black",
                               linestyle="--", linewidth=0.8)
                if key == "compute_generator":
                    ax.axhline(budget, color="black", linestyle="--", linewidth=0.8)
                ax.set_title(f"{task} @{budget:.0%}: {label}", fontsize=9)
                ax.set_xlabel("search round")
                ax.grid(alpha=0.3)
        axes[row][0].legend(fontsize=8)
    fig.suptitle("Search dynamics: mean over seeds (line), min–max over seeds (band); each "
                 "seed smoothed by a moving average of n/25 rounds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def command_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    results = Path(args.results) if args.results else out / RESULTS_FILE
    make_report(results, out)
    return 0


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) cells, then write the report")
    run.add_argument("--tasks", nargs="+", default=None, help=f"of {list(TASKS)}")
    run.add_argument("--budgets", nargs="+", type=float, default=None,
                     help="generator kept-MACs budgets (env budget_g), default 0.25 0.10")
    run.add_argument("--methods", nargs="+", default=None, help=f"of {list(METHODS)}")
    run.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2")
    run.add_argument("--rounds", type=int, default=None, help="search rounds (default 200)")
    run.add_argument("--finetune-steps", type=int, default=None, help="default 300")
    run.add_argument("--eval-images", type=int, default=None, help="test images (default 100)")
    run.add_argument("--latency-runs", type=int, default=None, help="default 30")
    run.add_argument("--workers", type=int, default=1,
                     help="cells run in parallel processes (1 torch thread each)")
    run.add_argument("--quick", action="store_true",
                     help="smoke preset: default task, 25%%, uniform+mggc, seed 0, 8 rounds, "
                          "4 fine-tuning steps, 16 test images (explicit flags win)")
    run.add_argument("--facades-teacher", default=None,
                     help=f"facades teacher checkpoint (default {_rel(DEFAULT_FACADES_TEACHER)})")
    run.add_argument("--data-root", default=None,
                     help="folder holding facades/ (default $GAN_PRUNE_DATA)")
    run.add_argument("--out", default=str(DEFAULT_OUT), help="report folder")
    run.add_argument("--results", default=None, help=f"JSONL file (default OUT/{RESULTS_FILE})")
    run.add_argument("--work-dir", default=None, help="scratch folder for fine-tuning states")
    run.add_argument("--no-report", action="store_true", help="skip the report at the end")

    rep = sub.add_parser("report", help="aggregate the JSONL into markdown and plots")
    rep.add_argument("--out", default=str(DEFAULT_OUT))
    rep.add_argument("--results", default=None)

    teach = sub.add_parser("teacher", help="train the small facades teacher (resumable)")
    teach.add_argument("--out", default=str(DEFAULT_FACADES_TEACHER.parent))
    teach.add_argument("--steps", type=int, default=1500)
    teach.add_argument("--batch-size", type=int, default=1)
    teach.add_argument("--decay-steps", type=int, default=500)
    teach.add_argument("--seed", type=int, default=0)
    teach.add_argument("--data-root", default=None)
    teach.add_argument("--progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return {"run": command_run, "report": command_report,
            "teacher": command_teacher}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
