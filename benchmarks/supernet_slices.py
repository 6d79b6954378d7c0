"""Is a fine-tune still needed after slicing from a supernet?

For each budget, the uniform architecture (``agents.budget.uniform_actions``, the env's own
action -> channel path) is sliced twice, from the teacher's weights and from the task's
generator supernet (``gan_prune_env.supernet``), BatchNorm statistics re-estimated on the env's
calibration images (as the env scores, and as the pipeline's pre-fine-tune check does), and
scored with the project's evaluation protocol (real FID/KID, PSNR to the target and to the
teacher) on the first ``--eval-images`` test images, **without any fine-tuning**. The report
puts them beside the fine-tuned uniform cells of the frontier (``frontier_<task>.jsonl``:
``uniform`` from the teacher's weights, ``uniform_supernet`` from the supernet's), when present.

Writes ``supernet_slices_<task>.json`` (with the commit and the SHA-1s of teacher and
supernet), ``.md`` and ``.png``; ``--report`` rebuilds the last two from the JSON (after more
frontier cells finished). Example (default task; ~1 min per budget on one core)::

    python -m gan_prune_env.supernet --task default --out runs/supernets/default --resume
    python benchmarks/supernet_slices.py --task default
    python benchmarks/supernet_slices.py --task default --report
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from compare.cells import file_sha1, fid_inception, git_commit
from compare.plots import save_figure, subplots
from compare.spec import DEFAULT_OUT, ENV_ID, ENV_SEED, default_supernet, rel_path
from compare.store import read_records

SOURCES = ("teacher", "supernet")
METRICS = (("fid", "FID", "{:.1f}"), ("psnr_teacher", "PSNR-T", "{:.2f}"),
           ("psnr", "PSNR", "{:.2f}"))
FINETUNED = {"teacher": "uniform", "supernet": "uniform_supernet"}  # frontier methods


def score_slice(budget: float, task: str, supernet: Path | None, eval_images: int,
                teacher: str | None) -> dict[str, float]:
    """The uniform architecture at ``budget``, sliced from the teacher (``supernet`` None) or
    from the supernet, BatchNorm re-estimated, scored without fine-tuning."""
    from agents.base import Candidate
    from agents.budget import uniform_actions
    from agents.run.artifacts import MAIN, recalibrated_generator, slice_pair
    from gan_prune_env.envs import make_parallel_env
    from gan_prune_env.evaluation import evaluate_generator

    kwargs: dict[str, Any] = {"task": task, "budget_g": budget, "seed": ENV_SEED}
    kwargs.update({"teacher": teacher} if teacher else {})
    kwargs.update({"supernet": str(supernet)} if supernet else {})
    env = make_parallel_env(ENV_ID, **kwargs)
    env.reset(seed=0)
    _, rewards, _, _, infos = env.step(uniform_actions(env.game))
    pair = slice_pair(env, Candidate.from_infos(0, infos, rewards), "cpu",
                      "supernet" if supernet else "teacher")
    task = env.game.task
    quality = evaluate_generator(recalibrated_generator(pair, env), task.data, task.family, "test",
                                 teacher=pair.teacher[MAIN[pair.family][0]],
                                 fid_weights=fid_inception(), max_images=eval_images,
                                 progress=False)
    result = {k: float(v) for k, v in quality.items() if isinstance(v, (int, float))}
    result["macs_ratio"] = float(infos["generator"]["compute_ratio"])
    return result


def finetuned(out: Path, task: str) -> dict[tuple[str, float], list[dict[str, Any]]]:
    """The frontier's fine-tuned uniform cells, by (source, budget)."""
    cells: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for record in read_records(out / f"frontier_{task}.jsonl"):
        for source, method in FINETUNED.items():
            if record["method"] == method:
                cells.setdefault((source, record["budget"]), []).append(record["quality"])
    return cells


