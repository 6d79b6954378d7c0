"""JSONL records -> the markdown report (tables, winners, dynamics) and the JSON summary."""

from __future__ import annotations

import math
import datetime as _dt
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .plots import plot_dynamics, plot_quality
from .spec import (
    BASELINES, DEFAULT_OUT, DYNAMICS_PLOT, METHODS, QUALITY_PLOT, REPORT_FILE, RESULTS_FILE,
    SUMMARY_FILE, TASKS, ordered, rel_path,
)
from .store import read_records

# metric key, header, higher is better, format
METRICS = [
    ("g_macs_m", "G MACs (M)", False, "{:.2f}"),
    ("g_params_m", "G params (M)", False, "{:.3f}"),
    ("psnr", "PSNR (dB)", True, "{:.2f}"),
    ("psnr_teacher", "PSNR-T (dB)", True, "{:.2f}"),
    ("ssim", "SSIM", True, "{:.3f}"),
    ("fid", "FID", False, "{:.1f}"),
    ("kid", "KID x1e3", False, "{:.1f}"),
    ("proxy_fd", "proxy FD", False, "{:.3f}"),
    ("latency_ms", "G latency (ms)", False, "{:.2f}"),
]
QUALITY = ("psnr", "psnr_teacher", "ssim", "fid", "kid", "proxy_fd")


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
        # cells recorded before the real FID existed have none: NaN, shown as "—"
        "fid": q.get("fid", math.nan), "kid": q.get("kid", math.nan) * 1e3,
        "latency_ms": pruned_ms, "speedup": teacher_ms / pruned_ms,
        "within_budget": float(record["best"]["within_budget"]),
        "reward_g": record["best"]["rewards"]["generator"],
        "reward_d": record["best"]["rewards"]["discriminator"],
        "best_round": float(record["best"]["round"]),
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
        if math.isnan(self.mean):
            return "—"
        return f"{fmt.format(self.mean)} ± {fmt.format(self.std)}"

    def range(self, fmt: str) -> str:
        return f"{fmt.format(self.lo)}–{fmt.format(self.hi)}"


def aggregate(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Stat]]:
    groups: dict[tuple, list[dict[str, float]]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["budget"], r["method"])].append(cell_metrics(r))
    return {key: {m: Stat.of([row[m] for row in rows]) for m in rows[0]}
            for key, rows in groups.items()}


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
            if metric not in QUALITY or any(math.isnan(stats[(task, budget, m)][metric].mean)
                                            for m in present):
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


# Methods whose env differs from the standard one (objective or D budget): their rewards are on
# another scale and are listed apart.
OTHER_REWARD_SCALE = {"mggc_no_density": "L1-only objective, patched L_G_ref",
                      "mggc_g_alone": "budget_d = 1.0, full D judges"}


