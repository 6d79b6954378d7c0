"""The perception-distortion trade-off at one budget: every recipe variant measured for pruning
and for the scratch student, on the plane of FID (realism) and PSNR to the teacher (the
teacher's pixels).

The frontier's target "pruning beats the scratch student on FID *and* PSNR-T" asks one recipe to
win on both axes. A recipe option often moves a generator along the trade-off instead (a smaller
discriminator: more of the teacher's pixels, worse FID; Blau and Michaeli 2018 show the two
cannot both be optimal at a fixed capacity). This report puts every measured variant of both
families on the plane, so the question becomes: is some pruning point better on both axes than
*every* scratch point, and does any scratch point beat a pruning point on both?

It reads comparison cells (``compare_methods.py`` records) from the frontier's results file and
the variant files under ``teacher_targets/`` (``VARIANT_FILES``; records of other methods,
tasks or budgets are skipped), labels each by its recipe and env changes and fine-tuning steps,
and writes ``tradeoff_<task>.md`` and ``tradeoff_<task>.png``::

    python benchmarks/tradeoff.py --task default --budgets 0.05 0.025

Dominance is judged on the means over seeds (a variant's seeds are not paired with another
variant's); the table gives the spreads to read it against.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare.cells import builtin_task, git_commit, recipe_changes
from compare.plots import save_figure, subplots
from compare.report import Stat
from compare.spec import DEFAULT_OUT, RECIPE_STEPS, TASKS
from compare.store import read_records

#: method name -> family shown in the report; methods not listed are left out
FAMILIES = {"uniform_teacher_targets": "pruning",
            "scratch_teacher_targets": "scratch",
            "scratch_g_teacher_targets": "scratch G, teacher's D",
            "separable_teacher_targets": "separable scratch G, teacher's D",
            "factorised_teacher_targets": "separable G factorised from the teacher",
            "pruned_separable_teacher_targets": "separable G distilled, then pruned"}
#: the variant files read by default (under ``teacher_targets/``), listed rather than globbed:
#: ``prune_stages_3_equal_split.jsonl`` predates ``prune_stage_share`` and its records carry the
#: same recipe label as ``prune_stages_3.jsonl`` although they split the steps otherwise
VARIANT_FILES = ("adversarial_warmup.jsonl", "batch_32.jsonl", "before_cutmix.jsonl",
                 "budget_d_0.1.jsonl", "budget_d_0.1_cutmix.jsonl", "budget_d_0.1_today.jsonl",
                 "budget_d_0.05_today.jsonl", "budget_d_1.0_today.jsonl",
                 "discriminator_fresh.jsonl", "factorised_inherit_0.8.jsonl",
                 "pruned_separable_from_ngf13.jsonl", "separable_steps_6000.jsonl",
                 "generator_inherit_0.5.jsonl", "generator_inherit_0.8.jsonl",
                 "importance_group_l1.jsonl",
                 "importance_norm_scale.jsonl", "importance_random.jsonl",
                 "input_mix_cutmix.jsonl", "prune_stages_3.jsonl", "steps_6000.jsonl")


@dataclass(frozen=True)
class Point:
    """One (family, variant) at one budget: means and sample stds over its seeds."""

    family: str
    variant: str
    seeds: tuple[int, ...]
    fid: float
    fid_std: float
    psnr_teacher: float
    psnr_teacher_std: float

    def dominates(self, other: Point) -> bool:
        """Better or equal on both axes and strictly better on one (lower FID, higher PSNR-T)."""
        no_worse = self.fid <= other.fid and self.psnr_teacher >= other.psnr_teacher
        return no_worse and (self.fid < other.fid or self.psnr_teacher > other.psnr_teacher)


def variant_label(record: dict[str, Any]) -> str:
    """``recipe`` or the record's changes to it: the fields in which the recipe it ran differs
    from its method's today (``recipe_changes``), env keys, fine-tuning steps."""
    changes = [f"{k}: {v}" for k, v in sorted(recipe_changes(record).items())]
    changes += [f"env {k}: {v}" for k, v in sorted((record.get("env") or {}).items())]
    source = record["config"].get("student", {}).get("source")
    # the task's separable student is as wide as its teacher: one narrowed from another (a
    # chain through a narrower one) is a variant
    if source and source["ngf"] != builtin_task(record["task"]).generator.ngf:
        changes.append(f"narrowed from a distilled ngf {source['ngf']}")
    if record.get("finetune_steps", RECIPE_STEPS) != RECIPE_STEPS:
        changes.append(f"{record['finetune_steps']} steps")
    return ", ".join(changes) or "recipe"


def collect(files: list[Path], task: str, budgets: list[float]
            ) -> tuple[dict[tuple[float, str, str], dict[int, dict]], list[Path]]:
    """(budget, family, variant) -> {seed: record}, and the files that gave cells. The first
    file holding a cell wins, so the frontier's own record of a cell is kept over a later rerun
    of it."""
    cells: dict[tuple[float, str, str], dict[int, dict]] = defaultdict(dict)
    used = []
    for path in files:
        records = [r for r in read_records(path) if r.get("task") == task
                   and r.get("method") in FAMILIES and r.get("budget") in budgets]
        for record in records:
            key = (record["budget"], FAMILIES[record["method"]], variant_label(record))
            kept = cells[key].setdefault(record["seed"], record)
            if kept is not record and kept["quality"]["fid"] != record["quality"]["fid"]:
                print(f"warning: {path.name} repeats cell {key} seed {record['seed']} with "
                      "another result; kept the first file's", file=sys.stderr)
        used += [path] if records else []
    return cells, used


