"""Which fine-tuning recipe keeps the teacher's images, and for how long must it train?

Quality (real FID/KID, PSNR to the teacher and to the target) against fine-tuning length, for
recipe variants of the one recipe (``FinetuneConfig``), on the two starting points that matter:
the uniform architecture inheriting the teacher's weights (``uniform``) and the same thin
network re-initialised (``scratch``). Every cell is a comparison cell (``compare.cells.run_cell``:
the same search -> slice -> fine-tune -> evaluate path as the method comparison), so the numbers
are comparable with it. The learning rate decays linearly over the last half of each run (the
reference pix2pix schedule), whatever its length.

Variants (``--variants``):

===================  ========================================================================================
``output``           the recipe before this benchmark: 100 x L1 to the target + 10 x L1 to the teacher + cGAN
``feature``          + intermediate feature distillation, "auto" layers, 1x1 adapters (GAN Compression)
``ema``              ``feature`` + an EMA of the generator's weights (decay 0.999)
``density``          ``feature`` + the local-density term (METHOD 6) as a fine-tuning loss (weight 1)
``teacher_targets``  ``ema`` with the teacher's outputs as the real images (``targets: teacher``)
===================  ========================================================================================

Each finished cell is appended to ``recipe_curve.jsonl`` at once; rerun the same command to resume.
``report`` writes ``recipe_curve.md`` (tables, paired differences by seed) and ``recipe_curve.png``.

Example (about 40 minutes on 2 idle cores)::

    python benchmarks/recipe_curve.py run --steps 600 1500 3000 --seeds 0 1 --workers 2
    python benchmarks/recipe_curve.py report
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from compare.cells import run_cells
from compare.plots import save_figure, subplots
from compare.spec import DEFAULT_OUT, check_choices
from compare.store import append_record, read_records

# Every variant names its distillation, EMA and target fields, so it means the same whatever
# the recipe's defaults are.
VARIANTS: dict[str, dict[str, Any]] = {
    "output": {"feature_layers": [], "ema_decay": 0.0, "targets": "data"},
    "feature": {"feature_layers": "auto", "ema_decay": 0.0, "targets": "data"},
    "ema": {"feature_layers": "auto", "ema_decay": 0.999, "targets": "data"},
    "density": {"feature_layers": "auto", "ema_decay": 0.0, "lambda_density": 1.0,
                "targets": "data"},
    "teacher_targets": {"feature_layers": "auto", "ema_decay": 0.999, "targets": "teacher"},
}
STARTS = ("uniform", "scratch")
RESULTS = "recipe_curve.jsonl"
REPORT = "recipe_curve.md"
PLOT = "recipe_curve.png"
METRICS = (("fid", "FID", "{:.1f}", 1.0), ("kid", "KID x1e3", "{:.1f}", 1e3),
           ("psnr_teacher", "PSNR-T (dB)", "{:.2f}", 1.0), ("psnr", "PSNR (dB)", "{:.2f}", 1.0))


def curve_key(cell: dict[str, Any]) -> str:
    return (f"{cell['task']}|{cell['budget']:g}|{cell['method']}|{cell['variant']}|"
            f"{cell['finetune_steps']}|{cell['seed']}")


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seeds outermost, then the short runs first: a stopped run leaves whole curves."""
    return [{"task": "default", "budget": args.budget, "method": start, "variant": variant,
             "seed": seed, "rounds": 2, "finetune_steps": steps, "eval_images": args.eval_images,
             "latency_runs": 3, "teacher": None, "threads": 1,
             "work_dir": str(Path(args.out) / ".recipe_work"),
             "recipe": {**VARIANTS[variant], "lr_decay_steps": steps // 2}}
            for seed in args.seeds for steps in args.steps for start in STARTS
            for variant in args.variants]


def command_run(args: argparse.Namespace) -> int:
    check_choices("variant", args.variants, VARIANTS)
    results = Path(args.out) / RESULTS
    done = {r["key"] for r in read_records(results)}
    todo = [c for c in plan(args) if curve_key(c) not in done]
    print(f"{len(todo)} cells to run ({len(done)} done) with {args.workers} worker(s)", flush=True)

    def record(result: dict[str, Any]) -> None:
        cell = next(c for c in todo if c["method"] == result["method"]
                    and c["seed"] == result["seed"] and c["recipe"] == result["recipe"]
                    and c["finetune_steps"] == result["finetune_steps"])
        result.update(key=curve_key(cell), variant=cell["variant"])
        result.pop("dynamics", None)  # the search is trivial here
        append_record(results, result)
        q = result["quality"]
        print(f"{result['key']}: FID {q['fid']:.1f}, PSNR-T {q['psnr_teacher']:.2f} "
              f"(fine-tune {result['timing_s']['finetune']:.0f} s)", flush=True)

    failed = run_cells(todo, args.workers, None, record, curve_key)
    make_report(Path(args.out))
    return 1 if failed else 0


def _stat(values: list[float], fmt: str) -> str:
    if not values:
        return "—"
    if len(values) == 1:  # one seed has no spread
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(float(np.std(values, ddof=1)))}"


def _value(record: dict[str, Any], metric: str, scale: float) -> float:
    return record["quality"].get(metric, math.nan) * scale


def make_report(out: Path) -> Path:
    """Tables per starting point (variants x lengths), paired differences against ``output``
    at the same length and seed, and the curve plot."""
    records = read_records(out / RESULTS)
    if not records:
        raise SystemExit(f"error: no records in {out / RESULTS}")
    groups: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for r in records:
        groups[(r["method"], r["variant"], r["finetune_steps"])][r["seed"]] = r
    steps = sorted({r["finetune_steps"] for r in records})
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
    first = records[0]
    tq = first["teacher_quality"]
    lines = ["# Fine-tuning recipe: quality against length\n",
             f"Default task, G budget {first['budget']:.0%} (uniform architecture, "
             f"{first['compute']['generator/pruned']['macs'] / 1e6:.1f} M of "
             f"{first['compute']['generator/teacher']['macs'] / 1e6:.1f} M MACs), "
             f"{first['eval_images']} test images; seeds "
             f"{sorted({r['seed'] for r in records})}; commit {first.get('commit', '?')}, "
             f"teacher SHA-1 {first.get('teacher_sha1', '?')}. Teacher: FID "
             f"{tq.get('fid', math.nan):.1f}, KID x1e3 {tq.get('kid', math.nan) * 1e3:.1f}, "
             f"PSNR {tq['psnr']:.2f} dB. Regenerate: see the docstring of "
             "`benchmarks/recipe_curve.py`.\n"]
    for start in STARTS:
        lines.append(f"## `{start}`\n")
        header = (["variant", "steps", "seeds"] + [h for _, h, _, _ in METRICS]
                  + ["fine-tune s"])
        lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        for variant in variants:
            for n in steps:
                cells = list(groups.get((start, variant, n), {}).values())
                if not cells:
                    continue
                row = [variant, str(n), str(len(cells))] + [_stat([_value(c, m, k) for c in cells], f)
                                           for m, _, f, k in METRICS]
                row.append(f"{np.mean([c['timing_s']['finetune'] for c in cells]):.0f}")
                lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lines.append("Paired by seed, variant minus `output` at the same length (FID: lower is "
                     "better; PSNR-T: higher):\n")
        for variant in variants[1:]:
            for n in steps:
                ours, base = groups.get((start, variant, n), {}), groups.get((start, "output", n), {})
                common = sorted(set(ours) & set(base))
                if not common:
                    continue
                diffs = {m: [_value(ours[s], m, 1) - _value(base[s], m, 1) for s in common]
                         for m in ("fid", "psnr_teacher")}
                lines.append(f"- {variant} @ {n}: FID {_stat(diffs['fid'], '{:+.1f}')}, PSNR-T "
                             f"{_stat(diffs['psnr_teacher'], '{:+.2f}')} (n={len(common)})")
        lines.append("")
    path = out / REPORT
    path.write_text("\n".join(lines))
    (out / "recipe_curve.json").write_text(json.dumps(
        {f"{k[0]}|{k[1]}|{k[2]}": {m: [_value(c, m, s) for c in v.values()]
                                   for m, _, _, s in METRICS} for k, v in groups.items()},
        indent=1))
    _plot(groups, steps, variants, tq, out / PLOT)
    print(f"wrote {path} and {out / PLOT}")
    return path


def _plot(groups, steps, variants, teacher_quality, path: Path) -> None:
    from matplotlib import ticker

    fig, axes = subplots(1, 2, figsize=(11, 4))
    for ax, (metric, label, _, scale) in zip(axes, METRICS[:3:2]):
        for start, style in zip(STARTS, ("-", "--")):
            for variant in variants:
                xs, ms, ss = [], [], []
                for n in steps:
                    vals = [_value(c, metric, scale) for c in groups.get((start, variant, n),
                                                                          {}).values()]
                    if vals:
                        xs.append(n)
                        ms.append(np.mean(vals))
                        ss.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
                if xs:
                    ax.errorbar(xs, ms, yerr=ss, linestyle=style, marker="o", capsize=3,
                                label=f"{start} / {variant}")
        if metric in teacher_quality:
            ax.axhline(teacher_quality[metric] * scale, color="black", linewidth=1,
                       label="teacher")
        ax.set_xlabel("fine-tuning steps")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xticks(steps)
    axes[0].legend(fontsize=7)
    save_figure(fig, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) the cells, then write the report")
    run.add_argument("--steps", nargs="+", type=int, default=[600, 1500, 3000])
    run.add_argument("--variants", nargs="+", default=["output", "feature", "ema"])
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    run.add_argument("--budget", type=float, default=0.1)
    run.add_argument("--eval-images", type=int, default=100)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--out", default=str(DEFAULT_OUT))
    rep = sub.add_parser("report", help="tables and plot from the JSONL")
    rep.add_argument("--out", default=str(DEFAULT_OUT))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "report":
        make_report(Path(args.out))
        return 0
    return command_run(args)


if __name__ == "__main__":
    sys.exit(main())
