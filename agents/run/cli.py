"""``python train_agents.py``: search architectures, then slice, fine-tune, evaluate, export.

Flags follow RL Baselines3 Zoo's ``train.py``. Everything is validated before any work starts;
a run folder holds the config used, so ``-i RUN_DIR`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.run.config import ALGOS, SCREEN_SCORES, STUDENTS, RunConfig
from agents.run.run_folder import (
    CONFIG_FILE, check_resumable, create_run_folder, describe, differences, find_run_folder,
    fork_run, write_config,
)
from gan_prune_env import ENV_ENTRY_POINTS
from gan_prune_env.atomic import check_writable_folder
from gan_prune_env.checkpoint import CheckpointError
from gan_prune_env.config import ConfigError, from_dict, load_yaml, parse_key_values, to_dict
from gan_prune_env.data.images import ImageLoadError
from gan_prune_env.evaluation.inception import InceptionWeightsError
from gan_prune_env.pruning import IMPORTANCES

DEFAULT_CONF = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default=None, choices=sorted(ENV_ENTRY_POINTS), help="environment id")
    p.add_argument("--algo", default=None, choices=ALGOS, help="search algorithm")
    p.add_argument("-n", "--n-timesteps", type=int, default=None,
                   help="search length in env steps (rounds)")
    p.add_argument("-tb", "--tensorboard-log", default=None,
                   help="TensorBoard folder (default: RUN_DIR/tensorboard)")
    p.add_argument("-f", "--log-folder", default="logs", help="where run folders are created")
    p.add_argument("--seed", type=int, default=None, help="search seed")
    p.add_argument("--env-kwargs", nargs="*", default=None, metavar="KEY:VALUE",
                   help="EnvConfig overrides, e.g. budget_g:0.1 rounds:2")
    p.add_argument("-params", "--hyperparams", nargs="*", default=None, metavar="KEY:VALUE",
                   help="algorithm hyperparameters, e.g. lr:3e-4")
    p.add_argument("-conf", "--conf-file", default=None,
                   help=f"YAML run config (default {DEFAULT_CONF.name} from configs/)")
    p.add_argument("--eval-freq", type=int, default=None, help="rounds between snapshots")
    p.add_argument("--save-freq", type=int, default=None, help="rounds between checkpoints")
    p.add_argument("--screen", type=int, default=None, metavar="N",
                   help="before the fine-tune, re-score the uniform pair and the search's N-1 "
                        "best by a short distillation and keep the best (default 0: off)")
    p.add_argument("--screen-steps", type=int, default=None, metavar="K",
                   help="--screen: distillation steps per candidate (default 50)")
    p.add_argument("--screen-score", default=None, choices=SCREEN_SCORES,
                   help="--screen: what re-scores a candidate (default distill: its L1 to the "
                        "teacher after the steps; distill_fid: its FID after them; "
                        "supernet_fid: the FID of its slice from env_kwargs.supernet)")
    p.add_argument("--finetune-steps", type=int, default=None, help="fine-tuning steps")
    p.add_argument("--finetune-processes", type=int, default=None, metavar="N",
                   help="fine-tune data-parallel on N processes (torchrun; default 1)")
    p.add_argument("--student", default=None, choices=STUDENTS,
                   help="the generator fine-tuned: the pruned one (default), GAN Compression's "
                        "separable student within budget_g, a distilled one narrowed "
                        "(pruned_separable, with --separable-student), or both in one run "
                        "(distilled_separable: distil, then prune, the best measured)")
    p.add_argument("--separable-student", default=None, metavar="CHECKPOINT",
                   help="the separable G that student pruned_separable narrows (the pruned.pt "
                        "of a --student separable run)")
    p.add_argument("--separable-width", type=float, default=None, metavar="W",
                   help="--student separable: at most W times the teacher's width (default 1; "
                        "wider makes a larger start for pruned_separable)")
    p.add_argument("--separable-importance", default=None, choices=sorted(IMPORTANCES),
                   help="--student pruned_separable: the channel ranking it keeps by (default "
                        "l1; norm_scale for a start distilled with lambda_norm_sparsity)")
    p.add_argument("-i", "--trained-agent", default=None,
                   help="run folder (or a file in it) to resume")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument("-P", "--progress", action="store_true", default=None,
                   help="show progress bars (on by default in a terminal)")
    return p.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as a nested mapping over RunConfig."""
    search: dict[str, Any] = {}
    for flag, key in (("algo", "algo"), ("n_timesteps", "n_rounds"), ("seed", "seed"),
                      ("eval_freq", "eval_freq"), ("save_freq", "save_freq")):
        if getattr(args, flag) is not None:
            search[key] = getattr(args, flag)
    if args.hyperparams is not None:
        search["algo_params"] = parse_key_values(args.hyperparams)
    out: dict[str, Any] = {"search": search} if search else {}
    if args.env is not None:
        out["env"] = args.env
    if args.env_kwargs is not None:
        out["env_kwargs"] = parse_key_values(args.env_kwargs)
    screen = {key: getattr(args, flag) for flag, key in
              (("screen", "candidates"), ("screen_steps", "distill_steps"),
               ("screen_score", "score"))
              if getattr(args, flag) is not None}
    if screen:
        out["screen"] = screen
    if args.finetune_steps is not None:
        out["finetune"] = {"steps": args.finetune_steps}
    if args.finetune_processes is not None:
        out["finetune_processes"] = args.finetune_processes
    for flag in ("student", "separable_student", "separable_width", "separable_importance"):
        if getattr(args, flag) is not None:
            out[flag] = getattr(args, flag)
    if args.device is not None:
        out["device"] = args.device
    if args.progress is not None:
        out["progress"] = True
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "env_kwargs":
            merged[key] = _merge(merged[key], value)
        elif key == "env_kwargs" and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@dataclass
