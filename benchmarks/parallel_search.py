"""Random search scored serially and on Ray actors: speed-up, overhead, same results.

The default task at a 10% G budget, frozen weights, the cache off (every sample is scored),
``--rounds`` samples of ``RandomSearchAgent`` (seed 0): in this process (``serial``), then on 1
and 2 Ray actors (``workers``; one env and one torch thread each). Reported per setting: wall
time, the actors' start-up (time to make their envs, measured apart), the time per scored pair
after start-up, the speed-up over serial, and whether the recorded search equals the serial one
pair for pair. Writes ``parallel_search.json``, ``.md`` and ``.png`` (with the commit and the
teacher's hash) under ``--out``::

    python benchmarks/parallel_search.py                 # 400 rounds, ~2 minutes on 2 idle cores
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

import gan_prune_env  # noqa: F401  (registers the ids)
from agents import AGENT_CLASSES
from agents.base import SearchTracker
from compare.cells import file_sha1, git_commit
from compare.plots import save_figure, subplots
from gan_prune_env.envs import make_parallel_env
from gan_prune_env.tasks import teacher_path

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
ENV = {"budget_g": 0.1, "cache_size": 0}


def startup_seconds(workers: int) -> float:
    """Seconds for ``workers`` Ray actors to make their envs (what a search pays once)."""
    import ray

    from agents.parallel import EnvScorer
    from gan_prune_env.config import to_dict

    env = make_parallel_env("Pix2PixPrune-v0", **ENV)
    actor = ray.remote(num_cpus=1)(EnvScorer)
    began = time.perf_counter()
    scorers = [actor.remote(to_dict(env.config)) for _ in range(workers)]
    ray.get([s.score.remote([]) for s in scorers])
    seconds = time.perf_counter() - began
    for scorer in scorers:
        ray.kill(scorer)
    return seconds


def search(workers: int | None, rounds: int) -> tuple[float, SearchTracker]:
    env = make_parallel_env("Pix2PixPrune-v0", **ENV)
    agent = AGENT_CLASSES["random"]({"seed": 0, "workers": workers})
    tracker = SearchTracker()
    began = time.perf_counter()
    agent.learn(env, rounds, tracker)
    seconds = time.perf_counter() - began
    agent.close()
    return seconds, tracker


def same_search(a: SearchTracker, b: SearchTracker) -> bool:
    return len(a.history) == len(b.history) and all(
        x.rewards == y.rewards and x.kept_channels == y.kept_channels
        for x, y in zip(a.history, b.history))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    import ray

    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    load_before = round(os.getloadavg()[0], 2)
    serial_s, serial = search(None, args.rounds)
    rows = [{"setting": "serial (this process, 1 thread)", "workers": 0, "wall_s": serial_s,
             "startup_s": 0.0, "ms_per_pair": 1000 * serial_s / args.rounds, "same": True}]
    for workers in (1, 2):
        startup = startup_seconds(workers)
        wall, tracker = search(workers, args.rounds)
        rows.append({"setting": f"Ray, {workers} actor(s)", "workers": workers, "wall_s": wall,
                     "startup_s": startup,
                     "ms_per_pair": 1000 * max(wall - startup, 0.0) / args.rounds,
                     "same": same_search(serial, tracker)})
    ray.shutdown()
    for row in rows:
        row["speedup"] = serial_s / row["wall_s"]
    one = next(r for r in rows if r["workers"] == 1)
    report = {
        "created": _dt.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
        "teacher_sha1": file_sha1(teacher_path(make_parallel_env("Pix2PixPrune-v0").game.task)),
        "rounds": args.rounds, "env": ENV, "cpu_count": os.cpu_count(),
        "load_before": load_before, "load_after": round(os.getloadavg()[0], 2), "rows": rows,
        "overhead_ms_per_pair": one["ms_per_pair"] - rows[0]["ms_per_pair"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel_search.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Random search on Ray actors", "",
             f"{report['created']}, commit {report['commit'][:10]}, teacher "
             f"{report['teacher_sha1'][:12]}, {args.rounds} pairs (default task, G budget 10%, "
             f"cache off), {report['cpu_count']} cores, load {load_before} -> "
             f"{report['load_after']}.", "",
             "| setting | wall s | actor start-up s | ms per pair after start-up | speed-up "
             "over serial | same search as serial |", "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['setting']} | {row['wall_s']:.1f} | {row['startup_s']:.1f} | "
                     f"{row['ms_per_pair']:.1f} | {row['speedup']:.2f}x | {row['same']} |")
    lines += ["", f"Overhead of Ray per scored pair (1 actor against serial, start-up excluded): "
              f"{report['overhead_ms_per_pair']:+.1f} ms."]
    (args.out / "parallel_search.md").write_text("\n".join(lines) + "\n")
    _plot(rows, args.out / "parallel_search.png")
    print("\n".join(lines))
    return report


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    fig, ax = subplots(figsize=(6, 2.8))
    labels = [r["setting"] for r in rows]
    ax.barh(labels, [r["wall_s"] - r["startup_s"] for r in rows], label="scoring")
    ax.barh(labels, [r["startup_s"] for r in rows],
            left=[r["wall_s"] - r["startup_s"] for r in rows], label="actor start-up")
    ax.set_xlabel("wall time (s)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
    sys.exit(0)
