"""Does bfloat16 scoring pay architectures as float32 scoring does, and how much faster is it?

The env's ``precision="bfloat16"`` runs every scoring pass under ``torch.autocast``. That is
only worth offering if it ranks architectures as the float32 reference does: a researcher
who trains on bfloat16 rewards must be optimising the same thing. For each task, the same
random architecture pairs (keep ratios uniform in ``[min_keep, 1]`` per group of G and of D)
are scored by two games that differ only in ``precision``; reported per task:

* the agreement of the loss terms of both agents' rewards (``-L_G / L_G_ref`` and
  ``-|L_D - L_D_ref| / L_D_ref``; the compute terms are exact in both): the largest absolute
  difference (also as a share of the float32 terms' range over the pairs), and Spearman's
  and Kendall's rank correlations between the precisions, with 95% bootstrap intervals over
  the pairs;
* the wall time of one evaluation in each precision, measured interleaved pair by pair (so
  background load moves both alike), median and the ratio of medians;
* whether this CPU has native bfloat16 arithmetic (AMX or AVX512-BF16, as oneDNN reports it):
  without it bfloat16 is emulated and slower.

Outputs (``--out``, default ``benchmarks/results``): ``env_precision.json``,
``env_precision.md`` and ``env_precision.png`` (bfloat16 against float32 loss terms), with the
commit and each teacher's SHA-1.

    python benchmarks/env_precision.py                        # default task, 64 pairs
    GAN_PRUNE_DATA=../shared/data python benchmarks/env_precision.py --tasks default facades \\
        --facades-teacher runs/compare_facades_teacher/teacher.pt
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compare.cells import file_sha1, git_commit, host_info
from compare.plots import save_figure, subplots
from compare.report import write_outputs
from gan_prune_env.devices import has_native_bfloat16
from gan_prune_env.envs import AGENTS, EnvConfig, PruningGame
from gan_prune_env.tasks import teacher_path
from reward_fidelity import CORRELATIONS, bootstrap_ci

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PRECISIONS = ("float32", "bfloat16")
THREADS = 2
LOSS_TERMS = {"generator": "-L_G / L_G_ref", "discriminator": "-|L_D - L_D_ref| / L_D_ref"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["default"],
                        help="built-in tasks to score (facades needs $GAN_PRUNE_DATA)")
    parser.add_argument("--pairs", type=int, default=64, help="random architecture pairs a task")
    parser.add_argument("--facades-teacher", default=None,
                        help="teacher checkpoint of the facades task (it ships none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random pairs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.pairs < 4:
        parser.error(f"--pairs must be >= 4 (rank correlations need a few), got {args.pairs}")
    if "facades" in args.tasks and not args.facades_teacher:
        parser.error("facades ships no teacher: pass --facades-teacher FILE "
                     "(python benchmarks/compare_methods.py teacher makes one)")
    return args


def random_pairs(game: PruningGame, pairs: int, seed: int) -> list[dict[str, np.ndarray]]:
    """``pairs`` architecture pairs, each group's keep ratio uniform in [min_keep, 1]."""
    rng = np.random.default_rng(seed)
    low = game.config.min_keep
    return [{agent: rng.uniform(low, 1.0, game.num_groups(agent)) for agent in AGENTS}
            for _ in range(pairs)]


