"""``python train_agents.py``: search architectures, then slice, fine-tune, evaluate, export.

Flags follow RL Baselines3 Zoo's ``train.py``. Everything is validated before any work starts;
a run folder holds the config used, so ``-i RUN_DIR`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from agents.run.config import ALGOS, RunConfig
from gan_prune_env import ENV_ENTRY_POINTS
from gan_prune_env.config import ConfigError, from_dict, load_yaml, parse_key_values, to_dict
from gan_prune_env.evaluation.inception import InceptionWeightsError

CONFIG_FILE = "config.yaml"
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
    p.add_argument("--finetune-steps", type=int, default=None, help="fine-tuning steps")
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
    if args.finetune_steps is not None:
        out["finetune"] = {"steps": args.finetune_steps}
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


def resolve(args: argparse.Namespace) -> tuple[RunConfig, Path, bool]:
    """Config and run folder; ``resumed`` when continuing ``-i``. Raises ConfigError early."""
    if args.trained_agent:
        run_dir = Path(args.trained_agent)
        run_dir = run_dir if run_dir.is_dir() else run_dir.parent
        while not (run_dir / CONFIG_FILE).exists() and run_dir != run_dir.parent:
            run_dir = run_dir.parent
        if not (run_dir / CONFIG_FILE).exists():
            raise ConfigError(f"-i {args.trained_agent}: no {CONFIG_FILE} in it or its parents")
        data = _merge(load_yaml(run_dir / CONFIG_FILE), _overrides(args))
        return from_dict(RunConfig, data, where=str(run_dir / CONFIG_FILE)), run_dir, True
    conf = Path(args.conf_file) if args.conf_file else DEFAULT_CONF
    data = _merge(load_yaml(conf), _overrides(args))
    config = from_dict(RunConfig, data, where=str(conf))
    _validate_nested(config)
    return config, _new_run_dir(Path(args.log_folder), config), False


def _validate_nested(config: RunConfig) -> None:
    """Env kwargs and algorithm params are checked by their own dataclasses, now; the FID
    weights must be installed when the run will compute FID."""
    from agents.run.search import build_agent
    from gan_prune_env.envs import EnvConfig
    from gan_prune_env.evaluation import find_inception_weights

    from_dict(EnvConfig, dict(config.env_kwargs), where="env_kwargs")
    build_agent(config)
    if config.evaluation.fid:
        find_inception_weights()


def _new_run_dir(log_folder: Path, config: RunConfig) -> Path:
    parent = log_folder / config.search.algo
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.rsplit("_", 1)[1]) for p in parent.glob(f"{config.env}_*")
             if p.name.rsplit("_", 1)[1].isdigit()]
    return parent / f"{config.env}_{max(taken, default=0) + 1}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config, run_dir, resumed = resolve(args)
    except (ConfigError, ValueError, TypeError, InceptionWeightsError) as err:
        hint = ("\n(or set evaluation.fid: false to run without FID)"
                if isinstance(err, InceptionWeightsError) else "")
        print(f"error: {err}{hint}", file=sys.stderr)
        return 2
    if args.progress is None and not resumed:
        config.progress = config.progress and sys.stderr.isatty()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    print(f"run folder: {run_dir}" + (" (resumed)" if resumed else ""))
    torch.manual_seed(config.search.seed)
    np.random.seed(config.search.seed)
    from agents.run.pipeline import run_pipeline

    summary = run_pipeline(config, run_dir, args.tensorboard_log)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
