"""The family-agnostic teacher training loop: batches, steps, logging, checkpoints, resume.

A run directory holds ``checkpoints/train_state_<step>.pt`` (everything needed to continue),
``tensorboard/`` and, once the run is complete, ``teacher.pt``. Resuming restores networks,
optimisers, image pools, the trainer's extensions (fine-tuning's distillation adapters and weight
EMA) and RNG states, and restarts the batch stream at the saved step, so on CPU an interrupted
and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gan_prune_env.checkpoint import (
    load_state_dict_checked,
    make_checkpoint,
    save_checkpoint,
)
from gan_prune_env.config import ConfigError, to_dict
from gan_prune_env.data import build_dataset, evaluation_split
from gan_prune_env.distributed import Distributed, current
from gan_prune_env.teacher.base import GANTrainer
from gan_prune_env.teacher.batches import batch_stream, steps_per_epoch
from gan_prune_env.teacher.config import OPERATIONAL_KEYS, TeacherTrainConfig
from gan_prune_env.teacher.cyclegan import CycleGANTrainer
from gan_prune_env.teacher.evaluate import mean_l1
from gan_prune_env.teacher.logger import NullLogger, TrainLogger
from gan_prune_env.teacher.pix2pix import Pix2PixTrainer
from gan_prune_env.teacher.rng import capture_rng_state, restore_rng_state, seed_everything
from gan_prune_env.teacher.state import TrainStateStore

TRAINERS: dict[str, type[GANTrainer]] = {"pix2pix": Pix2PixTrainer, "cyclegan": CycleGANTrainer}
TEACHER_FILE = "teacher.pt"


def build_trainer(config: TeacherTrainConfig) -> GANTrainer:
    """Fresh networks and optimisers of ``config.family``."""
    return TRAINERS[config.family].from_config(config)


def _check_resumable(saved: dict[str, Any], config: TeacherTrainConfig, where: str) -> None:
    """Refuse to continue a run under a different recipe (only operational keys may change)."""
    current = to_dict(config)
    changed = sorted(k for k in current if k not in OPERATIONAL_KEYS and saved.get(k) != current[k])
    if changed:
        raise ConfigError(f"cannot resume {where}: the config differs in {changed}; use the "
                          "original config or a new output folder")


def _train_state(trainer: GANTrainer, config: TeacherTrainConfig, step: int,
                 seconds: float, processes: int) -> dict[str, Any]:
    return {
        "step": step,
        "train_seconds": seconds,
        "processes": processes,  # provenance: the data-parallel processes of the last segment
        "optimizers": {name: opt.state_dict() for name, opt in trainer.optimizers.items()},
        "trainer": trainer.extra_state(),
        "rng": capture_rng_state(),
        "config": to_dict(config),
    }


def _restore(trainer: GANTrainer, payload: dict[str, Any], config: TeacherTrainConfig) -> dict:
    where = payload.get("path", "train state")
    state = payload["train_state"]
    _check_resumable(state["config"], config, where)
    # first: it refuses a run with other extensions (whose optimiser groups differ) clearly
    trainer.load_extra_state(state["trainer"])
    for name, net in trainer.networks.items():
        load_state_dict_checked(net, payload[name], source=f"{where} [{name}]")
    for name, optimizer in trainer.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    restore_rng_state(state["rng"])
    return state


def _preview_batch(config: TeacherTrainConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    if config.image_every == 0 or config.preview_images == 0:
        return None
    dataset = build_dataset(config.data, evaluation_split(config.data))
    items = [dataset[i] for i in range(min(config.preview_images, len(dataset)))]
    inputs = torch.stack([item["A"] for item in items]).to(config.device)
    return inputs, torch.stack([item["B"] for item in items]).to(config.device)


def _to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _checkpoint(kind: str, trainer: GANTrainer, config: TeacherTrainConfig, **extra) -> dict:
    return make_checkpoint(kind, config.family, trainer.networks, config.generator,
                           config.discriminator, **extra)


def _write_teacher(path: Path, trainer: GANTrainer, config: TeacherTrainConfig, total: int,
                   seconds: float, logger: TrainLogger, extra: dict[str, Any]) -> Path:
    """Final teacher file, with the paired test L1 in its metadata (Pix2Pix only). Nothing of
    the run's circumstances goes in (the training time goes to TensorBoard): the same recipe
    and seed on the same kind of machine write the same bytes, so results recorded against a
    teacher file's SHA-1 can be resumed with a retrained one."""
    logger.scalars(total, {"train_seconds": seconds}, prefix="time")
    metadata: dict[str, Any] = {"steps": total, "seed": config.seed,
                                "train_config": to_dict(config), **extra}
    if config.family == "pix2pix":
        test_set = build_dataset(config.data, evaluation_split(config.data))
        generator = trainer.networks[trainer.main_generator]
        metadata["test_l1"] = mean_l1(generator, test_set, config.batch_size, config.device)
        logger.scalars(total, {"test_l1": metadata["test_l1"]}, prefix="eval")
    payload = _checkpoint("teacher", trainer, config, metadata=metadata,
                          weights_dtype=config.weights_dtype)
    return save_checkpoint(path, payload)


