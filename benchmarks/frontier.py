"""The compression frontier: how far can the generator's MACs fall before its images stop being
the teacher's, and does pruning beat a thin student distilled from scratch?

Quality (real FID/KID, PSNR/SSIM to the target and to the teacher) against the generator's
kept MACs at 25%, 10%, 5% and 2.5% of the teacher, for

* ``scratch``: the thin student of the same MACs (uniform width), re-initialised and distilled
  with the same recipe and steps: what a user would do instead of using us;
* ``uniform``: uniform L1-norm pruning, inheriting the teacher's weights;
* ``random``: random search; ``mggc``: our two-agent search (both with the env's reward);
* ``uniform_teacher_targets``, ``scratch_teacher_targets``, ``random_teacher_targets``,
  ``mggc_teacher_targets``: the same with the recipe's teacher targets
  (``FinetuneConfig.targets``). The four methods above keep the dataset's targets, the recipe
  their committed records were run with;
* ``scratch_g_teacher_targets``: the thin G from scratch trained against the teacher's pruned
  D (the recipe's ``discriminator_init: teacher``), as GAN Compression trains its students;
  ``scratch*`` re-initialise D too.
* ``separable_teacher_targets``: GAN Compression's own kind of student, a depthwise-separable
  U-Net (``gan_prune_env.models.separable``) of the largest width within the budget's MACs,
  from scratch, trained like ``scratch_g_teacher_targets``: a stronger "what else would I do";
  ``factorised_teacher_targets``: the same network starting from the teacher's weights (its
  slice at the student's widths, each conv factorised into depthwise x pointwise by SVD);
  ``pruned_separable_teacher_targets``: GAN Compression's order, distil then prune: the
  separable U-Net at the teacher's width, distilled from the teacher (the separable cell at
  25%, seed 0, kept with ``--save-generator``: ``compare.spec.separable_student_command``),
  narrowed to the budget's width with its weights and fine-tuned like the others.

Every cell is a comparison cell (``compare_methods.py``: the same search -> slice -> fine-tune
-> evaluate path, the project's one fine-tuning recipe, the same steps for every method), stored
per task in ``frontier_<task>.jsonl`` and resumable (rerun the same command). ``report`` writes
``frontier.md`` (per task: the table, the largest MACs cut at teacher-level FID, the paired
margins over the scratch student) and ``frontier_<task>.png``.

Teacher level: a mean FID within 5% of the teacher's, or within the teacher's bootstrap std.

Tasks: ``default`` (the shipped ngf-16 teacher), ``default_wide`` (the same data, a teacher of
the reference width ngf 64; train it once with the command in ``compare.spec.TEACHER_COMMANDS``,
about 25 minutes on 2 idle cores, and check its test curve with ``teacher_curve.py``) and
``facades``. Other flags go to ``compare_methods.py run`` (``--rounds``, ``--recipe``,
``--teacher TASK=PATH``, ...).

Regenerate the published frontier (one command per task; each resumes where it stopped and
runs exactly the cells of ``PUBLISHED``, with the recipe of ``PUBLISHED_RECIPE``: today's for
the default task, the recipe before cutmix and the shrunk start for the other two)::

    python -m gan_prune_env.supernet --task default --out runs/supernets/default --resume
    python benchmarks/compare_methods.py run --tasks default --budgets 0.25 --methods \
        separable_teacher_targets --seeds 0 --save-generator runs/separable/default/generator.pt \
        --out runs/separable/default --no-report
    python benchmarks/frontier.py run --tasks default --published --workers 2
    python -m gan_prune_env.train_teacher --task default_wide --out runs/teachers/default_wide \
        --resume
    python benchmarks/frontier.py run --tasks default_wide --published --workers 2
    python benchmarks/compare_methods.py teacher --out runs/compare_facades_teacher
    python benchmarks/frontier.py run --tasks facades --published --workers 2
    python benchmarks/frontier.py report

Other cells: ``--methods``, ``--budgets`` and ``--seeds`` (defaults: the four methods above at
every budget, seeds 0-2).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import compare_methods
from compare.plots import save_figure, subplots
from compare.cells import effective_recipe, recipe_changes
from compare.spec import DEFAULT_OUT, METHODS, RECIPE_BEFORE_CUTMIX, TASKS
from compare.store import read_records

BUDGETS = (0.25, 0.1, 0.05, 0.025)
FRONTIER_METHODS = ("scratch", "uniform", "random", "mggc")
TEACHER_TARGET_BASELINES = ("scratch_teacher_targets", "uniform_teacher_targets")
SEARCHES_AT_10 = ("random_teacher_targets", "mggc_teacher_targets", "uniform_supernet",
                  "random_supernet", "random_sn_reward", "mggc_sn_reward")
PUBLISHED: dict[str, tuple[tuple[tuple[str, ...], tuple[float, ...], tuple[int, ...]], ...]] = {
    "default": (
        (FRONTIER_METHODS + TEACHER_TARGET_BASELINES, BUDGETS, (0, 1, 2)),
        (FRONTIER_METHODS + TEACHER_TARGET_BASELINES + ("random_sn_reward", "mggc_sn_reward"),
         (0.1,), (3, 4)),
        (SEARCHES_AT_10, (0.1,), (0, 1, 2)),
        (("scratch_g_teacher_targets",), BUDGETS, (0, 1, 2)),
        (TEACHER_TARGET_BASELINES, (0.25, 0.05, 0.025), (3, 4)),
        (("random_teacher_targets", "mggc_teacher_targets"), (0.25, 0.05, 0.025), (0, 1, 2)),
        (("random_teacher_targets", "mggc_teacher_targets"), (0.25,), (3, 4)),
        (("separable_teacher_targets",), (0.1, 0.05), (0, 1, 2, 3, 4)),
        (("separable_teacher_targets",), (0.025,), (0, 1, 2)),
        (("factorised_teacher_targets",), (0.05,), (0, 1, 2, 3, 4)),
        (("separable_teacher_targets",), (0.25,), (0,)),  # the separable student itself
        (("pruned_separable_teacher_targets",), (0.1, 0.05), (0, 1, 2, 3, 4)),
    ),
    "default_wide": (
        (("scratch", "uniform") + TEACHER_TARGET_BASELINES, (0.1, 0.05), (0, 1, 2)),
        (TEACHER_TARGET_BASELINES, (0.025,), (0, 1, 2)),
        (TEACHER_TARGET_BASELINES, (0.25,), (0, 1)),
    ),
    "facades": ((TEACHER_TARGET_BASELINES, (0.1,), (0, 1, 2)),),
}
"""Per task, the (methods, budgets, seeds) groups of the published frontier: ``run --published``
runs (or resumes) exactly these cells. Default: the two teacher-target baselines have 5 seeds
at every budget (the headline's "largest cut at teacher level" and margins), the two searches
5 at 25% (where their means are at teacher level) and 3 elsewhere. Facades: the
recipe's two baselines at 10%, seeds 0-2 (a cell takes over an hour of one core at 128 px);
``--methods``/``--seeds`` run the rest. The supernet methods need the task's supernet
(``compare.spec``), the pruned separable ones its separable student (the 25% separable cell's
G, kept by ``compare.spec.separable_student_command``); ``default_wide`` needs its teacher
(``TEACHER_COMMANDS``)."""
PUBLISHED_RECIPE: dict[str, dict[str, Any]] = {"default_wide": RECIPE_BEFORE_CUTMIX,
                                               "facades": RECIPE_BEFORE_CUTMIX}
"""Per task, the ``--recipe`` changes its published cells ran with: the wide-teacher and facades
cells predate cutmix and the shrunk start (an hour or more a cell on 2 cores), so they keep the
recipe before them until they are re-run; the default task's run today's."""
REPORT = "frontier.md"
PAIRED_AGAINST = {"scratch": "the thin student from scratch",
                  "uniform": "uniform pruning",
                  "scratch_teacher_targets": "the thin student from scratch, teacher targets",
                  "uniform_teacher_targets": "uniform pruning, teacher targets",
                  "scratch_g_teacher_targets": "the thin G from scratch with the teacher's D",
                  "separable_teacher_targets": "the separable U-Net from scratch (GAN "
                                               "Compression's student)"}
"""The baselines every other method is paired with, by seed, where both were run."""
TEACHER_LEVEL = 0.05
PAIRED_MACS_GAP = 0.2
"""Cells are paired only when their G MACs differ by at most this share (the 2.5% separable
student has 13% fewer MACs than pruning's, and is paired; the 25% one has half, and is not)."""
COLUMNS = (("fid", "FID", "{:.1f}", 1.0), ("kid", "KID x1e3", "{:.1f}", 1e3),
           ("psnr_teacher", "PSNR-T", "{:.2f}", 1.0), ("psnr", "PSNR", "{:.2f}", 1.0),
           ("ssim_teacher", "SSIM-T", "{:.3f}", 1.0))


def results_file(out: Path, task: str) -> Path:
    return out / f"frontier_{task}.jsonl"


def cell_groups(args: argparse.Namespace, task: str
                ) -> tuple[tuple[tuple[str, ...], tuple[float, ...], tuple[int, ...]], ...]:
    """The (methods, budgets, seeds) groups to run for ``task``: the published plan with
    ``--published``, else the one group of the flags."""
    if args.published:
        return PUBLISHED[task]
    return ((tuple(args.methods), tuple(args.budgets), tuple(args.seeds)),)


def published_recipe(args: argparse.Namespace, task: str, passthrough: list[str]) -> list[str]:
    """The ``--recipe`` arguments of the task's published cells (``PUBLISHED_RECIPE``), with
    ``--published`` only; asking for another recipe on top of them is an error."""
    changes = PUBLISHED_RECIPE.get(task) if args.published else None
    if not changes:
        return []
    if "--recipe" in passthrough:
        raise SystemExit(f"error: the published {task} cells ran with --recipe "
                         f"{_recipe_args(changes)}; run other recipes without --published")
    return ["--recipe", *_recipe_args(changes)]


def _recipe_args(changes: dict[str, Any]) -> list[str]:
    return [f"{k}:{v}" for k, v in changes.items()]


def command_run(args: argparse.Namespace, passthrough: list[str]) -> int:
    """``compare_methods.py run`` per task and cell group, into the frontier's own results
    files."""
    out = Path(args.out)
    code = 0
    for task in args.tasks:
        recipe = published_recipe(args, task, passthrough)
        for methods, budgets, seeds in cell_groups(args, task):
            argv = ["run", "--tasks", task, "--budgets", *map(str, budgets),
                    "--methods", *methods, "--seeds", *map(str, seeds),
                    "--workers", str(args.workers), "--results", str(results_file(out, task)),
                    "--out", str(out), "--no-report", *recipe, *passthrough]
            code |= compare_methods.main(argv)
    make_report(out)
    return code


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _fmt(values: list[float], fmt: str) -> str:
    if not values or any(math.isnan(v) for v in values):
        return "—"
    mean, std = _mean_std(values)
    return f"{fmt.format(mean)} ± {fmt.replace('+', '').format(std)}"  # a spread has no sign


def _quality(record: dict[str, Any], metric: str, scale: float = 1.0) -> float:
    return float(record["quality"].get(metric, math.nan)) * scale


def task_section(task: str, records: list[dict[str, Any]], out: Path) -> list[str]:
    cells: dict[tuple[str, float], dict[int, dict]] = defaultdict(dict)
    for r in records:
        cells[(r["method"], r["budget"])][r["seed"]] = r
    budgets = sorted({r["budget"] for r in records}, reverse=True)
    methods = [m for m in FRONTIER_METHODS + tuple(METHODS) if any(k[0] == m for k in cells)]
    methods = list(dict.fromkeys(methods))
    first = records[0]
    tq, tc = first["teacher_quality"], first["compute"]["generator/teacher"]
    teacher_fid, teacher_fid_std = tq.get("fid", math.nan), tq.get("fid_std", math.nan)
    lines = [f"## Task `{task}`\n",
             f"Teacher G {tc['macs'] / 1e6:.1f} M MACs: FID {teacher_fid:.1f} ± "
             f"{teacher_fid_std:.1f} (bootstrap), KID x1e3 {tq.get('kid', math.nan) * 1e3:.1f}, "
             f"PSNR {tq['psnr']:.2f} dB. Seeds {sorted({r['seed'] for r in records})}; search "
             f"rounds {sorted({r['rounds'] for r in records})}; fine-tuning steps "
             f"{sorted({r['finetune_steps'] for r in records})}; "
             f"{first['eval_images']} test images; commits "
             f"{sorted({r.get('commit', '?')[:12] for r in records})}; teacher SHA-1 "
             f"{first.get('teacher_sha1', '?')}.\n"]
    lines.append(_recipe_note(cells, methods))
    header = ["method", "seeds", "G MACs kept", "x fewer"] + [h for _, h, _, _ in COLUMNS]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for budget in budgets:
        for method in methods:
            group = list(cells.get((method, budget), {}).values())
            if not group:
                continue
            ratios = [r["compute"]["generator/pruned"]["macs"] / tc["macs"] for r in group]
            row = [method, str(len(group)), f"{np.mean(ratios):.1%}", f"{1 / np.mean(ratios):.1f}"]
            row += [_fmt([_quality(r, m, k) for r in group], f) for m, _, f, k in COLUMNS]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"**Teacher level** (mean FID <= teacher FID x {1 + TEACHER_LEVEL:g} = "
                 f"{teacher_fid * (1 + TEACHER_LEVEL):.1f}, or within its bootstrap std "
                 f"{teacher_fid + teacher_fid_std:.1f}):\n")
    threshold = max(teacher_fid * (1 + TEACHER_LEVEL), teacher_fid + teacher_fid_std)
    for method in methods:
        reached = [b for b in budgets if cells.get((method, b)) and
                   _mean_std([_quality(r, "fid") for r in cells[(method, b)].values()])[0]
                   <= threshold]
        if not reached:
            lines.append(f"- {method}: never at teacher level")
            continue
        lowest = min(reached)
        missed = [f"{b:.1%}" for b in budgets
                  if b > lowest and cells.get((method, b)) and b not in reached]
        lines.append(f"- {method}: teacher-level FID down to {lowest:.1%} of the teacher's G "
                     f"MACs ({1 / lowest:.0f}x fewer)"
                     + (f"; not at {', '.join(missed)}" if missed else ""))
    lines.append("")
    for base, label in PAIRED_AGAINST.items():
        if base in methods:  # each pair once: against the methods listed after the base
            lines += _paired(cells, methods[methods.index(base) + 1:], budgets, base, label)
    _plot(task, cells, methods, budgets, tc["macs"], teacher_fid, out / f"frontier_{task}.png")
    lines.append(f"![frontier {task}](frontier_{task}.png)\n")
    return lines


def _recipe_note(cells: dict[tuple[str, float], dict[int, dict]], methods: list[str]) -> str:
    """Which recipe each row ran: the fields in which its cells differ from today's defaults
    (``FinetuneConfig``), methods with the same changes together."""
    changes: dict[str, set[str]] = defaultdict(set)
    for (method, _), group in cells.items():
        for record in group.values():
            changed = recipe_changes(record, against_method=False)
            changes[method].add(", ".join(f"{k} {v}" for k, v in sorted(changed.items()))
                                or "today's recipe")
    by_recipe: dict[str, list[str]] = defaultdict(list)
    for method in methods:
        by_recipe[" / ".join(sorted(changes[method]))].append(method)
    lines = ["Recipe of each row, as it differs from today's `FinetuneConfig` defaults:\n"]
    lines += [f"- {recipe}: {', '.join(group)}" for recipe, group in by_recipe.items()]
    return "\n".join(lines) + "\n"


def _targets(record: dict[str, Any]) -> str:
    return effective_recipe(record["config"]["finetune"], record["task"])["targets"]


def _paired(cells: dict[tuple[str, float], dict[int, dict]], methods: list[str],
            budgets: list[float], base: str, label: str) -> list[str]:
    """Per budget and method, the seed-paired differences from ``base`` (FID, PSNR-T) and on
    how many seeds the method is better; nothing when no method shares seeds with ``base``.
    Only cells trained on the same targets (the dataset's or the teacher's) are paired."""
    lines = []
    for budget in budgets:
        reference = cells.get((base, budget), {})
        for method in methods:
            ours = cells.get((method, budget), {})
            common = sorted(s for s in set(ours) & set(reference)
                            if _targets(ours[s]) == _targets(reference[s]))
            if method == base or not common or not _similar_macs(ours, reference):
                continue
            fid = [_quality(ours[s], "fid") - _quality(reference[s], "fid") for s in common]
            pt = [_quality(ours[s], "psnr_teacher") - _quality(reference[s], "psnr_teacher")
                  for s in common]
            fid_wins, pt_wins = sum(f < 0 for f in fid), sum(p > 0 for p in pt)
            both = sum(f < 0 and p > 0 for f, p in zip(fid, pt))
            lines.append(f"- {budget:.1%}, {method}: FID {_fmt(fid, '{:+.1f}')} (lower in "
                         f"{fid_wins} of {len(common)} seeds), PSNR-T {_fmt(pt, '{:+.2f}')} "
                         f"(higher in {pt_wins}); better on both in {both}")
    if not lines:
        return []
    return [f"**Against {label}** (paired by seed, method minus {base}; FID lower is better, "
            "PSNR-T higher):\n", *lines, ""]


def _similar_macs(ours: dict[int, dict], reference: dict[int, dict]) -> bool:
    """Whether two cell groups of one budget have G MACs within :data:`PAIRED_MACS_GAP` of each
    other: a student capped below its budget (the separable U-Net at the teacher's width is
    12.8% of its MACs in the 25% cells) is no equal-MACs comparison."""
    def macs(group):
        return np.mean([r["compute"]["generator/pruned"]["macs"] for r in group.values()])

    a, b = macs(ours), macs(reference)
    return abs(a - b) <= PAIRED_MACS_GAP * max(a, b)


def _plot(task, cells, methods, budgets, teacher_macs, teacher_fid, path: Path) -> None:
    from matplotlib import ticker

    fig, axes = subplots(1, 2, figsize=(11, 4))
    for ax, (metric, label) in zip(axes, (("fid", "FID (lower is better)"),
                                          ("psnr_teacher", "PSNR to teacher (dB)"))):
        for method in methods:
            xs, ms, ss = [], [], []
            for budget in budgets:
                group = list(cells.get((method, budget), {}).values())
                if group:
                    xs.append(np.mean([r["compute"]["generator/pruned"]["macs"] for r in group])
                              / 1e6)
                    mean, std = _mean_std([_quality(r, metric) for r in group])
                    ms.append(mean)
                    ss.append(std)
            if xs:
                ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=METHODS[method].label)
        if metric == "fid":
            ax.axhline(teacher_fid, color="black", linewidth=1, label="teacher")
            ax.axhline(teacher_fid * (1 + TEACHER_LEVEL), color="black", linewidth=1,
                       linestyle=":", label=f"teacher +{TEACHER_LEVEL:.0%}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xticks(sorted({round(float(np.mean([r["compute"]["generator/pruned"]["macs"]
                                                    for r in group.values()])) / 1e6, 1)
                              for group in cells.values()}))
        ax.set_xlabel(f"G MACs (M); teacher {teacher_macs / 1e6:.1f} M")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Compression frontier, task {task}")
    save_figure(fig, path)


