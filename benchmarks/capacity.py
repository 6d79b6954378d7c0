"""Recipe or capacity? FID against the generator's MACs for the compressed students and for
thin networks trained on the data exactly as the teacher was, with no teacher at all.

When the pruned student misses the teacher's FID at some budget, two explanations compete: the
recipe does not get out of the network what it could hold, or no network of that width holds
it. The second is measured directly: train the teacher's own architecture at a smaller width
(``--set generator.ngf:N``) with the teacher's own recipe, steps and schedule, and score it with
the same protocol. If the pruned student scores like that thin network, the recipe reaches what
the width allows; if it scores better, distillation and the teacher's weights carry what
training alone does not.

Inputs: thin teacher run folders (``--thin``, any seeds; runs of the same width are pooled), and
comparison cells (``compare_methods.py`` records) named as ``LABEL=FILE:METHOD`` series (only
cells that ran their method's recipe of today, at the recipe's 3000 steps). Writes
``capacity_<name>.json`` (the thin runs' scores, cached by the teacher file's SHA-1, with the
commit), ``capacity_<name>.md`` and ``capacity_<name>.png``. Regenerate the default task's
report (a thin run takes 12-18 min on one thread; its test curve is ``teacher_curve.py``'s;
the published seed-0 runs are named without ``_seed0``)::

    for ngf in 5 8 11; do for seed in 0 1 2; do
      OMP_NUM_THREADS=1 python -m gan_prune_env.train_teacher --task default \\
          --out runs/teachers/default_4800_ngf${ngf}_seed$seed --set generator.ngf:$ngf \\
          --set seed:$seed --set n_steps:4800 --set lr_decay_steps:2400 --set save_every:600 \\
          --set keep_train_states:100 --set num_threads:1
    done; done
    python benchmarks/capacity.py --name default_4800 --thin runs/teachers/default_4800_ngf*
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare.cells import file_sha1, git_commit, recipe_changes
from compare.plots import save_figure, subplots
from compare.report import Stat
from compare.spec import DEFAULT_OUT, RECIPE_STEPS, TASKS, rel_path
from compare.store import read_records
from teacher_curve import score

DEFAULT_SERIES = (
    "pruning, 4800-step teacher=teacher_targets/teacher_4800.jsonl:uniform_teacher_targets",
    "scratch student, 4800-step teacher=teacher_targets/teacher_4800.jsonl:"
    "scratch_teacher_targets",
    "pruning, shipped 1200-step teacher=frontier_default.jsonl:uniform_teacher_targets",
    "scratch student, shipped teacher=frontier_default.jsonl:scratch_teacher_targets",
)
"""The default task's series, files relative to ``--out``: the students of the 4800-step teacher
and of the shipped one (the same seed and recipe, stopped at 1200 steps with its own decay)."""


@dataclass(frozen=True)
class Point:
    """One series at one size: G's kept MACs ratio and FID over its seeds."""

    series: str
    macs_ratio: float
    fid: Stat
    teacher_fid: float | None = None
    teacher_sha1: str | None = None


def parse_series(text: str, out: Path) -> tuple[str, Path, str]:
    """``LABEL=FILE:METHOD`` -> (label, file, method); a relative file is under ``out``."""
    label, sep, rest = text.partition("=")
    file, sep2, method = rest.rpartition(":")
    if not (sep and sep2 and label and file and method):
        raise SystemExit(f"error: --series {text!r} is not LABEL=FILE:METHOD")
    path = Path(file)
    return label, path if path.is_absolute() else out / path, method


def series_points(label: str, path: Path, method: str, task: str) -> list[Point]:
    """The series' cells grouped by budget: mean G MACs ratio and FID over seeds."""
    if not path.is_file():
        raise SystemExit(f"error: series {label!r}: no results file {path}")
    by_budget: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for record in read_records(path):
        if (record.get("task"), record.get("method")) != (task, method) or "quality" not in record:
            continue
        if record["finetune_steps"] != RECIPE_STEPS or recipe_changes(record):
            continue  # another recipe: a variant, not this series
        by_budget[record["budget"]].append(record)
    if not by_budget:
        raise SystemExit(f"error: series {label!r}: no {method} cells of task {task!r} with "
                         f"today's recipe in {path}")
    teachers = {r["teacher_sha1"] for records in by_budget.values() for r in records}
    if len(teachers) > 1:
        raise SystemExit(f"error: series {label!r}: its cells in {path} distil from "
                         f"{len(teachers)} teachers (SHA-1 {sorted(t[:10] for t in teachers)}); "
                         "a series is one teacher's: keep each teacher's cells in its own file")
    points = []
    for budget, records in sorted(by_budget.items()):
        ratios = [r["compute"]["generator/pruned"]["macs"] / r["compute"]["generator/teacher"]
                  ["macs"] for r in records]
        points.append(Point(label, sum(ratios) / len(ratios),
                            Stat.of([r["quality"]["fid"] for r in records]),
                            records[0]["teacher_quality"]["fid"], records[0]["teacher_sha1"]))
    return points


def generator_macs(generator, task) -> int:
    """G's MACs (the field's convention) on one input of ``task`` (a ``TaskConfig``)."""
    import torch

    from gan_prune_env.pruning.macs import count_macs

    size = task.image_size
    return count_macs(generator, torch.zeros(1, task.generator.input_nc, size, size))


