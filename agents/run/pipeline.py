"""The phases of a run, each skipped when its output already exists (so ``-i`` resumes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from agents.run.artifacts import (
    MAIN, compute_table, recalibrated_generator, save_pruned, slice_pair,
)
from agents.run.config import RunConfig
from agents.run.finetune_ranks import (
    distil_start, finetune_run_pair, launch as launch_finetune_ranks, run_pair,
)
from agents.run.screen import read_screen, run_screen
from agents.run.search import run_search
from agents.run.tensorboard import add_image_grid
from gan_prune_env.atomic import write_atomically
from gan_prune_env.data import build_dataset, evaluation_split
from gan_prune_env.envs import make_parallel_env
from gan_prune_env.evaluation import evaluate_generator, load_fid_inception
from gan_prune_env.export import export_generator
from gan_prune_env.latency import measure_latencies

RESULTS_FILE = "results.json"
FINETUNE_MARGIN = 0.05
SUMMARY_FILE = "summary.md"


def run_pipeline(config: RunConfig, run_dir: Path, tensorboard_dir: str | None = None) -> str:
    """Search, slice, fine-tune, evaluate and export; returns the summary table. A finished
    run (its summary written last) is not redone: resuming it returns its summary, and its
    results, exports and latencies stay as they were measured."""
    if (run_dir / SUMMARY_FILE).is_file():
        return (run_dir / SUMMARY_FILE).read_text()
    # Loaded first: missing FID weights stop the run before any work, with the fix in the error.
    inception = load_fid_inception(device=config.device) if config.evaluation.fid else None
    writer = SummaryWriter(tensorboard_dir or str(run_dir / "tensorboard"))
    try:
        env = make_parallel_env(config.env, **config.env_options)
        best = run_search(config, env, run_dir, writer)
        if config.screen.candidates:
            best = run_screen(config, env, run_dir, writer)
        if config.student == "distilled_separable":
            distil_start(config, env, best, run_dir, config.device, config.progress)
        pair = run_pair(config, env, best, config.device, run_dir)
        task = env.game.task
        unfinetuned = _supernet_slice_quality(config, env, best, inception)
        if config.finetune_processes > 1:  # then the call below resumes the finished fine-tune
            launch_finetune_ranks(run_dir, config.finetune_processes)
        finetune_run_pair(config, env, pair, run_dir, config.device, config.progress)
        save_pruned(pair, task, run_dir / "pruned.pt",
                    metadata={"best": best.rewards, "algo": config.search.algo})
        results = _evaluate(config, pair, task, run_dir, writer, inception)
        results["slice_from"] = config.slice_from
        if pair.generator_config is not None:
            results["student"] = {"kind": config.student, "ngf": pair.generator_config.ngf}
        if unfinetuned is not None:
            results["quality"]["supernet_slice"] = unfinetuned
        results["search"] = {"algo": config.search.algo, "rounds": config.search.n_rounds,
                             "seed": config.search.seed, "best_rewards": best.rewards,
                             "best_compute_ratio": best.compute_ratio}
        if config.screen.candidates:
            results["screen"] = {"pick_round": best.round,
                                 "scores": read_screen(run_dir, config)}
        _write_text(run_dir / RESULTS_FILE, json.dumps(results, indent=2))
        summary = summary_table(results)
        _write_text(run_dir / SUMMARY_FILE, summary)
        writer.add_text("summary", summary)
        return summary
    finally:
        writer.close()


def _write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda handle: handle.write(text.encode()))


def _quality(config: RunConfig, task, generator: torch.nn.Module, teacher: torch.nn.Module,
             inception: torch.nn.Module | None) -> dict[str, Any]:
    """The run's evaluation protocol on ``generator``, numbers only."""
    metrics = evaluate_generator(generator, task.data, task.family, teacher=teacher,
                                 device=config.device, fid_weights=inception,
                                 fid_bootstrap=config.evaluation.fid_bootstrap,
                                 max_images=config.evaluation.max_images,
                                 progress=config.progress)
    return {m: v for m, v in metrics.items() if isinstance(v, (int, float))}


def _supernet_slice_quality(config: RunConfig, env, best, inception: torch.nn.Module | None
                            ) -> dict[str, Any] | None:
    """With the env's ``supernet`` option, the quality of ``best`` sliced from the supernet
    without any fine-tuning (BatchNorm statistics re-estimated on the env's calibration images,
    as the env scored it): the number that says whether the fine-tune was still needed. None
    without a supernet."""
    if env.game.supernet is None:
        return None
    pair = slice_pair(env, best, config.device, "supernet")
    return _quality(config, env.game.task, recalibrated_generator(pair, env),
                    pair.teacher[MAIN[pair.family][0]], inception)


