"""CPU latency of physically sliced generators against their unpruned teacher.

MACs are what papers report; latency is what users feel (REFERENCES: a compressed generator that
ran no faster on CPU than the original). For uniform keep ratios this script slices each
generator with ``slice_model``, then times the sliced and the unpruned model *interleaved* in
the same rounds (so background load hits both alike), batch 1, ``torch.inference_mode``, eval
mode, a fixed thread count. It reports, per row: MACs (field convention) and their ratio,
parameters, median latency with its interquartile range, and the speed-up over the unpruned
model measured in the same run.

Outputs (in ``--out``, default ``benchmarks/results``): ``latency_vs_macs.json``,
``latency_vs_macs.md`` and ``latency_vs_macs.png`` (speed-up vs MACs reduction, ideal y = x).

    python benchmarks/latency_vs_macs.py            # full run (a few minutes on 2 cores)
    python benchmarks/latency_vs_macs.py --quick    # small sizes, few repeats (seconds)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compare.cells import cpu_name, git_commit
from compare.plots import save_figure, subplots
from gan_prune_env.models import GeneratorConfig, build_generator
from gan_prune_env.pruning import ChannelSpace, count_params, slice_model

RATIOS = (1.0, 0.75, 0.5, 0.35, 0.25)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Setting:
    label: str
    config: GeneratorConfig
    size: int
    repeats: int  # timed rounds unless --repeats overrides (small models afford many)


def settings(quick: bool) -> list[Setting]:
    task = GeneratorConfig(arch="unet_auto", image_size=64, ngf=16, norm="batch")
    if quick:
        return [
            Setting("task unet_auto ngf16 @64", task, 64, 10),
            Setting("unet_128 ngf16 @128", GeneratorConfig(arch="unet_128", ngf=16), 128, 5),
            Setting("resnet_9blocks ngf16 @64", GeneratorConfig(
                arch="resnet_9blocks", ngf=16, norm="instance"), 64, 5),
        ]
    return [
        Setting("task unet_auto ngf16 @64", task, 64, 60),
        Setting("unet_256 ngf64 @256", GeneratorConfig(arch="unet_256", ngf=64, norm="batch"),
                256, 12),
        Setting("resnet_9blocks ngf64 @256", GeneratorConfig(
            arch="resnet_9blocks", ngf=64, norm="instance"), 256, 12),
    ]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, med, q3 = np.percentile(np.asarray(values), [25, 50, 75])
    return float(q1), float(med), float(q3)


def time_interleaved(models: list[nn.Module], x: torch.Tensor, warmup: int, repeats: int,
                     seed: int = 0) -> list[list[float]]:
    """Seconds per forward; every round runs each model once, in a fresh random order."""
    order = list(range(len(models)))
    rng = random.Random(seed)
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for round_ in range(warmup + repeats):
            rng.shuffle(order)
            for i in order:
                start = time.perf_counter()
                models[i](x)
                elapsed = time.perf_counter() - start
                if round_ >= warmup:
                    times[i].append(elapsed)
    return times


def bench_setting(setting: Setting, ratios: tuple[float, ...], warmup: int,
                  repeats: int | None, seed: int) -> list[dict]:
    repeats = repeats or setting.repeats
    teacher = build_generator(setting.config, seed=seed).eval()
    x = torch.randn(1, setting.config.input_nc, setting.size, setting.size,
                    generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    space = ChannelSpace(teacher, x)
    trace_s = time.perf_counter() - t0
    pruned, counts_list = [], []
    for r in ratios:
        counts = space.counts_for_ratios([r] * space.num_groups)
        counts_list.append(counts)
        pruned.append(slice_model(teacher, space, counts, example_input=x).eval())
    models = [teacher] + pruned
    times = time_interleaved(models, x, warmup, repeats, seed=seed)
    t_teacher = times[0]
    _, teacher_med, _ = quartiles(t_teacher)
    rows = []
    for r, counts, model, t in zip(ratios, counts_list, pruned, times[1:]):
        q1, med, q3 = quartiles(t)
        rows_extra = {"repeats": repeats, "latency_ms_min": min(t) * 1e3,
                      "teacher_latency_ms_min": min(t_teacher) * 1e3,
                      "speedup_best": min(t_teacher) / min(t)}
        paired = [a / b for a, b in zip(t_teacher, t)]  # same round: shared background load
        macs = space.macs(counts)
        rows.append({
            "arch": setting.label,
            "generator": setting.config.arch,
            "ngf": setting.config.ngf,
            "norm": setting.config.norm,
            "image_size": setting.size,
            "ratio": r,
            "channels": counts.tolist(),
            "macs": int(macs),
            "macs_true": int(space.macs(counts, convention="true")),
            "macs_ratio": macs / space.full_macs,
            "macs_reduction": space.full_macs / macs,
            "params": int(count_params(model)),
            "params_ratio": count_params(model) / space.full_params,
            "latency_ms_median": med * 1e3,
            "latency_ms_q1": q1 * 1e3,
            "latency_ms_q3": q3 * 1e3,
            "latency_ms_iqr": (q3 - q1) * 1e3,
            "teacher_latency_ms_median": teacher_med * 1e3,
            "speedup": teacher_med / med,
            "speedup_paired_median": statistics.median(paired),
            "trace_s": trace_s,
            **rows_extra,
        })
    return rows


def write_markdown(rows: list[dict], meta: dict, path: Path) -> None:
    lines = [
        f"CPU latency, batch 1, {meta['threads']} threads, median of N interleaved runs (N in the "
        f"table) after {meta['warmup']} warm-up rounds (commit {meta['commit']}; {meta['cpu']}, "
        f"{meta['cpu_count']} "
        f"cores; torch {meta['torch']}). Load average before/after: "
        f"{meta['loadavg_before'][0]:.2f} / {meta['loadavg_after'][0]:.2f}. MACs: field "
        "convention (transposed convs at output resolution). Speed-up: unpruned median / pruned "
        "median, both measured in the same run; 'best' uses the fastest run of each instead "
        "(less sensitive to other processes on the machine).",
        "",
    ]
    # the 1-min load after the run includes the benchmark's own threads: only the rest is "other"
    busiest = max(meta["loadavg_before"][0], meta["loadavg_after"][0] - meta["threads"])
    if busiest > 0.5 * (meta["cpu_count"] or 1):
        lines += [
            f"**Warning:** other work kept the machine busy (load average up to {busiest:.1f} "
            f"besides this benchmark, on "
            f"{meta['cpu_count']} cores) while timing: latencies are inflated and noisy. MACs "
            "and params are exact; trust the speed-ups only roughly, and rerun on an idle "
            "machine for numbers to quote.",
            "",
        ]
    lines += [
        "| arch | keep ratio | MACs (G) | MACs ratio | params (M) | latency median (ms) | "
        "IQR (ms) | N | speed-up | speed-up (best) | MACs reduction |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['ratio']:.2f} | {r['macs'] / 1e9:.3f} | {r['macs_ratio']:.3f} | "
            f"{r['params'] / 1e6:.3f} | {r['latency_ms_median']:.2f} | {r['latency_ms_iqr']:.2f} | "
            f"{r['repeats']} | {r['speedup']:.2f}x | {r['speedup_best']:.2f}x | "
            f"{r['macs_reduction']:.2f}x |")
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib.ticker  # noqa: F401 - used as matplotlib.ticker

    fig, ax = subplots(figsize=(6.4, 5.2), dpi=120)
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    top = max(max(r["macs_reduction"] for r in rows), max(r["speedup"] for r in rows)) * 1.15
    ax.plot([1, top], [1, top], "k--", lw=1, label="ideal (speed-up = MACs reduction)")
    for arch, marker in zip(archs, "osD^v"):
        sel = [r for r in rows if r["arch"] == arch]
        xs = [r["macs_reduction"] for r in sel]
        ys = [r["speedup"] for r in sel]
        # error bars from the interquartile range of the pruned model's latency
        lo = [r["speedup"] - r["teacher_latency_ms_median"] / r["latency_ms_q3"] for r in sel]
        hi = [r["teacher_latency_ms_median"] / r["latency_ms_q1"] - r["speedup"] for r in sel]
        ax.errorbar(xs, ys, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], marker=marker,
                    capsize=3, label=arch)
        for r in sel:
            ax.annotate(f"{r['ratio']:g}", (r["macs_reduction"], r["speedup"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
    bottom = min(0.85, min(r["speedup"] for r in rows) * 0.8)
    ticks = [2.0**k for k in range(int(np.floor(np.log2(bottom))), int(np.ceil(np.log2(top))) + 1)]
    for axis, setter in ((ax.xaxis, ax.set_xscale), (ax.yaxis, ax.set_yscale)):
        setter("log", base=2)
        axis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        axis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlim(0.85, top)
    ax.set_ylim(bottom, top)
    ax.set_xlabel("MACs reduction (unpruned MACs / pruned MACs)")
    ax.set_ylabel("CPU latency speed-up (unpruned / pruned)")
    ax.set_title("Sliced generators: latency vs MACs (labels: keep ratio)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    save_figure(fig, path, dpi="figure")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds for every setting (default: 60 for the task model, "
                             "12 for the 256 px ones; quick: 10 / 5)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed rounds (default 2, quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    repeats = args.repeats
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if (repeats is not None and repeats < 1) or warmup < 0 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()
    start = time.perf_counter()
    rows = []
    for setting in settings(args.quick):
        t = time.perf_counter()
        rows += bench_setting(setting, RATIOS, warmup, repeats, args.seed)
        print(f"{setting.label}: {time.perf_counter() - t:.1f} s", flush=True)
    meta = {
        "quick": args.quick, "repeats": repeats, "warmup": warmup, "threads": args.threads,
        "batch": 1, "seed": args.seed, "torch": torch.__version__,
        "python": platform.python_version(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "wall_s": time.perf_counter() - start,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "macs_convention": "field (transposed convs at output resolution); macs_true also given",
    }
    result = {"meta": meta, "rows": rows}
    (args.out / "latency_vs_macs.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(rows, meta, args.out / "latency_vs_macs.md")
    plot(rows, args.out / "latency_vs_macs.png")
    print((args.out / "latency_vs_macs.md").read_text())
    return result


if __name__ == "__main__":
    main()