def rewards_section(stats, task, budgets, methods) -> list[str]:
    """The search's own score: the best G reward of a pair within both budgets, per method."""
    lines = ["Best pair found by the search (the one that is then fine-tuned): its G and D "
             "rewards in the env, frozen weights, before any fine-tuning; mean ± std over seeds "
             "(min–max). Same env, budget and number of rounds for every method.\n"]
    for budget in budgets:
        lines.append(f"Budget {budget:.0%}:\n")
        lines.append("| method | seeds | best r_G | r_G min–max | r_D of that pair | found at round |")
        lines.append("|---|---|---|---|---|---|")
        for method in methods:
            s = stats.get((task, budget, method))
            if not s:
                continue
            note = f" ({OTHER_REWARD_SCALE[method]}; not comparable)" \
                if method in OTHER_REWARD_SCALE else ""
            lines.append(f"| {method}{note} | {s['reward_g'].n} | {s['reward_g'].pm('{:.3f}')} | "
                         f"{s['reward_g'].range('{:.3f}')} | {s['reward_d'].pm('{:.3f}')} | "
                         f"{s['best_round'].pm('{:.0f}')} |")
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
        rows, rounds = [], 0
        for method in methods:
            recs = [r for r in records if (r["task"], r["budget"], r["method"]) ==
                    (task, budget, method)]
            if not recs:  # a method run at other budgets only
                continue
            rounds = len(recs[0]["dynamics"]["g_loss"])
            per_seed = [dynamics_stats(r) for r in recs]
            cells = [Stat.of([s[k] for s in per_seed]).pm(fmt) for k, _, fmt in DYN_COLUMNS]
            rows.append(f"| {method} | {len(recs)} | " + " | ".join(cells) + " |")
        if rows:
            lines.append(f"Budget {budget:.0%}, second half of the search (rounds "
                         f"{rounds // 2}+), per-seed statistic, "
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
    tasks = ordered({r["task"] for r in records}, TASKS)
    methods_all = ordered({r["method"] for r in records}, list(METHODS))
    lines = ["# Does the local-density method beat the baselines at equal compute?", "",
             f"Generated by `benchmarks/compare_methods.py report` from `{rel_path(results)}` "
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
    ft = records[0]["config"]["finetune"]
    lines.append(f"Fine-tuning recipe (all cells): batch {ft['batch_size']}, Adam lr {ft['lr']} "
                 f"betas (0.5, 0.999), L1-to-target x{ft['lambda_task'] or 100:g}, distillation from the "
                 f"teacher x{ft['lambda_distill']:g}, linear LR decay over the last "
                 f"min(300, steps) steps; seed = cell seed. D budget: env default 0.5 (1.0 for "
                 "`mggc_g_alone`, whose D stays full). Env data seed fixed at 0; the cell seed "
                 "seeds the agent, global RNGs and fine-tuning.")
    if any(r["config"].get("g_reference_patched") for r in records):
        lines.append("")
        lines.append("`mggc_no_density` (reward = L1 to the teacher only): the unpruned pair's "
                     "L_G is 0 there, so the env takes L_G_ref from the uniform pair within budget "
                     "(reward loss term -1 at uniform; `reference_source` is \"uniform\"), see "
                     "`PruningGame._measure_references`.")
    lines.append("")
    for task in tasks:
        recs = [r for r in records if r["task"] == task]
        budgets = sorted({r["budget"] for r in recs}, reverse=True)
        methods = ordered({r["method"] for r in recs}, list(METHODS))
        if task == "facades":
            lines.append("Facades teacher: trained by `python benchmarks/compare_methods.py "
                         "teacher` (built-in facades recipe, 1000 steps at batch 1 = 2.5 epochs, "
                         "see the script docstring), a deliberately small and weak teacher; "
                         f"checkpoint `{rel_path(recs[0]['config']['env'].get('teacher'))}`.\n")
        teacher = recs[0]
        tq, tc = teacher["teacher_quality"], teacher["compute"]
        lines.append(f"## Task `{task}`\n")
        lines.append(f"Search rounds {sorted({r['rounds'] for r in recs})}, fine-tuning steps "
                     f"{sorted({r['finetune_steps'] for r in recs})}, test images "
                     f"{sorted({r['eval_images'] for r in recs})}, seeds "
                     f"{sorted({r['seed'] for r in recs})}.\n")
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
            lines.append("† in at least one seed the search never found a pair within both "
                         "budgets (G and D), so `SearchTracker.best` fell back to the evaluated "
                         "pair with the smallest G compute (see 'best within budget' below).\n")
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
        lines.append("### Search rewards\n")
        lines += rewards_section(stats, task, budgets, methods)
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
                 + ("" if results == out / RESULTS_FILE else f" --results {rel_path(results)}")
                 + ("" if out == DEFAULT_OUT else f" --out {rel_path(out)}") + "`\n")
    path = out / REPORT_FILE
    path.write_text("\n".join(lines))
    summary = [{"task": t, "budget": b, "method": m,
                **{k: {"mean": v.mean, "std": v.std, "min": v.lo, "max": v.hi, "n": v.n}
                   for k, v in s.items()}} for (t, b, m), s in sorted(stats.items())]
    (out / SUMMARY_FILE).write_text(json.dumps({"results": rel_path(results), "cells": len(records),
                                                "summary": summary}, indent=1))
    plot_quality(records, stats, out / QUALITY_PLOT, methods_all)
    plot_dynamics(records, out / DYNAMICS_PLOT)
    print(f"wrote {path}, {out / QUALITY_PLOT}, {out / DYNAMICS_PLOT}")
    return path


def write_outputs(out: Path, stem: str, report: dict[str, Any],
                  write_markdown: Callable[[Path, dict[str, Any]], None],
                  plot: Callable[[Path, dict[str, Any]], None]) -> None:
    """``out/<stem>.json``, ``.md`` (by ``write_markdown``) and ``.png`` (by ``plot``) of a
    benchmark's ``report``, then the Markdown on stdout: the one way a timing benchmark
    publishes what it measured."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(out / f"{stem}.md", report)
    plot(out / f"{stem}.png", report)
    print((out / f"{stem}.md").read_text())