def _cell(values: list[float], fmt: str) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def report(data: dict[str, Any], tuned: dict, out: Path, task: str) -> Path:
    lines = [f"# Slices of the `{task}` teacher and of its supernet, before fine-tuning\n",
             (f"Uniform architecture per budget, BatchNorm re-estimated, first "
              f"{data['eval_images']} test images; commit {data['commit'][:12]}; teacher SHA-1 "
              f"{data['teacher_sha1']}; supernet `{data['supernet']}` SHA-1 "
              f"{data['supernet_sha1']}. Fine-tuned: the frontier's `uniform` (from the "
              "teacher's weights) and `uniform_supernet` cells, 3000 steps, mean ± std over "
              "seeds. Regenerate: the docstring of `benchmarks/supernet_slices.py`.\n"),
             "| budget | sliced from | fine-tuned | " + " | ".join(h for _, h, _ in METRICS)
             + " |", "|---|---|---|" + "---|" * len(METRICS)]
    for budget in data["budgets"]:
        for source in SOURCES:
            row = data["slices"][f"{budget:g}|{source}"]
            lines.append(f"| {budget:.0%} | {source} | no | " + " | ".join(
                fmt.format(row[m]) for m, _, fmt in METRICS) + " |")
            runs = tuned.get((source, budget), [])
            if runs:
                lines.append(f"| {budget:.0%} | {source} | yes (n={len(runs)}) | " + " | ".join(
                    _cell([q[m] for q in runs], fmt) for m, _, fmt in METRICS) + " |")
    path = out / f"supernet_slices_{task}.md"
    path.write_text("\n".join(lines) + "\n")
    _plot(data, tuned, out / f"supernet_slices_{task}.png")
    return path


def _plot(data: dict[str, Any], tuned: dict, path: Path) -> None:
    fig, axes = subplots(1, 2, figsize=(10, 4))
    for ax, (metric, label, _) in zip(axes, METRICS[:2]):
        for source, marker in zip(SOURCES, ("o", "s")):
            budgets = data["budgets"]
            ax.plot(budgets, [data["slices"][f"{b:g}|{source}"][metric] for b in budgets],
                    marker=marker, linestyle="--", label=f"{source} slice, no fine-tune")
            points = [(b, np.mean([q[metric] for q in tuned[(source, b)]]))
                      for b in budgets if tuned.get((source, b))]
            if points:
                ax.plot(*zip(*points), marker=marker, label=f"{source} slice, fine-tuned")
        ax.set_xscale("log")
        ax.set_xlabel("G budget (kept MACs)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="default")
    parser.add_argument("--teacher", default=None, help="teacher of a task that ships none")
    parser.add_argument("--supernet", default=None,
                        help="supernet file (default runs/supernets/TASK/supernet.pt)")
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.25, 0.1, 0.05])
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--report", action="store_true",
                        help="rebuild the report from the JSON file (e.g. after more frontier "
                             "cells finished) without scoring again")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results = out / f"supernet_slices_{args.task}.json"
    if args.report:
        if not results.is_file():
            raise SystemExit(f"error: {results} not found; run without --report first")
        data = json.loads(results.read_text())
        print(f"wrote {report(data, finetuned(out, args.task), out, args.task)}")
        return 0
    import torch

    from gan_prune_env.envs import make_parallel_env
    from gan_prune_env.tasks import teacher_path

    torch.set_num_threads(1)
    supernet = Path(args.supernet) if args.supernet else default_supernet(args.task)
    if not supernet.is_file():
        raise SystemExit(f"error: no supernet at {supernet}; train it with "
                         f"`python -m gan_prune_env.supernet --task {args.task} --out "
                         f"{supernet.parent} --resume`")
    env_kwargs = {"task": args.task, **({"teacher": args.teacher} if args.teacher else {})}
    task = make_parallel_env(ENV_ID, **env_kwargs).game.task
    data = {"task": args.task, "budgets": args.budgets, "eval_images": args.eval_images,
            "commit": git_commit(), "teacher_sha1": file_sha1(teacher_path(task)),
            "supernet": rel_path(supernet), "supernet_sha1": file_sha1(supernet), "slices": {}}
    for budget in args.budgets:
        for source in SOURCES:
            data["slices"][f"{budget:g}|{source}"] = score_slice(
                budget, args.task, supernet if source == "supernet" else None,
                args.eval_images, args.teacher)
            print(budget, source, {m: round(data["slices"][f"{budget:g}|{source}"][m], 2)
                                   for m, _, _ in METRICS}, flush=True)
    results.write_text(json.dumps(data, indent=1))
    print(f"wrote {report(data, finetuned(out, args.task), out, args.task)}")
    return 0 if all(not math.isnan(v["fid"]) for v in data["slices"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