def thin_scores(runs: list[Path], task, eval_images: int, cache: dict[str, Any]) -> list[str]:
    """Score and MACs of each run's final ``teacher.pt`` on ``task`` (a ``TaskConfig``), added
    to ``cache`` under the file's SHA-1 unless already there; returns the runs' SHA-1s."""
    from gan_prune_env.checkpoint import load_generator

    shas = []
    for run in runs:
        teacher = run / "teacher.pt"
        if not teacher.is_file():
            raise SystemExit(f"error: {run} has no teacher.pt: is its training finished "
                             "(python -m gan_prune_env.train_teacher --out ... --resume)?")
        sha1 = file_sha1(teacher)
        if sha1 not in cache:
            generator = load_generator(teacher)
            cache[sha1] = {"run": rel_path(run), "macs": generator_macs(generator, task),
                           **score(teacher, task, eval_images)}
            print(f"{rel_path(run)}: FID {cache[sha1]['fid']:.1f}", flush=True)
        shas.append(sha1)
    return shas


def thin_points(scores: dict[str, dict[str, Any]], shas: list[str], teacher_macs: int
                ) -> list[Point]:
    """The thin runs pooled by size (runs of one width have the same MACs)."""
    by_macs: dict[int, list[float]] = defaultdict(list)
    for sha in shas:
        by_macs[scores[sha]["macs"]].append(scores[sha]["fid"])
    return [Point("thin network trained on the data (teacher's recipe, 4800 steps)",
                  macs / teacher_macs, Stat.of(fids)) for macs, fids in sorted(by_macs.items())]


def report(points: list[Point], name: str, task: str, sources: list[str], out: Path,
           commit: str | None = None) -> Path:
    """``capacity_<name>.md`` and ``.png``; ``commit``: the one the JSON records (read before
    the JSON was rewritten, which would make a tracked results file look dirty)."""
    commit = commit or git_commit()
    teachers = {p.series: p.teacher_sha1[:10] for p in points if p.teacher_sha1}
    lines = [f"# Recipe or capacity? FID against G's MACs, task `{task}` (`{name}`)\n",
             f"Written at commit {commit[:12]}{'+dirty' * commit.endswith('+dirty')} by "
             f"`benchmarks/capacity.py` from {', '.join(f'`{s}`' for s in sources)}; teacher "
             f"SHA-1 per series: {'; '.join(f'{k}: {v}' for k, v in teachers.items()) or '—'} "
             "(the thin runs' own in the JSON). Mean ± sample std over seeds (runs); FID on "
             "the task's evaluation images.\n",
             "| series | G MACs kept | seeds | FID | teacher FID |", "|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (p.series, -p.macs_ratio)):
        teacher = f"{p.teacher_fid:.1f}" if p.teacher_fid is not None else "—"
        lines.append(f"| {p.series} | {100 * p.macs_ratio:.1f}% | {p.fid.n} | "
                     f"{p.fid.pm('{:.1f}')} | {teacher} |")
    path = out / f"capacity_{name}.md"
    path.write_text("\n".join(lines) + "\n")
    plot(points, f"{task} ({name})", out / f"capacity_{name}.png")
    print(f"wrote {path}")
    return path


def plot(points: list[Point], title: str, path: Path) -> None:
    fig, ax = subplots(figsize=(7.5, 4.8))
    from matplotlib.ticker import NullFormatter, ScalarFormatter  # after subplots, as it says

    series = list(dict.fromkeys(p.series for p in points))
    for label in series:
        pts = sorted((p for p in points if p.series == label), key=lambda p: p.macs_ratio)
        ax.errorbar([100 * p.macs_ratio for p in pts], [p.fid.mean for p in pts],
                    yerr=[p.fid.std for p in pts], marker="o", capsize=3, label=label)
    for fid in sorted({p.teacher_fid for p in points if p.teacher_fid is not None}):
        ax.axhline(fid, color="black", lw=0.8)
        ax.axhline(1.05 * fid, color="black", lw=0.8, ls=":")
        ax.text(0.01, fid, f"teacher {fid:.1f} (dotted: +5%)", fontsize=7, va="bottom",
                transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    xs = [100 * p.macs_ratio for p in points]
    ax.set_xticks([t for t in (1, 2.5, 5, 10, 25, 50, 100)
                   if min(xs) / 1.5 <= t <= max(xs) * 1.5])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("G MACs kept (% of the teacher's)")
    ax.set_ylabel("FID (lower is better)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="report name: capacity_<name>.*")
    parser.add_argument("--task", default="default", choices=TASKS)
    parser.add_argument("--thin", nargs="*", type=Path, default=[],
                        help="thin teacher run folders (train_teacher --out)")
    parser.add_argument("--series", nargs="*", default=list(DEFAULT_SERIES),
                        help="comparison cells as LABEL=FILE:METHOD (FILE relative to --out)")
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    points = [p for s in args.series for p in series_points(*parse_series(s, args.out), args.task)]
    results = args.out / f"capacity_{args.name}.json"
    previous = json.loads(results.read_text()) if results.is_file() else {}
    scores = previous.get("thin", {})
    if args.thin:
        from gan_prune_env.models import build_generator
        from gan_prune_env.tasks import get_task

        task = get_task(args.task)
        shas = thin_scores(args.thin, task, args.eval_images, scores)
        teacher_macs = generator_macs(build_generator(task.generator), task)
        points += thin_points(scores, shas, teacher_macs)
    args.out.mkdir(parents=True, exist_ok=True)
    commit = git_commit()
    results.write_text(json.dumps({"task": args.task, "eval_images": args.eval_images,
                                   "commit": commit, "series": args.series, "thin": scores},
                                  indent=1))
    report(points, args.name, args.task, [s.split("=", 1)[1] for s in args.series]
           + [rel_path(r) for r in args.thin], args.out, commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
