"""Everything about a task that is computed once and shared by all environments of a process.

Teacher outputs, phi features, k-NN neighbourhoods and the reference losses do not depend on the
agents' actions. Gymnasium's checkers and vectorised training create many env instances, so this
work is cached per process by configuration (the networks are deep-copied per env instance).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from gan_prune_env.checkpoint import read_checkpoint
from gan_prune_env.config import to_dict
from gan_prune_env.data import build_dataset, evaluation_split, seeded_inputs
from gan_prune_env.data.images import check_image_files
from gan_prune_env.envs.config import EnvConfig
from gan_prune_env.objective import (
    LocalDensityObjective, TeacherPool, build_objective, pair_input, widen_for_center,
)
from gan_prune_env.pruning import ChannelSpace, make_importance
from gan_prune_env.supernet import load_supernet
from gan_prune_env.tasks import (
    FIRST_USE_TEACHERS, TaskConfig, check_teacher_fits, get_task, load_teacher, supernet_path,
    teacher_path,
)

TASK_KEYS = ("task", "dataset", "teacher", "supernet", "resolution", "pool_size", "eval_size", "device",
             "seed", "objective", "importance", "divisor")


@dataclass
class PreparedTask:
    """Frozen teacher networks and the neighbourhood pools of one task."""

    task: TaskConfig
    generator: nn.Module  # teacher G, eval mode
    discriminator: nn.Module  # teacher D, center-conditioned
    objective: LocalDensityObjective
    train_pool: TeacherPool
    eval_pool: TeacherPool
    conditional: bool
    spaces: dict[str, ChannelSpace]  # read-only, shared by every env of the task
    supernet: nn.Module | None = None  # G weights the masked copies use instead of the teacher's


def resolve_task(config: EnvConfig) -> TaskConfig:
    """The task named in ``config`` with its dataset, teacher and resolution overrides."""
    task = get_task(config.task)
    data = task.data
    if config.dataset is not None:
        data = dataclasses.replace(data, root=config.dataset)
    if config.resolution is not None:
        data = dataclasses.replace(data, crop_size=config.resolution, load_size=config.resolution)
    teacher = config.teacher if config.teacher is not None else task.teacher_checkpoint
    image_size = config.resolution or task.image_size
    return dataclasses.replace(task, data=data, teacher_checkpoint=teacher, image_size=image_size)


def check_task_inputs(config: EnvConfig) -> TaskConfig:
    """The checks of seconds that would otherwise fail minutes into a run: the teacher file
    reads and fits the task (a first-use teacher not trained yet is left to be trained), the
    train and evaluation splits exist and hold ``pool_size`` and ``eval_size`` images, and every
    image file of them has a readable header."""
    task = resolve_task(config)
    if task.teacher_checkpoint is not None or task.name not in FIRST_USE_TEACHERS:
        payload = read_checkpoint(teacher_path(task, train_if_missing=False))
        check_teacher_fits(task, payload)
    for split, count, option in _input_splits(task, config):
        dataset = build_dataset(task.data, split)
        _check_split_size(task, split, len(dataset), count, option)
        check_image_files(dataset.image_files())
    return task


def _input_splits(task: TaskConfig, config: EnvConfig) -> tuple[tuple[str, int, str], ...]:
    """(split, images drawn, the option that sets the count) of the env's teacher pools."""
    return (("train", config.pool_size, "pool_size"),
            (evaluation_split(task.data), config.eval_size, "eval_size"))


def _check_split_size(task: TaskConfig, split: str, size: int, count: int, option: str) -> None:
    if size < count:
        raise ValueError(f"task {task.name!r}: split {split!r} has {size} images, fewer than "
                         f"{option}={count}; lower {option} to at most {size}")


def prepare_task(config: EnvConfig) -> PreparedTask:
    """Cached by the task-related part of ``config``; callers must copy networks they modify."""
    key = json.dumps({k: to_dict(config)[k] for k in TASK_KEYS}, sort_keys=True)
    if key not in _CACHE:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _prepare(config)
    return _CACHE[key]


_CACHE: dict[str, PreparedTask] = {}
_CACHE_SIZE = 4


def scoring_copy(network: nn.Module) -> nn.Module:
    """A copy of ``network`` to score architectures with, its convolution weights stored
    channels-last: oneDNN then convolves without reordering every activation to its blocked
    layout and back (1.5x on the default task's D; the same values up to float rounding)."""
    return copy.deepcopy(network).to(memory_format=torch.channels_last)


def _prepare(config: EnvConfig) -> PreparedTask:
    task = resolve_task(config)
    device = torch.device(config.device)
    generator, discriminator = load_teacher(task, device=config.device)
    generator.eval().requires_grad_(False)
    discriminator.eval().requires_grad_(False)
    conditional = task.family == "pix2pix"
    train_inputs, eval_inputs = (_load_inputs(task, split, count, option, config.seed, device)
                                 for split, count, option in _input_splits(task, config))
    with torch.no_grad():
        train_outputs = generator(train_inputs)
        # by the copy the game scores with, so that the unpruned teacher scores L1 = 0 exactly
        eval_outputs = scoring_copy(generator)(eval_inputs)
    objective = build_objective(config.objective, discriminator, conditional, train_inputs,
                                train_outputs).to(device)
    conditioned = discriminator if conditional else widen_for_center(discriminator)
    spaces = {
        "generator": _space(config, generator, eval_inputs[:1]),
        "discriminator": _space(config, conditioned, pair_input(eval_outputs[:1], eval_outputs[:1],
                                                                conditional)),
    }
    supernet = None
    if config.supernet is not None:
        supernet, critic = load_supernet(supernet_path(task, config.supernet), task, generator,
                                         spaces, config.importance, config.divisor,
                                         config.device)
        supernet.eval().requires_grad_(False)
        if critic is not None:  # every D architecture judges with the critic's weights
            conditioned = critic.requires_grad_(False)
    return PreparedTask(
        task=task,
        generator=generator,
        discriminator=conditioned.eval(),
        objective=objective,
        train_pool=objective.build_pool(train_inputs, train_outputs),
        eval_pool=objective.build_pool(eval_inputs, eval_outputs),
        conditional=conditional,
        spaces=spaces,
        supernet=supernet,
    )


def _space(config: EnvConfig, net: nn.Module, example: torch.Tensor) -> ChannelSpace:
    space = ChannelSpace(net, example, importance=make_importance(config.importance),
                         divisor=config.divisor)
    coarse = int((space.num_channels <= config.divisor).sum())
    if coarse:
        warnings.warn(f"divisor {config.divisor} is at least the width of {coarse} of the "
                      f"{space.num_groups} channel groups of {type(net).__name__}: those can only "
                      "keep 1 channel or all of them, so actions barely change them; a divisor "
                      f"below {int(space.num_channels.min())} keeps every group adjustable",
                      stacklevel=2)
    return space


def _load_inputs(task: TaskConfig, split: str, count: int, option: str, seed: int,
                 device: torch.device) -> torch.Tensor:
    """``count`` generator inputs of ``split``, chosen by a seeded permutation."""
    dataset = build_dataset(task.data, split)
    _check_split_size(task, split, len(dataset), count, option)
    return seeded_inputs(dataset, count, seed).to(device)
