"""Train a Pix2Pix or CycleGAN teacher from the command line.

Examples::

    python -m gan_prune_env.train_teacher --task default --out runs/teacher_default
    python -m gan_prune_env.train_teacher --config teacher.yaml --out runs/t1 --resume
    python -m gan_prune_env.train_teacher --task default --out runs/quick --set n_steps:50 \\
        --set data.procedural_size:64

``--config`` is a YAML mapping of :class:`TeacherTrainConfig` fields; with ``--task`` it
overrides the task's recipe, and ``--set key:value`` (dotted keys reach nested fields) overrides
both. The finished teacher is written to ``<out>/teacher.pt``.

This command sits above both :mod:`gan_prune_env.teacher` (the training loop) and
:mod:`gan_prune_env.tasks` (which trains a built-in task's teacher on first use with that loop),
so neither package imports the other's dependants.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gan_prune_env.atomic import check_writable_folder
from gan_prune_env.config import ConfigError, from_dict, load_yaml, parse_key_values, to_dict
from gan_prune_env.tasks import get_task, teacher_train_config
from gan_prune_env.teacher.config import TeacherTrainConfig, merge_overrides
from gan_prune_env.teacher.loop import train_teacher

__all__ = ["TeacherTrainConfig", "build_config", "main", "train_teacher"]


def build_config(task: str | None = None, config_file: str | Path | None = None,
                 overrides: list[str] | None = None) -> TeacherTrainConfig:
    """The training config from a task's recipe, a YAML file and ``key:value`` overrides."""
    if task is None and config_file is None:
        raise ConfigError("give a --task, a --config file, or both")
    data: dict[str, Any] = {}
    if task is not None:
        data = to_dict(teacher_train_config(get_task(task)))
    if config_file is not None:
        data = merge_overrides(data, load_yaml(config_file))
    data = merge_overrides(data, parse_key_values(overrides))
    return from_dict(TeacherTrainConfig, data)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gan_prune_env.train_teacher",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", help="built-in task whose teacher recipe to use (e.g. default)")
    parser.add_argument("--config", help="YAML file of TeacherTrainConfig fields")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, tensorboard)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest train state in --out")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY:VALUE",
                        help="override a config field, e.g. n_steps:500 or data.seed:1")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = build_config(args.task, args.config, args.overrides)
        check_writable_folder(args.out, "--out")
        path = train_teacher(config, args.out, resume=args.resume)
    except (ConfigError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
