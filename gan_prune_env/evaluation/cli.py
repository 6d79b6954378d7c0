"""Command line: ``python -m gan_prune_env.evaluation {evaluate,download-inception}``.

Examples::

    # a pruned (or any) generator checkpoint on the default task's test split, compared with the
    # task's teacher; proxy metrics + PSNR/SSIM, written to results.json
    python -m gan_prune_env.evaluation evaluate --checkpoint pruned.pt --task default \\
        --out results.json

    # the task's own teacher, with the real FID (weights downloaded once beforehand)
    python -m gan_prune_env.evaluation download-inception
    python -m gan_prune_env.evaluation evaluate --teacher-only --task default --fid

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
    DOWNLOAD_COMMAND,
    InceptionWeightsError,
    default_inception_path,
    download_inception,
)


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
    ev.add_argument("--split", default="test", help="evaluation split (default: test)")
    ev.add_argument("--teacher", default=None,
                    help="teacher checkpoint overriding the task's built-in teacher")
    ev.add_argument("--no-teacher", action="store_true",
                    help="do not compare with the teacher's outputs")
    ev.add_argument("--fid", action="store_true",
                    help="also compute FID/KID with the cached FID Inception weights "
                         f"(get them with: {DOWNLOAD_COMMAND})")
    ev.add_argument("--fid-weights", default=None,
                    help="path of pt_inception-2015-12-05-6726825d.pth (implies --fid)")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--threads", type=int, default=None,
                    help="CPU threads of torch (default: torch's choice; 1 is often fastest on "
                         "a busy machine)")
    ev.add_argument("--max-images", type=int, default=None,
                    help="evaluate at most this many images per split (quick checks)")
    ev.add_argument("--out", default=None, help="also write the results to this JSON file")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")

    dl = sub.add_parser("download-inception",
                        help="download the FID Inception weights into the cache",
                        description="Download pt_inception-2015-12-05-6726825d.pth (pytorch-fid "
                                    "release) into $GAN_PRUNE_CACHE or ~/.cache/gan_prune_env, "
                                    "verifying its hash.")
    dl.add_argument("--dest", default=None,
                    help=f"target file (default: {default_inception_path()})")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


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
    from gan_prune_env.evaluation.protocol import (
        cyclegan_eval_sets,
        evaluate_cyclegan,
        evaluate_paired,
    )
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
    fid_weights = None
    if args.fid_weights is not None:
        fid_weights = args.fid_weights
    elif args.fid:
        fid_weights = default_inception_path()
        if not fid_weights.is_file():
            raise InceptionWeightsError(
                f"--fid needs the FID Inception weights at {fid_weights}; get them with\n"
                f"    {DOWNLOAD_COMMAND}\nor pass --fid-weights PATH")
    options = {"batch_size": args.batch_size, "device": device, "fid_weights": fid_weights,
               "progress": not args.quiet}
    if task.family == "pix2pix":
        from gan_prune_env.data import build_dataset

        metrics = evaluate_paired(generator, build_dataset(task.data, args.split),
                                  teacher=teacher, **options)
    else:
        test_a, real_b = cyclegan_eval_sets(task.data, args.split, ("train", args.split))
        metrics = evaluate_cyclegan(generator, test_a, real_b, teacher=teacher, **options)
    return {
        "task": task.name,
        "family": task.family,
        "split": args.split,
        "generator": source,
        "teacher_compared": teacher is not None,
        **_generator_stats(generator, task.input_shape),
        "metrics": metrics,
    }


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
        record = run_evaluate(args)
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