def _evaluate(config: RunConfig, pair, task, run_dir: Path, writer: SummaryWriter,
              inception: torch.nn.Module | None) -> dict[str, Any]:
    """Quality (teacher vs pruned), compute, latency, exports."""
    g_name = MAIN[task.family][0]
    teacher_g, pruned_g = pair.teacher[g_name], pair.networks[g_name]
    quality = {which: _quality(config, task, net, teacher_g, inception)
               for which, net in (("teacher", teacher_g), ("pruned", pruned_g))}
    example = torch.zeros(1, *pair.input_shape[g_name], device=config.device)
    latency = measure_latencies([teacher_g, pruned_g], example, config.evaluation.latency_runs,
                                threads=config.evaluation.latency_threads)
    # exports run on the CPU: a copy, since Module.cpu() moves the network itself
    report = export_generator(copy.deepcopy(pruned_g).cpu(), example.cpu(), run_dir / "export",
                              torchscript=config.torchscript, onnx=config.onnx)
    _log_images(writer, task, teacher_g, pruned_g, config.device)
    return {
        "compute": compute_table(pair),
        "quality": quality,
        "latency_ms": {"teacher": latency[0].as_dict(), "pruned": latency[1].as_dict()},
        "export": {"torchscript": str(report.torchscript), "onnx": str(report.onnx),
                   "torchscript_max_error": report.torchscript_max_error,
                   "onnx_max_error": report.onnx_max_error},
    }


def _log_images(writer: SummaryWriter, task, teacher_g, pruned_g, device: str) -> None:
    dataset = build_dataset(task.data, evaluation_split(task.data))
    inputs = torch.stack([dataset[i]["A"] for i in range(min(4, len(dataset)))]).to(device)
    with torch.no_grad():
        teacher_g.eval(), pruned_g.eval()
        add_image_grid(writer, "final/input_teacher_pruned",
                       [inputs, teacher_g(inputs), pruned_g(inputs)], 0)


QUALITY_ROWS = {"fid": ("FID (± bootstrap std; lower is better)", 1.0),
                "kid": ("KID x 1e3 (± std over subsets)", 1e3),
                "psnr": ("PSNR to ground truth (dB)", 1.0), "ssim": ("SSIM to ground truth", 1.0),
                "psnr_teacher": ("PSNR to teacher (dB)", 1.0),
                "ssim_teacher": ("SSIM to teacher", 1.0),
                "proxy_fd": ("proxy FD (not FID; lower is better)", 1.0)}


def _quality_cell(metrics: dict[str, Any], metric: str, scale: float) -> str:
    value = f"{metrics[metric] * scale:.4g}"
    spread = metrics.get(f"{metric}_std")
    return value if spread is None else f"{value} ± {spread * scale:.2g}"


def summary_table(results: dict[str, Any]) -> str:
    """Teacher vs pruned, side by side (printed at the end of a run and saved). Compute and
    latency get the teacher/pruned factor; comparisons of the teacher with itself read "—"."""
    c, q, lat = results["compute"], results["quality"], results["latency_ms"]
    rows = []
    for net, short in (("generator", "G"), ("discriminator", "D")):
        rows.append((f"{short} MACs (M)", "{:,.1f}", c[f"{net}/teacher"]["macs"] / 1e6,
                     c[f"{net}/pruned"]["macs"] / 1e6))
        rows.append((f"{short} params (M)", "{:.3f}", c[f"{net}/teacher"]["params"] / 1e6,
                     c[f"{net}/pruned"]["params"] / 1e6))
    rows.append(("G CPU latency (ms)", "{:.2f}", lat["teacher"]["median_ms"],
                 lat["pruned"]["median_ms"]))
    lines = ["| | teacher | pruned | teacher / pruned |", "|---|---|---|---|"]
    lines += [f"| {name} | {fmt.format(t)} | {fmt.format(p)} | {t / p:.2f}x |"
              for name, fmt, t, p in rows]
    for metric, (label, scale) in QUALITY_ROWS.items():
        if metric in q["teacher"]:
            teacher = "—" if metric.endswith("_teacher") else _quality_cell(q["teacher"], metric,
                                                                               scale)
            lines.append(f"| {label} | {teacher} | {_quality_cell(q['pruned'], metric, scale)} | |")
    return "\n".join(lines + _busy_note(lat)
                     + _supernet_verdict(q, results.get("slice_from", "teacher"))) + "\n"


def _busy_note(latency: dict[str, Any]) -> list[str]:
    """A warning under the table when other processes competed for the CPU while latency was
    measured (their times are inflated; the ratio is less affected, being interleaved)."""
    other = latency["teacher"].get("other_cores")
    if not latency["teacher"].get("busy_machine"):
        return []
    return ["", f"Warning: other processes kept {other:.1f} CPU cores busy while latency was "
                "measured; the times are inflated (the teacher / pruned ratio less so): compare "
                "latencies taken on a quiet machine."]


def _supernet_verdict(quality: dict[str, Any], slice_from: str) -> list[str]:
    """Lines saying whether the fine-tune was needed with a supernet: it was not when the
    supernet's slice, without fine-tuning, is already within 5% of the fine-tuned G on FID
    (else PSNR to the teacher), the frontier's teacher-level margin."""
    before, after = quality.get("supernet_slice"), quality["pruned"]
    if before is None:
        return []
    if "fid" in before:
        name, needed = "FID", before["fid"] > after["fid"] * (1 + FINETUNE_MARGIN)
        values = f"{before['fid']:.1f}, fine-tuned G {after['fid']:.1f}"
    else:
        name = "PSNR to teacher"
        needed = before["psnr_teacher"] < after["psnr_teacher"] * (1 - FINETUNE_MARGIN)
        values = f"{before['psnr_teacher']:.2f} dB, fine-tuned G {after['psnr_teacher']:.2f} dB"
    verdict = "was still needed" if needed else "was not needed (within 5%)"
    return ["", f"Sliced from the supernet without fine-tuning: {name} {values} (fine-tuned "
                f"from the {slice_from}'s weights); the fine-tune {verdict}."]