def make_report(out: Path) -> Path:
    lines = ["# The compression frontier\n",
             "Regenerate: see the docstring of `benchmarks/frontier.py`. Mean ± sample std over "
             "seeds; FID/KID with the FID Inception (README, 'FID and KID: the protocol').\n"]
    for task in TASKS:
        records = read_records(results_file(out, task))
        if records:
            lines += task_section(task, records, out)
    path = out / REPORT
    path.write_text("\n".join(lines))
    print(f"wrote {path}")
    return path


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) the cells, then write the report; other "
                                     "flags go to compare_methods.py run (e.g. --rounds, "
                                     "--finetune-steps, --recipe)")
    run.add_argument("--tasks", nargs="+", default=["default"], choices=TASKS)
    run.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS))
    run.add_argument("--methods", nargs="+", default=list(FRONTIER_METHODS))
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--published", action="store_true",
                     help="the published cells of each task (PUBLISHED), instead of --methods, "
                          "--budgets and --seeds")
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--out", default=str(DEFAULT_OUT))
    rep = sub.add_parser("report", help="the report from the results files")
    rep.add_argument("--out", default=str(DEFAULT_OUT))
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, passthrough = parse_args(argv)
    if args.command == "report":
        if passthrough:
            raise SystemExit(f"error: unknown arguments {passthrough}")
        make_report(Path(args.out))
        return 0
    return command_run(args, passthrough)


if __name__ == "__main__":
    sys.exit(main())
