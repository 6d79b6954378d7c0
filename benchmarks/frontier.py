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
  narrowed to the budget's width with its weights and fine-tuned like the others;
  ``pruned_separable_slim_teacher_targets``: the same from a start distilled with network
  slimming's sparsity term (``separable_slim_teacher_targets``), narrowed by its norm scales:
  the best variant measured; ``pruned_separable_slim_wide_teacher_targets``: the same from a
  start 1.75 times the teacher's width (``separable_slim_wide_teacher_targets``, 22% of the wide
  teacher's MACs), for the wide task's 25% budget.

Every cell is a comparison cell (``compare_methods.py``: the same search -> slice -> fine-tune
-> evaluate path, the project's one fine-tuning recipe, the same steps for every method), stored
per task in ``frontier_<task>.jsonl`` and resumable (rerun the same command). ``report`` writes
``frontier.md`` (per task: the table, the largest MACs cut at teacher-level FID, the paired
margins over the scratch student) and ``frontier_<task>.png``.

Teacher level: a mean FID within 5% of the teacher's, or within the teacher's bootstrap std.

Tasks: ``default`` (the shipped ngf-16 teacher), ``default_long`` (the same network trained
four times as long, shipped too), ``default_wide`` (the same data, a teacher of
the reference width ngf 64; train it once with the command in ``compare.spec.TEACHER_COMMANDS``,
about 25 minutes on 2 idle cores, and check its test curve with ``teacher_curve.py``) and
``facades``. Other flags go to ``compare_methods.py run`` (``--rounds``, ``--recipe``,
``--teacher TASK=PATH``, ...).

Regenerate the published frontier (one command per task, after what it needs; each resumes where
it stopped and runs exactly the cells of ``PUBLISHED``, each recipe variant into its own results
file: today's recipe for the default task, the wide task's cells at 4x, 20x and 40x;
the recipe before cutmix and the shrunk start for the wide task's other cells and facades'
first cells; today's recipe under bfloat16 autocast for facades' cells since session 43, with
one float32 cell of today's recipe as its control)::

    python -m gan_prune_env.supernet --task default --out runs/supernets/default --resume
    python benchmarks/compare_methods.py run --tasks default --budgets 0.25 --methods \
        separable_teacher_targets --seeds 0 --save-generator runs/separable/default/generator.pt \
        --out runs/separable/default --results benchmarks/results/frontier_default.jsonl \
        --no-report
    python benchmarks/compare_methods.py run --tasks default --budgets 0.25 --methods \
        separable_slim_teacher_targets --seeds 0 --save-generator \
        runs/separable/default_separable_slim_teacher_targets/generator.pt --out \
        runs/separable/default_separable_slim_teacher_targets \
        --results benchmarks/results/frontier_default.jsonl --no-report
    python benchmarks/frontier.py run --tasks default --published --workers 2
    python benchmarks/compare_methods.py run --tasks default_long --budgets 0.25 --methods \
        separable_slim_teacher_targets --seeds 0 --save-generator \
        runs/separable/default_long_separable_slim_teacher_targets/generator.pt --out \
        runs/separable/default_long_separable_slim_teacher_targets \
        --results benchmarks/results/frontier_default_long.jsonl --no-report
    python benchmarks/frontier.py run --tasks default_long --published --workers 2
    python -m gan_prune_env.train_teacher --task default_wide --out runs/teachers/default_wide \
        --resume
    python benchmarks/compare_methods.py run --tasks default_wide --budgets 0.25 --methods \
        separable_teacher_targets --seeds 0 --save-generator \
        runs/separable/default_wide/generator.pt --out runs/separable/default_wide \
        --results benchmarks/results/frontier_default_wide.jsonl --no-report
    python benchmarks/compare_methods.py run --tasks default_wide --budgets 0.25 --methods \
        separable_slim_teacher_targets --seeds 0 --save-generator \
        runs/separable/default_wide_separable_slim_teacher_targets/generator.pt --out \
        runs/separable/default_wide_separable_slim_teacher_targets \
        --results benchmarks/results/frontier_default_wide.jsonl --no-report
    python benchmarks/compare_methods.py run --tasks default_wide --budgets 0.25 --methods \
        separable_slim_wide_teacher_targets --seeds 0 --save-generator \
        runs/separable/default_wide_separable_slim_wide_teacher_targets/generator.pt --out \
        runs/separable/default_wide_separable_slim_wide_teacher_targets \
        --results benchmarks/results/frontier_default_wide.jsonl --no-report
    python benchmarks/frontier.py run --tasks default_wide --published --workers 2
    python benchmarks/compare_methods.py teacher --out runs/compare_facades_teacher
    python benchmarks/frontier.py run --tasks facades --variant bfloat16 --methods \
        separable_slim_teacher_targets --budgets 0.25 --seeds 0 --workers 1 --save-generator \
        runs/separable/facades_separable_slim_teacher_targets/generator.pt
    python benchmarks/frontier.py run --tasks facades --published --workers 2
    python benchmarks/frontier.py report

Other cells: ``--methods``, ``--budgets`` and ``--seeds`` (defaults: the four methods above at
every budget, seeds 0-2), under today's recipe or ``--variant before_cutmix`` or ``bfloat16``.
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
from compare.spec import ABLATIONS, DEFAULT_OUT, METHODS, RECIPE_BEFORE_CUTMIX, TASKS
from compare.store import read_records, same_teacher

BUDGETS = (0.25, 0.1, 0.05, 0.025)
FRONTIER_METHODS = ("scratch", "uniform", "random", "mggc")
TEACHER_TARGET_BASELINES = ("scratch_teacher_targets", "uniform_teacher_targets")
SEARCHES_AT_10 = ("random_teacher_targets", "mggc_teacher_targets", "uniform_supernet",
                  "random_supernet", "random_sn_reward", "mggc_sn_reward")
SCREENED_ABLATIONS = tuple(f"{name}_screened_teacher_targets" for name in ABLATIONS)
Group = tuple[tuple[str, ...], tuple[float, ...], tuple[int, ...]]
"""(methods, budgets, seeds): every combination is one cell."""
VARIANTS: dict[str, dict[str, Any]] = {"": {}, "before_cutmix": RECIPE_BEFORE_CUTMIX,
                                       "bfloat16": {"autocast": "bfloat16"}}
"""The frontier's recipe variants, by name: ``""`` today's recipe, ``before_cutmix`` the recipe
before session 18's cutmix and shrunk start (its ``--recipe`` changes), ``bfloat16`` today's
recipe with its forward passes under bfloat16 autocast (2.2x a step on facades' 128 px on a CPU
with native bfloat16; on the default and wide tasks it moved FID by +1.8 +- 4.7 and -0.1 +- 0.3,
``teacher_targets/autocast_bfloat16*.jsonl``; on facades +3.5, one seed: the float32 cell of
``PUBLISHED``). Each keeps its own results file per task
(``results_file``): a cell resumes only under the recipe it ran."""
PUBLISHED: dict[str, dict[str, tuple[Group, ...]]] = {
    "default": {"": (
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
        (("pruned_separable_teacher_targets",), (0.025,), (0, 1, 2)),
        (("separable_slim_teacher_targets",), (0.25,), (0,)),  # the slimming start itself
        (("pruned_separable_slim_teacher_targets",), (0.25, 0.1, 0.05), (0, 1, 2, 3, 4)),
        (("pruned_separable_slim_teacher_targets",), (0.025,), (0, 1, 2)),
        (("random_screened_teacher_targets",), (0.1,), (0, 1, 2)),  # session 38: the screen
        (("mggc_screened_teacher_targets",), (0.1,), (0, 1, 2)),  # session 39
        # session 41: the paper's claims under the screen, and G alone's control
        (SCREENED_ABLATIONS + ("ppo_screened_teacher_targets", "uniform_full_d_teacher_targets"),
         (0.1,), (0, 1, 2)),
    )},
    # session 46: the longer-trained teacher that ships with the package, retrained on an AMD
    # EPYC (other weights than sessions 22 and 45's Intel Xeon file): the two baselines and our
    # best variant at every budget, and the two searches with the screen at 10%
    "default_long": {"": (
        (("separable_slim_teacher_targets",), (0.25,), (0,)),  # the slimming start itself
        (TEACHER_TARGET_BASELINES + ("pruned_separable_slim_teacher_targets",), BUDGETS,
         (0, 1, 2)),
        (("mggc_screened_teacher_targets", "random_screened_teacher_targets"), (0.1,),
         (0, 1, 2)),
    )},
    "default_wide": {
        "before_cutmix": (
            (("scratch", "uniform") + TEACHER_TARGET_BASELINES, (0.1, 0.05), (0, 1, 2)),
            (TEACHER_TARGET_BASELINES, (0.025,), (0, 1, 2)),
            (TEACHER_TARGET_BASELINES, (0.25,), (0, 1)),
        ),
        "": (
            (("separable_teacher_targets",), (0.25,), (0,)),  # the separable student itself
            (("pruned_separable_teacher_targets", "separable_teacher_targets"), (0.05,),
             (0, 1, 2)),
            (TEACHER_TARGET_BASELINES, (0.25, 0.05), (0, 1, 2)),
            (("pruned_separable_teacher_targets", "separable_teacher_targets",
              "scratch_teacher_targets", "uniform_teacher_targets"), (0.025,), (0, 1, 2)),
            (("separable_slim_teacher_targets",), (0.25,), (0,)),  # the slimming start itself
            (("pruned_separable_slim_teacher_targets",), (0.1, 0.05, 0.025), (0, 1, 2)),
            # at 25% the start stays whole as at 10% (8.0% of the MACs): the same cell, bit for
            # bit, which this seed checks
            (("pruned_separable_slim_teacher_targets",), (0.25,), (2,)),
            (TEACHER_TARGET_BASELINES, (0.1,), (0, 1, 2)),
            (("random_teacher_targets", "mggc_teacher_targets"), (0.1, 0.05), (0, 1, 2)),
            (("random_teacher_targets", "mggc_teacher_targets"), (0.25,), (0, 1, 2)),
            (("random_teacher_targets", "mggc_teacher_targets"), (0.025,), (0, 1, 2)),
            (("separable_slim_wide_teacher_targets",), (0.25,), (0,)),  # the 1.75x start itself
            (("pruned_separable_slim_wide_teacher_targets",), (0.25,), (0, 1, 2)),
            (("random_screened_teacher_targets",), (0.1,), (0, 1, 2)),  # session 38: the screen
            (("uniform_teacher_targets", "random_screened_teacher_targets"), (0.1,), (3,)),
            (("mggc_screened_teacher_targets",), (0.1,), (0, 1, 2, 3)),  # session 39
            (("mggc_teacher_targets",), (0.1,), (3,)),
            (("mggc_screened_teacher_targets", "random_screened_teacher_targets"), (0.05,),
             (0, 1, 2)),
            (SCREENED_ABLATIONS + ("ppo_screened_teacher_targets",), (0.1,), (0, 1, 2)),
            (("uniform_full_d_teacher_targets",), (0.1,), (0, 1, 2)),  # session 41
        ),
    },
    "facades": {
        # session 43, on the teacher retrained in session 36 (6f8e9887): listed first, so that
        # --published runs them before the before_cutmix cells stop on their older teacher
        "bfloat16": (
            (TEACHER_TARGET_BASELINES, (0.1,), (0, 1, 2)),
            # the start itself: at the teacher's width 9.6% of its MACs, inside the 10% budget
            (("separable_slim_teacher_targets",), (0.25,), (0,)),
            (("mggc_teacher_targets",), (0.1,), (0, 1, 2)),
            (("random_teacher_targets",), (0.1,), (0, 1, 2)),
            # session 44: distil, then prune (the start, whole, fine-tuned again)
            (("pruned_separable_slim_teacher_targets",), (0.1,), (0, 1, 2)),
        ),
        # session 44: the float32 control of the bfloat16 cells (same teacher)
        "": ((("uniform_teacher_targets",), (0.1,), (0,)),),
        "before_cutmix": ((TEACHER_TARGET_BASELINES, (0.1,), (0, 1, 2)),),
    },
}
"""Per task and recipe variant, the (methods, budgets, seeds) groups of the published frontier:
``run --published`` runs (or resumes) exactly these cells. Default: the two teacher-target
baselines have 5 seeds at every budget (the headline's "largest cut at teacher level" and
margins), the two searches 5 at 25% (where their means are at teacher level) and 3 elsewhere.
The wide task's cells of the recipe before cutmix ran before session 18 (18-35 min a cell on one
core); today's recipe there measures GAN Compression's order (distil, then prune) and its
separable student from scratch at 20x and 40x, the two baselines at 4x and 20x and the thin
student at 10x and 40x, and (session 32) distil, then prune from the slimming start at 10%, 5%
and 2.5% (seeds 0-2), (session 34) the two searches at 10% and 5% (seeds 0-2), and (session
35) the two searches at 25% (seeds 0-2) and 2.5% (seed 0; seeds 1-2 in session 38, on the
teacher retrained on an Intel Xeon, ``teacher_aliases.json``), and uniform pruning at
2.5% (seeds 0-2), and (session 38) random search with the pipeline's screen at 10% (seeds
0-2, on the default task too), and (session 39) mggc with the screen at 10% (seeds 0-3 and
mggc's seed 3; seeds 0-2 on the default task) and, with random search's, at 5% (seeds
0-2), and (session 40) the paper's three ablations of mggc and SB3's PPO, each with the
screen, at 10% (seeds 0-2), and (session 41) uniform pruning fine-tuned against the teacher's
whole D, the control of the G-alone ablation, at 10% (seeds 0-2; on the default task too, with
the three screened ablations and PPO), on the teacher retrained in session 28 (13-24 min a
cell on one core; the baselines under today's recipe on session 21's teacher are in
``teacher_targets/wide_today.jsonl``). Facades: the recipe's two
baselines at 10%, seeds 0-2, before cutmix (a cell took over an hour of one core at 128 px);
and (session 43, ``bfloat16``: 16-22 minutes a cell, the separable start 44) today's recipe's
two baselines, mggc and random search at 10% (seeds 0-2) and the separable
start; (session 44) distil, then prune at 10% (seeds 0-2: the start stays whole, 9.6% of the
MACs, and is fine-tuned again) and, in float32, uniform pruning's seed 0 as the control of
bfloat16; ``--methods``/``--seeds`` run the rest. The supernet methods need the task's supernet
(``compare.spec``), the pruned separable ones its separable student (the 25% separable cell's
G, kept by ``compare.spec.separable_student_command``); ``default_wide`` needs its teacher
(``TEACHER_COMMANDS``). The wide task's and facades' teachers are not in the repository and a
retrain on another kind of CPU has other weights, so their published cells resume only with the
teacher files they record (``default_wide``: SHA-1 ``97ad5a71``, session 28, an Intel Xeon;
``facades``: ``cf4e0bab`` before cutmix, ``6f8e9887`` under ``bfloat16``, session 36's
retrain on an Intel Xeon) or a retrain that ``compare_methods.py same-teacher`` shows to make
its images to the last bit; on another teacher ``run`` stops, and a new frontier of the task
starts in another ``--out`` with its baselines run again."""
REPORT = "frontier.md"
PAIRED_AGAINST = {"scratch": "the thin student from scratch",
                  "uniform": "uniform pruning",
                  "scratch_teacher_targets": "the thin student from scratch, teacher targets",
                  "uniform_teacher_targets": "uniform pruning, teacher targets",
                  "scratch_g_teacher_targets": "the thin G from scratch with the teacher's D",
                  "separable_teacher_targets": "the separable U-Net from scratch (GAN "
                                               "Compression's student)",
                  "mggc_screened_teacher_targets": "MGGC with the screen"}
"""The baselines every other method is paired with, by seed, where both were run (MGGC with
the screen: its ablations, listed after it)."""
TEACHER_LEVEL = 0.05
PAIRED_MACS_GAP = 0.2
"""Cells are paired only when their G MACs differ by at most this share (the 2.5% separable
student has 13% fewer MACs than pruning's, and is paired; the 25% one has half, and is not)."""
COLUMNS = (("fid", "FID", "{:.1f}", 1.0), ("kid", "KID x1e3", "{:.1f}", 1e3),
           ("psnr_teacher", "PSNR-T", "{:.2f}", 1.0), ("psnr", "PSNR", "{:.2f}", 1.0),
           ("ssim_teacher", "SSIM-T", "{:.3f}", 1.0))


def results_file(out: Path, task: str, variant: str = "") -> Path:
    """Where the frontier keeps ``task``'s cells of one recipe variant (``VARIANTS``)."""
    return out / f"frontier_{task}{'_' + variant if variant else ''}.jsonl"


def plans(args: argparse.Namespace, task: str) -> dict[str, tuple[Group, ...]]:
    """The cell groups to run for ``task``, by recipe variant: the published plan with
    ``--published``, else the one group of the flags under ``--variant``."""
    if args.published:
        return PUBLISHED[task]
    return {args.variant: ((tuple(args.methods), tuple(args.budgets), tuple(args.seeds)),)}


def variant_recipe(variant: str, passthrough: list[str]) -> list[str]:
    """The ``--recipe`` arguments of a recipe variant; asking for another recipe on top of a
    variant's is an error (its cells would not be that variant's)."""
    changes = VARIANTS[variant]
    if not changes:
        return []
    if "--recipe" in passthrough:
        raise SystemExit(f"error: the {variant} cells run with --recipe "
                         f"{' '.join(_recipe_args(changes))}; run other recipes as today's variant")
    return ["--recipe", *_recipe_args(changes)]


def _recipe_args(changes: dict[str, Any]) -> list[str]:
    return [f"{k}:{v}" for k, v in changes.items()]


def command_run(args: argparse.Namespace, passthrough: list[str]) -> int:
    """``compare_methods.py run`` per task, recipe variant and cell group, into the frontier's
    own results files."""
    out = Path(args.out)
    code = 0
    for task in args.tasks:
        for variant, groups in plans(args, task).items():
            recipe = variant_recipe(variant, passthrough)
            for methods, budgets, seeds in groups:
                argv = ["run", "--tasks", task, "--budgets", *map(str, budgets),
                        "--methods", *methods, "--seeds", *map(str, seeds),
                        "--workers", str(args.workers),
                        "--results", str(results_file(out, task, variant)),
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


Row = tuple[str, str]
"""A row of a task's table: (method, recipe variant)."""
Cells = dict[tuple[Row, float], dict[int, dict]]


def row_name(row: Row) -> str:
    method, variant = row
    return f"{method} ({variant})" if variant else method


def _teacher(records: list[dict[str, Any]]) -> tuple[float, float]:
    """The teacher's FID and its bootstrap std, as the cells recorded them."""
    quality = records[0]["teacher_quality"]
    return quality.get("fid", math.nan), quality.get("fid_std", math.nan)


def _teacher_level(records: list[dict[str, Any]]) -> float:
    fid, std = _teacher(records)
    return max(fid * (1 + TEACHER_LEVEL), fid + std)


def _variant_header(variant: str, records: list[dict[str, Any]]) -> str:
    first = records[0]
    tq, tc = first["teacher_quality"], first["compute"]["generator/teacher"]
    fid, fid_std = _teacher(records)
    return (f"- {'today' if not variant else variant} ({len(records)} cells): teacher G "
            f"{tc['macs'] / 1e6:.1f} M MACs, FID {fid:.1f} ± {fid_std:.1f} (bootstrap), KID "
            f"x1e3 {tq.get('kid', math.nan) * 1e3:.1f}, PSNR {tq['psnr']:.2f} dB; seeds "
            f"{sorted({r['seed'] for r in records})}; search rounds "
            f"{sorted({r['rounds'] for r in records})}; fine-tuning steps "
            f"{sorted({r['finetune_steps'] for r in records})}; {first['eval_images']} test "
            f"images; commits {sorted({r.get('commit', '?')[:12] for r in records})}; teacher "
            f"SHA-1 {sorted({r.get('teacher_sha1', '?')[:12] for r in records})}")


def task_section(task: str, by_variant: dict[str, list[dict[str, Any]]], out: Path
                 ) -> list[str]:
    """``task``'s table, teacher-level cuts, paired margins and plot, from its records by recipe
    variant (rows of one method and two variants are two rows, never averaged together)."""
    cells: Cells = defaultdict(dict)
    for variant, records in by_variant.items():
        for r in records:
            cells[((r["method"], variant), r["budget"])][r["seed"]] = r
    budgets = sorted({b for _, b in cells}, reverse=True)
    order = list(dict.fromkeys(FRONTIER_METHODS + tuple(METHODS)))
    rows = [(m, v) for v in by_variant for m in order if any(k[0] == (m, v) for k in cells)]
    lines = [f"## Task `{task}`\n", "Recipe variants (rows of another variant than today's "
             "are named with it):\n",
             *(_variant_header(v, records) for v, records in by_variant.items()), "",
             _recipe_note(cells, rows)]
    header = ["method", "seeds", "G MACs kept", "x fewer"] + [h for _, h, _, _ in COLUMNS]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for budget in budgets:
        for row in rows:
            group = list(cells.get((row, budget), {}).values())
            if not group:
                continue
            ratio = _kept(cells[(row, budget)])
            cols = [row_name(row), str(len(group)), f"{ratio:.1%}", f"{1 / ratio:.1f}"]
            cols += [_fmt([_quality(r, m, k) for r in group], f) for m, _, f, k in COLUMNS]
            lines.append("| " + " | ".join(cols) + " |")
    lines += ["", f"**Teacher level** (mean FID <= the variant's teacher FID x "
                  f"{1 + TEACHER_LEVEL:g}, or within its bootstrap std: "
                  + ", ".join(f"{v or 'today'} {_teacher_level(r):.1f}"
                              for v, r in by_variant.items()) + "):\n"]
    lines += [_teacher_level_line(row, cells, budgets, _teacher_level(by_variant[row[1]]))
              for row in rows]
    lines.append("")
    for variant in by_variant:
        variant_rows = [row for row in rows if row[1] == variant]
        methods = [m for m, _ in variant_rows]
        for base, label in PAIRED_AGAINST.items():
            if base in methods:  # each pair once: against the rows listed after the base
                lines += _paired(cells, variant_rows[methods.index(base) + 1:], budgets,
                                 (base, variant), label)
    _plot(task, cells, rows, budgets, by_variant, out / f"frontier_{task}.png")
    lines.append(f"![frontier {task}](frontier_{task}.png)\n")
    return lines


def _kept(group: dict[int, dict]) -> float:
    """The mean share of the teacher's G MACs a cell group kept (below its budget for a
    student capped at the teacher's width)."""
    return float(np.mean([r["compute"]["generator/pruned"]["macs"]
                          / r["compute"]["generator/teacher"]["macs"] for r in group.values()]))


def _teacher_level_line(row: Row, cells: Cells, budgets: list[float], threshold: float) -> str:
    kept_fid = [(_kept(group), _mean_std([_quality(r, "fid") for r in group.values()])[0])
                for b in budgets if (group := cells.get((row, b)))]
    reached = [kept for kept, fid in kept_fid if fid <= threshold]
    if not reached:
        return f"- {row_name(row)}: never at teacher level"
    lowest = min(reached)
    missed = [f"{kept:.1%}" for kept, fid in kept_fid if kept > lowest and fid > threshold]
    return (f"- {row_name(row)}: teacher-level FID down to {lowest:.1%} of the teacher's G MACs "
            f"({1 / lowest:.1f}x fewer)" + (f"; not at {', '.join(missed)}" if missed else ""))


def _recipe_note(cells: Cells, rows: list[Row]) -> str:
    """Which recipe each row ran: the fields in which its cells differ from today's defaults
    (``FinetuneConfig``), rows with the same changes together."""
    changes: dict[Row, set[str]] = defaultdict(set)
    for (row, _), group in cells.items():
        for record in group.values():
            changed = recipe_changes(record, against_method=False)
            changes[row].add(", ".join(f"{k} {v}" for k, v in sorted(changed.items()))
                             or "today's recipe")
    by_recipe: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_recipe[" / ".join(sorted(changes[row]))].append(row_name(row))
    lines = ["Recipe of each row, as it differs from today's `FinetuneConfig` defaults:\n"]
    lines += [f"- {recipe}: {', '.join(group)}" for recipe, group in by_recipe.items()]
    return "\n".join(lines) + "\n"


def _targets(record: dict[str, Any]) -> str:
    return effective_recipe(record["config"]["finetune"], record["task"])["targets"]


def _comparable(ours: dict[str, Any], reference: dict[str, Any]) -> bool:
    """Whether two cells of one seed are a fair pair: trained on the same targets (the
    dataset's or the teacher's) from the same teacher (a retrained one can differ in its
    weights though not in its FID)."""
    return (_targets(ours) == _targets(reference)
            and same_teacher(ours.get("teacher_sha1"), reference.get("teacher_sha1")))


def _paired(cells: Cells, rows: list[Row], budgets: list[float], base: Row, label: str
            ) -> list[str]:
    """Per budget and row, the seed-paired differences from ``base`` (FID, PSNR-T) and on how
    many seeds the row is better; nothing when no row shares comparable seeds with ``base``."""
    lines = []
    for budget in budgets:
        reference = cells.get((base, budget), {})
        for row in rows:
            ours = cells.get((row, budget), {})
            common = sorted(s for s in set(ours) & set(reference)
                            if _comparable(ours[s], reference[s]))
            if row == base or not common or not _similar_macs(ours, reference):
                continue
            fid = [_quality(ours[s], "fid") - _quality(reference[s], "fid") for s in common]
            pt = [_quality(ours[s], "psnr_teacher") - _quality(reference[s], "psnr_teacher")
                  for s in common]
            fid_wins, pt_wins = sum(f < 0 for f in fid), sum(p > 0 for p in pt)
            both = sum(f < 0 and p > 0 for f, p in zip(fid, pt))
            lines.append(f"- {budget:.1%}, {row_name(row)}: FID {_fmt(fid, '{:+.1f}')} (lower "
                         f"in {fid_wins} of {len(common)} seeds), PSNR-T {_fmt(pt, '{:+.2f}')} "
                         f"(higher in {pt_wins}); better on both in {both}")
    if not lines:
        return []
    return [f"**Against {label}{f' ({base[1]})' if base[1] else ''}** (paired by seed, row "
            f"minus {row_name(base)}; FID lower is better, PSNR-T higher):\n", *lines, ""]


def _similar_macs(ours: dict[int, dict], reference: dict[int, dict]) -> bool:
    """Whether two cell groups of one budget have G MACs within :data:`PAIRED_MACS_GAP` of each
    other: a student capped below its budget (the separable U-Net at the teacher's width is
    12.8% of its MACs in the 25% cells) is no equal-MACs comparison."""
    def macs(group):
        return np.mean([r["compute"]["generator/pruned"]["macs"] for r in group.values()])

    a, b = macs(ours), macs(reference)
    return abs(a - b) <= PAIRED_MACS_GAP * max(a, b)


def _plot(task: str, cells: Cells, rows: list[Row], budgets: list[float],
          by_variant: dict[str, list[dict[str, Any]]], path: Path) -> None:
    from matplotlib import ticker

    teacher_macs = next(iter(by_variant.values()))[0]["compute"]["generator/teacher"]["macs"]
    teacher_fids = sorted({round(_teacher(records)[0], 1) for records in by_variant.values()})
    fig, axes = subplots(1, 2, figsize=(11, 4))
    for ax, (metric, label) in zip(axes, (("fid", "FID (lower is better)"),
                                          ("psnr_teacher", "PSNR to teacher (dB)"))):
        for row in rows:
            xs, ms, ss = [], [], []
            for budget in budgets:
                group = list(cells.get((row, budget), {}).values())
                if group:
                    xs.append(np.mean([r["compute"]["generator/pruned"]["macs"] for r in group])
                              / 1e6)
                    mean, std = _mean_std([_quality(r, metric) for r in group])
                    ms.append(mean)
                    ss.append(std)
            if xs:
                variant = f" ({row[1]})" if row[1] else ""
                ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3,
                            label=METHODS[row[0]].label + variant)
        if metric == "fid":
            for i, fid in enumerate(teacher_fids):  # one line per teacher FID recorded
                first = i == 0
                ax.axhline(fid, color="black", linewidth=1, label="teacher" if first else None)
                ax.axhline(fid * (1 + TEACHER_LEVEL), color="black", linewidth=1,
                           linestyle=":", label=f"teacher +{TEACHER_LEVEL:.0%}" if first else None)
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
        by_variant = {v: records for v in VARIANTS
                      if (records := read_records(results_file(out, task, v)))}
        if by_variant:
            lines += task_section(task, by_variant, out)
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
    run.add_argument("--variant", default="", choices=sorted(VARIANTS),
                     help="the recipe variant of the flags' cells (its recipe and results "
                          "file; default today's recipe)")
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
