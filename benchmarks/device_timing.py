"""The compression journey at the reference's scale on an accelerator: U-Net-256 at 256 px.

What. A Pix2Pix task with the reference architecture (``unet_256``, ngf 64; PatchGAN ndf 64) at
256x256 on procedural images, with an *untrained* teacher of that architecture (speed only:
the weights do not change the cost). On ``--device`` it measures

1. the environment: ``reset`` and one ``step`` of ``Pix2PixPrune-v0`` (frozen weights, adaptive
   BN), the search's unit of work, on that task and on the built-in default task (what an RL
   researcher's agent steps, with the env's default settings);
2. the main job (``train_agents.py``: uniform search, slice, fine-tune with the project's recipe
   at batch 8, evaluation without FID, exports) twice, with ``--short`` and ``--long``
   fine-tuning steps: the difference over the extra steps is the cost of one fine-tuning step,
   the rest the fixed cost of the journey; ``--autocast bfloat16`` runs the fine-tune's forward
   passes in bfloat16 (``FinetuneConfig.autocast``);
3. ``python -m gan_prune_env.translate`` of the pruned generator on 8 images.

Why. The issue on compressing your own model asks that the whole journey run with ``--device
cuda`` and that a 256x256 U-Net-256 search and fine-tune step be timed when a GPU is lent; CPU
tests cover the device plumbing only as far as a CPU can.

Writes ``device_timing.json`` and ``device_timing.md`` to ``--out``. Regenerate (on the GPU
machine; CPU works too, slowly)::

    python benchmarks/device_timing.py --device cuda --out benchmarks/results/device_timing
    python benchmarks/device_timing.py --device cuda --autocast bfloat16 \
        --out benchmarks/results/device_timing
    python benchmarks/device_timing.py --device cuda --workers 8 \
        --out benchmarks/results/device_timing

Each writes ``device_timing.json`` and ``.md`` there; the committed ones were renamed by their
setting (``float32``, ``bfloat16``, ``float32_workers8``), and ``profile_float32.txt`` holds a
cProfile of a 150-step journey (where a step's time goes: making the batches).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from PIL import Image

import gan_prune_env  # noqa: F401  (registers the ids)
from agents.run.cli import main as train_agents
from gan_prune_env.checkpoint import make_checkpoint, save_checkpoint
from gan_prune_env.families import build_network, network_config, network_names
from gan_prune_env.tasks import get_task
from gan_prune_env.teacher.config import AUTOCAST_DTYPES
from gan_prune_env.translate import main as translate

SIZE = 256
ENV_OPTIONS = {"pool_size": 16, "eval_size": 8, "calibration_size": 8, "budget_g": 0.1}


def write_task(folder: Path) -> Path:
    """The U-Net-256 task and its untrained teacher, as files the CLI accepts."""
    task = {"name": "unet256_speed", "family": "pix2pix", "image_size": SIZE,
            "data": {"root": None, "crop_size": SIZE, "load_size": SIZE, "procedural_size": 64},
            "generator": {"arch": "unet_256", "ngf": 64, "norm": "batch", "image_size": SIZE},
            "discriminator": {"arch": "basic", "input_nc": 6, "ndf": 64, "norm": "batch"}}
    config = get_task(task)
    nets = {name: build_network(network_config("pix2pix", name, config.generator,
                                               config.discriminator), seed=i)
            for i, name in enumerate(network_names("pix2pix"))}
    teacher = save_checkpoint(folder / "teacher.pt", make_checkpoint(
        "teacher", "pix2pix", nets, config.generator, config.discriminator,
        metadata={"note": "untrained, speed only"}))
    task["teacher_checkpoint"] = str(teacher)
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_env(env_kwargs: dict[str, Any], device: str, steps: int) -> dict[str, float]:
    """Seconds of the first ``reset`` (teacher, pools, channel spaces) and per ``step`` of
    ``Pix2PixPrune-v0`` made with ``env_kwargs``."""
    start = time.perf_counter()
    env = gym.make("Pix2PixPrune-v0", device=device, **env_kwargs)
    env.reset(seed=0)
    _sync(device)
    first = time.perf_counter() - start
    rng = np.random.default_rng(0)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        _sync(device)
        times.append(time.perf_counter() - start)
        if terminated or truncated:
            env.reset(seed=int(rng.integers(1 << 30)))
    env.close()
    return {"first_reset_s": first, "step_s_median": statistics.median(times),
            "step_s_min": min(times), "steps": steps}


def run_journey(task_file: Path, folder: Path, device: str, steps: int,
                autocast: str | None, workers: int = 0) -> float:
    """Wall seconds of ``train_agents.py`` with ``steps`` fine-tuning steps."""
    config = folder / f"run_{steps}.yaml"
    config.write_text(yaml.safe_dump({
        "env": "Pix2PixPrune-v0",
        "env_kwargs": {"task": str(task_file), **ENV_OPTIONS},
        "search": {"algo": "uniform", "n_rounds": 4, "save_freq": 4, "eval_freq": 4},
        "finetune": {"steps": steps, "save_every": max(steps, 1), "image_every": 0,
                     "autocast": autocast, "num_workers": workers},
        "evaluation": {"max_images": 8, "latency_runs": 2, "fid": False},
        "device": device, "progress": False,
    }))
    start = time.perf_counter()
    code = train_agents(["-conf", str(config), "-f", str(folder / f"logs_{steps}")])
    if code:
        raise SystemExit(f"train_agents.py failed with {code} at {steps} steps")
    return time.perf_counter() - start


def report(result: dict[str, Any]) -> str:
    env, default, journey = result["env"], result["env_default"], result["journey"]
    return "\n".join([
        "# The journey at 256 px (U-Net-256, ngf 64) on a device", "",
        f"Device {result['device_name']} ({result['device']}), torch {result['torch']}, commit "
        f"{result['commit']}; untrained teacher (speed only); fine-tuning forward passes in "
        f"{result['autocast'] or 'float32'}, batches made by {result['workers']} "
        "DataLoader workers (0: the main process).", "",
        "| what | seconds |", "|---|---|",
        f"| env: first reset (teacher, pools, channel spaces) | {env['first_reset_s']:.2f} |",
        f"| env: one step (median of {env['steps']}; frozen weights, adaptive BN) | "
        f"{env['step_s_median']:.4f} |",
        f"| env on the built-in default task: first reset | {default['first_reset_s']:.2f} |",
        f"| env on the built-in default task: one step (median of {default['steps']}) | "
        f"{default['step_s_median']:.4f} |",
        f"| main job, {journey['short_steps']} fine-tuning steps | {journey['short_s']:.1f} |",
        f"| main job, {journey['long_steps']} fine-tuning steps | {journey['long_s']:.1f} |",
        f"| one fine-tuning step (batch 8; the difference per extra step) | "
        f"{journey['finetune_step_s']:.4f} |",
        f"| the recipe's 3000 steps, estimated | {3000 * journey['finetune_step_s']:.0f} |",
        f"| translate 8 images with the pruned generator | {result['translate_s']:.2f} |", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--env-steps", type=int, default=20)
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--long", type=int, default=220)
    parser.add_argument("--autocast", choices=AUTOCAST_DTYPES, default=None,
                        help="the fine-tune's mixed precision (default float32)")
    parser.add_argument("--workers", type=int, default=0,
                        help="the fine-tune's DataLoader workers (FinetuneConfig.num_workers)")
    parser.add_argument("--commit", default="unknown", help="recorded as is")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        task_file = write_task(folder)
        env = time_env({"task": str(task_file), **ENV_OPTIONS}, args.device, args.env_steps)
        env_default = time_env({}, args.device, args.env_steps)
        short = run_journey(task_file, folder, args.device, args.short, args.autocast,
                            args.workers)
        long = run_journey(task_file, folder, args.device, args.long, args.autocast,
                           args.workers)
        images = folder / "images"
        images.mkdir()
        for i in range(8):
            pixels = np.random.default_rng(i).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / f"{i}.png")
        pruned = folder / f"logs_{args.long}" / "uniform" / "Pix2PixPrune-v0_1" / "pruned.pt"
        start = time.perf_counter()
        if translate(["--checkpoint", str(pruned), "--input", str(images), "--out",
                      str(folder / "translated"), "--device", args.device]):
            raise SystemExit("translate failed")
        translate_s = time.perf_counter() - start
    result = {
        "device": args.device, "torch": torch.__version__, "python": platform.python_version(),
        "device_name": (torch.cuda.get_device_name() if torch.device(args.device).type == "cuda"
                        else platform.processor() or "cpu"),
        "commit": args.commit, "teacher": "untrained unet_256 ngf 64 (speed only)",
        "autocast": args.autocast, "workers": args.workers, "env": env, "env_default": env_default,
        "translate_s": translate_s,
        "journey": {"short_steps": args.short, "long_steps": args.long, "short_s": short,
                    "long_s": long, "finetune_step_s": (long - short) / (args.long - args.short)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "device_timing.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (args.out / "device_timing.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