class Plan:
    """What this invocation does: start a ``new`` run, ``resume`` one in place, or ``fork`` a
    resumed run whose requested config differs into a new folder (``changed`` keys)."""

    config: RunConfig
    mode: str
    run_dir: Path | None = None  # the run to resume or fork from
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def resolve(args: argparse.Namespace) -> Plan:
    """The config and what to do with it, checked before any file is written: a resume whose
    config differs from the recorded one is a fork when the saved search stays valid, else a
    ConfigError naming the differing keys."""
    if args.trained_agent:
        run_dir = find_run_folder(args.trained_agent)
        recorded_file = run_dir / CONFIG_FILE
        recorded = to_dict(from_dict(RunConfig, load_yaml(recorded_file), where=str(recorded_file)))
        base = load_yaml(args.conf_file) if args.conf_file else recorded
        where = str(args.conf_file or recorded_file)
        config = from_dict(RunConfig, _merge(base, _overrides(args)), where=where)
        changed = differences(_normalised(recorded), _normalised(to_dict(config)))
        check_resumable(run_dir, changed)
        return Plan(config, "fork" if changed else "resume", run_dir, changed)
    conf = Path(args.conf_file) if args.conf_file else DEFAULT_CONF
    return Plan(from_dict(RunConfig, _merge(load_yaml(conf), _overrides(args)), where=str(conf)),
                "new")


def _normalised(config: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` with every EnvConfig field filled in, so a value given explicitly that
    equals the default is no difference."""
    from gan_prune_env.envs import EnvConfig

    env = to_dict(from_dict(EnvConfig, dict(config["env_kwargs"]), where="env_kwargs"))
    env.pop("device")  # the run's own device decides (the pipeline passes it to the env)
    return {**config, "env_kwargs": env}


def check_before_work(config: RunConfig, log_folder: Path) -> None:
    """Everything a run needs that can be checked in seconds: env kwargs and algorithm params
    (their own dataclasses), the teacher file and dataset splits, the FID weights when the run
    computes FID, and a writable log folder. A bad value fails here, before a run folder
    exists."""
    from agents.run.search import build_agent
    from gan_prune_env.envs import EnvConfig, check_task_inputs
    from gan_prune_env.checkpoint import embedded_configs
    from gan_prune_env.evaluation import find_inception_weights
    from gan_prune_env.students import check_separable_source

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("train_agents.py starts its own processes: run it without torchrun "
                         "and pass --finetune-processes N to fine-tune data-parallel. Teachers "
                         "and supernets: torchrun --nproc_per_node N -m "
                         "gan_prune_env.train_teacher (or gan_prune_env.supernet) ...")
    env_config = from_dict(EnvConfig, config.env_options, where="env_kwargs")
    build_agent(config)
    task = check_task_inputs(env_config)
    if config.separable_student is not None:  # a file that is no separable G of this task
        check_separable_source(embedded_configs(config.separable_student)[0], task.generator)
    if config.evaluation.fid:
        find_inception_weights()
    check_writable_folder(log_folder, "-f")


def start(plan: Plan, log_folder: Path) -> Path:
    """The run folder this invocation works in; only a new run or a fork creates one."""
    if plan.mode == "resume":
        print(f"run folder: {plan.run_dir} (resumed)")
        return plan.run_dir
    config = to_dict(plan.config)
    if plan.mode == "fork":
        run_dir = fork_run(plan.run_dir, config, plan.changed)
        print(f"run folder: {run_dir} (forked from {plan.run_dir}, which stays as it was; "
              f"changed: {describe(plan.changed)})")
        return run_dir
    run_dir = create_run_folder(log_folder / plan.config.search.algo, plan.config.env)
    write_config(run_dir, config)
    print(f"run folder: {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan = resolve(args)
        log_folder = Path(args.log_folder) if plan.run_dir is None else plan.run_dir.parent
        check_before_work(plan.config, log_folder)
    except (ConfigError, ValueError, TypeError, InceptionWeightsError, CheckpointError,
            FileNotFoundError, ImageLoadError) as err:
        hint = ("\n(or set evaluation.fid: false to run without FID)"
                if isinstance(err, InceptionWeightsError) else "")
        print(f"error: {err}{hint}", file=sys.stderr)
        return 2
    config = plan.config
    if args.progress is None:
        config.progress = config.progress and sys.stderr.isatty()
    run_dir = start(plan, log_folder)
    torch.manual_seed(config.search.seed)
    np.random.seed(config.search.seed)
    from agents.run.pipeline import run_pipeline

    summary = run_pipeline(config, run_dir, args.tensorboard_log)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
