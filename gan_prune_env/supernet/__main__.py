"""Train a task's generator supernet (and its critic) from the command line.

See ``gan_prune_env.supernet``.

Examples::

    python -m gan_prune_env.supernet --task default --out runs/supernets/default --resume
    python -m gan_prune_env.supernet --task default_wide --out runs/supernets/default_wide \\
        --teacher runs/teachers/default_wide/teacher.pt --set steps:3000 --resume
    python -m gan_prune_env.supernet --task default --out runs/supernets/default_gan \\
        --set steps:6000 --set lr_decay_steps:3000 --set gan_weight:0.01 --resume
    python -m gan_prune_env.supernet --task default --out runs/supernets/default_density \\
        --set steps:6000 --set lr_decay_steps:3000 --set density_weight:1.0 --resume
    python -m gan_prune_env.supernet --task default --out runs/supernets/default_l1_critic \\
        --set steps:6000 --set lr_decay_steps:3000 --set critic:true --resume

``--config`` is a YAML mapping of :class:`SupernetConfig` fields; ``--set key:value`` overrides
it. The finished supernet is written to ``<out>/supernet.pt``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from gan_prune_env.atomic import check_writable_folder
from gan_prune_env.checkpoint import CheckpointError
from gan_prune_env.config import ConfigError, from_dict, load_yaml, parse_key_values
from gan_prune_env.supernet import SupernetConfig, train_supernet
from gan_prune_env.tasks import get_task
from gan_prune_env.teacher.config import merge_overrides


def build_config(config_file: str | Path | None, overrides: list[str] | None) -> SupernetConfig:
    """The defaults, a YAML file of :class:`SupernetConfig` fields and ``key:value`` overrides."""
    data: dict[str, Any] = load_yaml(config_file) if config_file is not None else {}
    return from_dict(SupernetConfig, merge_overrides(data, parse_key_values(overrides)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gan_prune_env.supernet",
                                     description="Train a task's generator supernet.")
    parser.add_argument("--task", required=True, help="built-in task name or task YAML")
    parser.add_argument("--teacher", help="teacher checkpoint overriding the task's")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, tensorboard)")
    parser.add_argument("--config", help="YAML file of SupernetConfig fields")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY:VALUE",
                        help="override a SupernetConfig field, e.g. steps:500")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest train state in --out")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        config = build_config(args.config, args.overrides)
        check_writable_folder(args.out, "--out")
        task = get_task(args.task)
        if args.teacher is not None:
            task = dataclasses.replace(task, teacher_checkpoint=args.teacher)
        path = train_supernet(task, config, args.out, resume=args.resume, device=args.device)
    except (ConfigError, CheckpointError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