def _name(point: Point) -> str:
    return f"{point.family} ({point.variant})"


def points(cells: dict[tuple[float, str, str], dict[int, dict]], budget: float) -> list[Point]:
    out = []
    for (b, family, variant), by_seed in cells.items():
        if b != budget:
            continue
        fid = Stat.of([r["quality"]["fid"] for r in by_seed.values()])
        psnr = Stat.of([r["quality"]["psnr_teacher"] for r in by_seed.values()])
        out.append(Point(family, variant, tuple(sorted(by_seed)), fid.mean, fid.std, psnr.mean,
                         psnr.std))
    return sorted(out, key=lambda p: p.fid)


def budget_section(budget: float, pts: list[Point]) -> list[str]:
    lines = [f"## {budget:g} of the teacher's G MACs\n",
             "| family | variant | seeds | FID | PSNR to teacher (dB) | better on both (means) "
             "than | worse on both than |",
             "|---|---|---|---|---|---|---|"]
    for p in pts:
        beats = [_name(q) for q in pts if q.family != p.family and p.dominates(q)]
        beaten = [_name(q) for q in pts if q.family != p.family and q.dominates(p)]
        lines.append(f"| {p.family} | {p.variant} | {len(p.seeds)} | {p.fid:.1f} ± "
                     f"{p.fid_std:.1f} | {p.psnr_teacher:.2f} ± {p.psnr_teacher_std:.2f} | "
                     f"{'; '.join(beats) or '—'} | {'; '.join(beaten) or '—'} |")
    pruning = [p for p in pts if p.family == "pruning"]
    others = [p for p in pts if p.family != "pruning"]
    over_all = [p for p in pruning if others and all(p.dominates(q) for q in others)]
    lines += ["", f"Pruning variants better on both axes than every other point: "
                  f"{', '.join(p.variant for p in over_all) or 'none'}. Points of the other "
                  f"families that beat some pruning variant on both: "
                  f"{sum(any(q.dominates(p) for p in pruning) for q in others)} of "
                  f"{len(others)}.", ""]
    return lines


def plot(by_budget: dict[float, list[Point]], task: str, path: Path) -> None:
    fig, axes = subplots(1, len(by_budget), figsize=(6.5 * len(by_budget), 5), squeeze=False)
    # one colour a family, from matplotlib's 10-colour cycle
    colors = {family: f"C{i}" for i, family in enumerate(sorted(set(FAMILIES.values())))}
    for ax, (budget, pts) in zip(axes[0], by_budget.items()):
        for p in pts:
            ax.errorbar(p.fid, p.psnr_teacher, xerr=p.fid_std, yerr=p.psnr_teacher_std,
                        marker="o", color=colors[p.family], capsize=2, alpha=0.8)
            ax.annotate(p.variant, (p.fid, p.psnr_teacher), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        for family, color in colors.items():
            ax.plot([], [], "o", color=color, label=family)
        ax.set_xlabel("FID (lower is better)")
        ax.set_ylabel("PSNR to teacher (dB, higher is better)")
        ax.set_title(f"{task}, {budget:g} of the teacher's G MACs")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def make_report(task: str, budgets: list[float], files: list[Path], out: Path) -> Path:
    cells, used = collect(files, task, budgets)
    by_budget = {b: points(cells, b) for b in budgets}
    if not any(by_budget.values()):
        raise SystemExit(f"error: no cells of task {task!r} at budgets {budgets} in {files}")
    teachers = sorted({r["teacher_sha1"][:10] for group in cells.values()
                       for r in group.values()})
    commit = git_commit()
    lines = [f"# Perception-distortion trade-off, task `{task}`\n",
             f"Written at commit {commit[:12]}{'+dirty' * commit.endswith('+dirty')} from "
             f"{', '.join(f'`{p.name}`' for p in used)}; teacher SHA-1 {', '.join(teachers)}. "
             "Mean ± sample std over seeds; every variant fine-tunes the uniform architecture; "
             "dominance on the means.\n"]
    for budget, pts in by_budget.items():
        lines += budget_section(budget, pts)
    path = out / f"tradeoff_{task}.md"
    path.write_text("\n".join(lines))
    plot(by_budget, task, out / f"tradeoff_{task}.png")
    print(f"wrote {path}")
    return path


def default_files(out: Path, task: str) -> list[Path]:
    """The frontier's results of ``task`` first, then the variant files."""
    return [out / f"frontier_{task}.jsonl", *(out / "teacher_targets" / f for f in VARIANT_FILES)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="default", choices=TASKS)
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.05, 0.025])
    parser.add_argument("--files", nargs="+", type=Path, default=None,
                        help="results files (default: the frontier's, then VARIANT_FILES under "
                             "teacher_targets/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    make_report(args.task, args.budgets, args.files or default_files(args.out, args.task),
                args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