def _train_steps(trainer: GANTrainer, config: TeacherTrainConfig, batches: Iterator[dict],
                 steps: range, total: int, store: TrainStateStore, logger: TrainLogger,
                 seconds_before: float, checkpoint_extra: dict[str, Any], desc: str,
                 ranks: Distributed) -> float:
    """Run global steps ``steps``, logging, previewing and saving train states on schedule (and
    always after the last one). Returns the run's training time so far, in seconds. Each rank
    trains on its rows of the global batch; rank 0 alone logs and saves."""
    began = time.perf_counter()
    trainer.train()
    trainer.autocast = config.autocast
    with tqdm(total=total, initial=steps.start, desc=desc,
              disable=not (config.progress and ranks.is_main), dynamic_ncols=True) as bar:
        for step in steps:
            lr = config.lr_at(step, total)
            trainer.set_lr(lr)
            trainer.adversarial_weight = config.adversarial_weight_at(step)
            batch = _to_device(ranks.shard(next(batches)), config.device)
            losses = trainer.train_step(trainer.prepare(batch))
            done = step + 1
            bar.update(1)
            if done % config.log_every == 0:
                losses = ranks.mean(losses)  # the whole global batch's losses
                logger.scalars(done, losses)
                logger.scalars(done, {"lr": lr, "adversarial_weight": trainer.adversarial_weight},
                               prefix="train")
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            if config.image_every and done % config.image_every == 0:
                logger.images(done, trainer)
            if done % config.save_every == 0 or done == steps.stop:
                if ranks.is_main:
                    seconds = seconds_before + time.perf_counter() - began
                    state = _train_state(trainer, config, done, seconds, ranks.world_size)
                    store.save(done, _checkpoint("train_state", trainer, config,
                                                 train_state=state, **checkpoint_extra))
                ranks.barrier()
    return seconds_before + time.perf_counter() - began


def _latest_state(store: TrainStateStore, ranks: Distributed) -> dict[str, Any] | None:
    """The newest readable train state, read by rank 0 first (it sets unreadable files aside),
    then by the others."""
    saved = store.latest() if ranks.is_main else None
    ranks.barrier()
    return saved if ranks.is_main else store.latest()


def train_teacher(
    config: TeacherTrainConfig, out_dir: str | Path, resume: bool = True,
    until_step: int | None = None, *, trainer: GANTrainer | None = None,
    checkpoint_extra: dict[str, Any] | None = None, final_file: str | None = TEACHER_FILE,
    final_metadata: dict[str, Any] | None = None,
) -> Path:
    """Train a teacher, resuming from the newest train state in ``out_dir`` if asked.

    Args:
        config: the recipe. On resume, only ``OPERATIONAL_KEYS`` may differ from the saved one.
        out_dir: run folder (created if needed).
        resume: continue from ``out_dir/checkpoints``; with False, a folder that already holds
            train states is refused rather than silently mixed with a new run.
        until_step: stop early after this global step and write a train state (time-sliced
            jobs, tests of resumption); None trains to the end.
        trainer: already-built networks to train (fine-tuning sliced networks after a search);
            None builds fresh ones from ``config``.
        checkpoint_extra: extra ``make_checkpoint`` entries of every train state (the kept
            channels and input shapes of sliced networks).
        final_file: name of the teacher file written at the end; None writes none and returns
            the last train state.
        final_metadata: extra entries of that file's metadata (a supernet's channel rankings).

    Returns:
        ``out_dir/teacher.pt`` when training is complete, else the train-state file written.
    """
    out_dir = Path(out_dir)
    store = TrainStateStore(out_dir / "checkpoints", keep=config.keep_train_states)
    if not resume and store.steps():
        raise FileExistsError(f"{store.directory} already holds train states; resume or use "
                              "another output folder")
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    ranks = current(config.device)
    ranks.check_batch(config.batch_size)
    dataset = build_dataset(config.data, "train")
    total = config.total_steps(steps_per_epoch(dataset, config.batch_size))
    seed_everything(config.seed)
    trainer = trainer if trainer is not None else build_trainer(config)
    saved = _latest_state(store, ranks) if resume else None
    state = _restore(trainer, saved, config) if saved is not None else {}
    ranks.broadcast_from_main(trainer.networks.values())
    start = state.get("step", 0)
    stop = total if until_step is None else max(start, min(until_step, total))

    logger = (TrainLogger(config.log_dir or out_dir / "tensorboard", start_step=start,
                          preview=_preview_batch(config)) if ranks.is_main else NullLogger())
    batches = batch_stream(dataset, config.batch_size, config.seed, start, config.num_workers)
    hooks = ranks.average_gradients_before_steps(trainer.optimizers.values())
    try:
        what = "fine-tuning" if final_file is None else Path(final_file).stem  # teacher, supernet
        desc = f"{config.family} {what}"
        norms = (ranks.synchronised_batchnorm(trainer.networks.values(), config.device)
                 if config.sync_batchnorm else contextlib.nullcontext())
        with norms:
            seconds = _train_steps(trainer, config, batches, range(start, stop), total, store,
                                   logger, state.get("train_seconds", 0.0),
                                   dict(checkpoint_extra or {}), desc, ranks)
        if stop < total or final_file is None:
            return store.path(stop)
        path = out_dir / final_file
        if ranks.is_main:
            _write_teacher(path, trainer, config, total, seconds, logger,
                           dict(final_metadata or {}))
        ranks.barrier()
        return path
    finally:
        for hook in hooks:
            hook.remove()
        logger.close()
