"""A run's fine-tune on several processes: ``RunConfig.finetune_processes`` > 1.

The search, slicing, evaluation and exports of ``train_agents.py`` run in one process; only the
fine-tune is data-parallel (``gan_prune_env.distributed``). The pipeline starts
``torchrun --nproc_per_node N -m agents.run.finetune_ranks RUN_DIR`` and waits: every rank
rebuilds the found pair from the run folder (its ``config.yaml`` and ``best_architecture.json``)
and trains its rows of each global batch, rank 0 writing the train states. The pipeline then
resumes the finished fine-tune in its own process, which loads the final weights, and goes on.
A killed fine-tune resumes from its newest train state, on any number of processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from agents.run.artifacts import PrunedPair, save_pruned, slice_pair, student_task, use_student
from agents.run.config import RunConfig, load_run_config
from agents.run.run_folder import FINETUNE_DIR
from agents.run.search import read_best
from gan_prune_env.config import to_dict
from gan_prune_env.envs import GANPruneParallelEnv, make_parallel_env
from gan_prune_env.finetune import FinetuneConfig, finetune_pair

DISTILLED_START = "distilled_start.pt"
"""``student: distilled_separable``: the run folder's distilled start, the separable U-Net at
the teacher's width that the run then narrows."""
START_RECIPE = {"lambda_norm_sparsity": 1.0, "generator_inherit": 1.0}
"""What ``student: distilled_separable`` changes in the run's recipe to distil its start, as
the frontier's ``separable_slim_teacher_targets``: network slimming's sparsity term on the norm
scales (the ranking the narrowing keeps by) and the fresh init as it is (there is no teacher's
slice to shrink towards it)."""
NARROWED_RECIPE = {"generator_inherit": 1.0}
"""What it changes to fine-tune the narrowed start, as ``pruned_separable_slim_teacher_targets``:
the distilled weights as they are (shrunk towards a fresh init they scored +1.4 FID at 20x)."""


def finetune_dir(run_dir: Path, pair: PrunedPair) -> Path:
    """The fine-tune's folder, keyed by architecture (the kept channels, and a student's
    config): a resumed search that finds a better pair fine-tunes afresh."""
    key: Any = pair.kept
    if pair.generator_config is not None:
        key = {"kept": pair.kept, "generator": to_dict(pair.generator_config)}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return run_dir / FINETUNE_DIR / digest


def run_pair(config: RunConfig, env: GANPruneParallelEnv, best, device: str, run_dir: Path
             ) -> PrunedPair:
    """The networks a run fine-tunes: the teacher's sliced to ``best`` (``slice_pair``), with
    the run's student as the main G (``RunConfig.student``; ``distilled_separable`` narrows
    the run's distilled start, see :func:`distil_start`): one place for the pipeline and every
    rank."""
    pair = slice_pair(env, best, device, config.slice_from)
    if config.student == "distilled_separable":
        use_student(pair, env.game.task, "pruned_separable", env.config.budget_g,
                    config.search.seed, str(run_dir / DISTILLED_START), importance="norm_scale")
    elif config.student != "pruned":
        use_student(pair, env.game.task, config.student, env.config.budget_g,
                    config.search.seed, config.separable_student, config.separable_width,
                    config.separable_importance)
    return pair


def student_recipe(config: RunConfig) -> FinetuneConfig:
    """The recipe the run's student is fine-tuned with: the run's, with ``NARROWED_RECIPE`` for
    a narrowed distilled start."""
    if config.student == "distilled_separable":
        return dataclasses.replace(config.finetune, **NARROWED_RECIPE)
    return config.finetune


def finetune_run_pair(config: RunConfig, env: GANPruneParallelEnv, pair: PrunedPair,
                      run_dir: Path, device: str, progress: bool) -> None:
    """The run's fine-tune of ``pair`` (in place), resuming from its folder: the one call the
    pipeline and every rank make."""
    finetune_sliced_pair(pair, env, student_recipe(config), finetune_dir(run_dir, pair),
                         config.search.seed, device, progress)


def distil_start(config: RunConfig, env: GANPruneParallelEnv, best, run_dir: Path,
                 device: str, progress: bool) -> Path:
    """Stage one of ``student: distilled_separable``, in this process: the separable U-Net at
    the teacher's width from a fresh init (with the D of ``best``), distilled with the run's
    recipe and ``START_RECIPE``, kept as ``DISTILLED_START``. Skipped once written; a stopped
    distillation resumes from its own train states (``FINETUNE_DIR/distilled_start``)."""
    path = run_dir / DISTILLED_START
    if path.is_file():
        return path
    pair = slice_pair(env, best, device, config.slice_from)
    task = env.game.task
    use_student(pair, task, "separable", 1.0, config.search.seed)  # the teacher's width
    finetune_sliced_pair(pair, env, dataclasses.replace(config.finetune, **START_RECIPE),
                         run_dir / FINETUNE_DIR / "distilled_start", config.search.seed, device,
                         progress)
    return save_pruned(pair, task, path, metadata={"distilled_start": START_RECIPE})


def finetune_sliced_pair(pair: PrunedPair, env: GANPruneParallelEnv, recipe: FinetuneConfig,
                         out_dir: Path, seed: int, device: str, progress: bool) -> None:
    """Fine-tune ``pair`` in place with ``recipe``, resuming from ``out_dir``: the env gives
    the task, the objective and the teacher's pool (every fine-tune of a sliced pair: the run's,
    its distilled start's, the screen's and the benchmarks')."""
    finetune_pair(pair.networks, pair.teacher, student_task(pair, env.game.task), recipe,
                  out_dir, kept=pair.kept, input_shape=pair.input_shape, seed=seed,
                  device=device, progress=progress, objective=env.game.objective,
                  pool=env.game.train_pool)


def launch(run_dir: Path, processes: int) -> None:
    """Fine-tune the run's pair on ``processes`` local processes (torchrun) and wait."""
    with socket.socket() as sock:  # a free port: two runs on one machine must not collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(port),
               "-m", "agents.run.finetune_ranks", str(run_dir)]
    result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS":
                                          os.environ.get("OMP_NUM_THREADS", "1")})
    if result.returncode != 0:
        raise RuntimeError(f"the fine-tune on {processes} processes failed (exit status "
                           f"{result.returncode}; its output is above). Resume the run with "
                           f"python train_agents.py -i {run_dir}")


def main(argv: list[str] | None = None) -> int:
    from gan_prune_env.distributed import current

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder whose search has finished")
    run_dir = parser.parse_args(argv).run
    config = load_run_config(run_dir)
    ranks = current(config.device)
    device = ranks.device(config.device)
    env = make_parallel_env(config.env, **{**config.env_options, "device": device})
    pair = run_pair(config, env, read_best(run_dir), device, run_dir)
    finetune_run_pair(config, env, pair, run_dir, device, config.progress and ranks.is_main)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