def score_task(task: str, teacher: str | None, pairs: int, seed: int) -> dict[str, Any]:
    """Both precisions' loss terms and evaluation times on the same pairs, interleaved."""
    games = {p: PruningGame(EnvConfig(task=task, teacher=teacher, precision=p, cache_size=0))
             for p in PRECISIONS}
    architectures = random_pairs(games["float32"], pairs, seed)
    terms = {p: {agent: [] for agent in AGENTS} for p in PRECISIONS}
    seconds = {p: [] for p in PRECISIONS}
    for ratios in [architectures[0], *architectures]:  # the first pair once more: warm-up
        for precision, game in games.items():
            start = time.perf_counter()
            result = game.play_round(ratios)
            seconds[precision].append(time.perf_counter() - start)
            for agent in AGENTS:
                terms[precision][agent].append(result.reward_terms[agent]["loss"])
    for precision in PRECISIONS:  # drop the warm-up
        seconds[precision] = seconds[precision][1:]
        terms[precision] = {a: v[1:] for a, v in terms[precision].items()}
    return {
        "task": task, "teacher_sha1": file_sha1(teacher or teacher_path(games["float32"].task)),
        "pairs": pairs, "loss_terms": terms,
        "agreement": {agent: agreement(np.array(terms["float32"][agent]),
                                       np.array(terms["bfloat16"][agent])) for agent in AGENTS},
        "seconds_median": {p: statistics.median(v) for p, v in seconds.items()},
        "speedup": statistics.median(seconds["float32"]) / statistics.median(seconds["bfloat16"]),
    }


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """How far ``other`` is from ``reference``, and whether it ranks the pairs alike."""
    difference = np.abs(other - reference)
    out: dict[str, Any] = {
        "max_abs_diff": float(difference.max()),
        # relative to the spread of the pairs, not to each value: D's term is 0 at the teacher's D
        "max_diff_share_of_range": float(difference.max() / np.ptp(reference)),
        "reference_range": [float(reference.min()), float(reference.max())],
    }
    for name, statistic in CORRELATIONS.items():
        out[name] = statistic(reference, other)
        out[f"{name}_ci"] = list(bootstrap_ci(reference, other, statistic))
    return out


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    machine = report["machine"]
    lines = [
        "# bfloat16 against float32 scoring", "",
        f"{report['created']}, commit {report['commit']}, {machine['cpus']} CPU cores "
        f"({machine['cpu']}), native bfloat16: {machine['native_bfloat16']}, torch "
        f"{machine['torch']} with {THREADS} threads. The same random architecture pairs scored "
        "by two games that differ only in `precision`; loss terms of the rewards (the compute "
        "terms are exact in both); 95% bootstrap intervals over the pairs; evaluation times "
        "interleaved pair by pair, medians.", "",
        "| task | agent's loss term | pairs | float32 range | max abs diff | share of range | "
        "Spearman | Kendall | ms float32 | ms bfloat16 | speed-up | teacher SHA-1 |",
        "|---|---|---:|---|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for task in report["tasks"]:
        for agent in AGENTS:
            a = task["agreement"][agent]
            low, high = a["reference_range"]
            lines.append(
                f"| {task['task']} | {_escaped(LOSS_TERMS[agent])} | {task['pairs']} | "
                f"{low:.3f} to {high:.3f} | {a['max_abs_diff']:.2e} | {a['max_diff_share_of_range']:.2%} | "
                f"{_corr(a, 'spearman')} | {_corr(a, 'kendall')} | "
                f"{1e3 * task['seconds_median']['float32']:.1f} | "
                f"{1e3 * task['seconds_median']['bfloat16']:.1f} | {task['speedup']:.2f}x | "
                f"{task['teacher_sha1'][:12]} |")
    path.write_text("\n".join(lines) + "\n")


def _escaped(cell: str) -> str:
    """``cell`` with its pipes escaped, for a Markdown table."""
    return cell.replace("|", "\\|")


def _corr(agreement_: dict[str, Any], name: str) -> str:
    low, high = agreement_[f"{name}_ci"]
    return f"{agreement_[name]:.4f} [{low:.4f}, {high:.4f}]"


def plot(path: Path, report: dict[str, Any]) -> None:
    tasks = report["tasks"]
    fig, axes = subplots(len(tasks), len(AGENTS), figsize=(4.2 * len(AGENTS), 3.8 * len(tasks)),
                         squeeze=False)
    for row, task in zip(axes, tasks):
        for ax, agent in zip(row, AGENTS):
            x = np.array(task["loss_terms"]["float32"][agent])
            y = np.array(task["loss_terms"]["bfloat16"][agent])
            ax.scatter(x, y, s=12)
            ax.plot([x.min(), x.max()], [x.min(), x.max()], color="grey", linewidth=0.8)
            ax.set_xlabel(f"float32 {LOSS_TERMS[agent]}")
            ax.set_ylabel("bfloat16")
            ax.set_title(f"{task['task']}, {agent}: Spearman "
                         f"{task['agreement'][agent]['spearman']:.4f}", fontsize=9)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(THREADS)
    teachers = {"facades": args.facades_teacher}
    tasks = []
    for task in args.tasks:
        print(f"[env_precision] {task}: {args.pairs} pairs in both precisions ...", flush=True)
        tasks.append(score_task(task, teachers.get(task), args.pairs, args.seed))
    report = {
        "created": _dt.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
        "machine": host_info(native_bfloat16=has_native_bfloat16(torch.device("cpu"))),
        "seed": args.seed, "tasks": tasks,
    }
    write_outputs(args.out, "env_precision", report, write_markdown, plot)
    return report


if __name__ == "__main__":
    main()
