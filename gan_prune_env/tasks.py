"""Tasks: a dataset, a generator/discriminator architecture and the teacher to compress.

Built-in tasks (``get_task(name)``):

- ``default``: Pix2Pix on the procedural label-map -> photo pairs at 64x64, a ``unet_auto``
  U-Net (ngf 16, BatchNorm) and a conditional PatchGAN (ndf 16). Its teacher ships with the
  package (``assets/default_teacher.pt``), and so does a weight-sharing supernet of its generator
  (``assets/default_supernet.pt``, the env's ``supernet="shipped"``; the command that trained it
  is in the JSON beside it).
- ``default_long``: the ``default`` task with a teacher trained four times as long (4800 steps,
  its learning rate decayed over the last 2400): the same networks and data; the shipped file
  scores test FID 161.6 against the default teacher's 169.2, and no student reaches it at any
  budget measured (``docs/RESULTS.md``). Its
  teacher ships with the package too (``assets/default_long_teacher.pt``; the command that
  trained it is in the JSON beside it).
- ``default_cyclegan``: CycleGAN on the same procedural images treated as two unpaired domains
  (A = label maps, B = photos), ``resnet_6blocks`` (ngf 8, InstanceNorm) and a 3-channel
  PatchGAN (ndf 16, InstanceNorm). Its teacher ships with the package too
  (``assets/default_cyclegan_teacher.pt``, 2.4 MB; the command that trained it is in the JSON
  beside it); were the file missing, it would be trained on first use (a few minutes on CPU)
  and cached.
- ``default_wide``: the ``default`` task with a teacher of the reference width (U-Net ngf 64,
  PatchGAN ndf 64: 16x the default generator's MACs), heavily over-parameterised for its data as
  real teachers are. Its teacher is neither shipped nor trained on first use (25 minutes on 2
  idle cores): train it with ``python -m gan_prune_env.train_teacher --task default_wide --out
  DIR`` and give ``DIR/teacher.pt`` as ``teacher_checkpoint``.
- ``facades``: Pix2Pix labels -> photo on the pix2pix facades set found under ``data_root`` or
  ``$GAN_PRUNE_DATA`` (``<root>/facades/{train,test}``), 128x128 (load 143, crop 128),
  ``unet_128`` with ngf 32 (the reference's 64 is slow on CPU; set ``generator.ngf``). Its teacher
  must be given as ``teacher_checkpoint``.

A mapping (or YAML file) whose ``name`` is a built-in task overrides that task's fields, e.g.
``{"name": "facades", "generator": {"ngf": 64}, "teacher_checkpoint": "facades.pt"}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from gan_prune_env.atomic import exclusive_lock
from gan_prune_env.checkpoint import (
    CheckpointError,
    embedded_configs,
    load_discriminator,
    load_generator,
    read_checkpoint,
)
from gan_prune_env.config import ConfigError, from_dict, load_yaml, to_dict
from gan_prune_env.data import DataConfig
from gan_prune_env.families import check_family_configs
from gan_prune_env.models import DiscriminatorConfig, GeneratorConfig, unet_depth
from gan_prune_env.teacher.config import TeacherTrainConfig, merge_overrides
from gan_prune_env.teacher.loop import TEACHER_FILE, train_teacher

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
DATA_ENV = "GAN_PRUNE_DATA"
CACHE_ENV = "GAN_PRUNE_CACHE"
SHIPPED_TEACHERS = {"default": ASSETS / "default_teacher.pt",
                    "default_long": ASSETS / "default_long_teacher.pt",
                    "default_cyclegan": ASSETS / "default_cyclegan_teacher.pt"}
SHIPPED_SUPERNETS = {"default": ASSETS / "default_supernet.pt"}
SHIPPED = "shipped"
"""The env's ``supernet`` value that names the task's shipped supernet file."""
FIRST_USE_TEACHERS = {"default", "default_cyclegan"}
"""Built-in tasks whose teacher, when not shipped, is trained with the built-in recipe on first
use and cached (the recipe must fit in a few minutes of CPU time)."""
LONG_TEACHER_STEPS = 4800
"""Optimiser steps (batch 16) of the ``default_long`` teacher, four times the default's: its
test FID still falls at the end of the decay (the shipped file: 166.9, 164.0, 161.6 at 3600,
4200, 4800 steps; an Intel Xeon retrain: 150.6), where the default teacher's 1200 steps leave
its quality mostly to luck (the same recipe with seed 1: 197.2)."""
WIDE_TEACHER_STEPS = 2000
"""Optimiser steps (batch 16) of the ``default_wide`` teacher: 0.74 s a step on 2 idle cores
(25 min). Its test FID (``benchmarks/teacher_curve.py``, 100 images) falls from 212 at step 250
to 151 at 1500 and 148 at 2000: flat over the last 500 steps of the linear decay."""
_TASK_OWNED_KEYS = ("family", "data", "generator", "discriminator")


@dataclass
class TaskConfig:
    """One compression task.

    ``image_size`` (pixels) is the network input size and must equal ``data.crop_size``. For
    ``unet_auto``, ``generator.image_size`` sets the U-Net's depth, so the same teacher runs at
    any multiple of it. ``teacher_train`` holds the :class:`TeacherTrainConfig` fields (other
    than family, data and networks) of the recipe that trains this task's teacher.
    """

    name: str
    family: str = "pix2pix"
    data: DataConfig = field(default_factory=DataConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    teacher_checkpoint: str | None = None
    image_size: int = 256
    teacher_train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_family_configs(self.family, self.generator, self.discriminator)
        for side in ("input_nc", "output_nc"):
            if getattr(self.data, side) != getattr(self.generator, side):
                raise ValueError(f"data.{side} ({getattr(self.data, side)}) must equal "
                                 f"generator.{side} ({getattr(self.generator, side)}): the "
                                 "images are read with the channels the generator takes and makes")
        if self.image_size != self.data.crop_size:
            raise ValueError(f"image_size ({self.image_size}) must equal data.crop_size "
                             f"({self.data.crop_size})")
        levels = _unet_levels(self.generator)
        if levels and self.image_size % 2**levels:
            raise ValueError(f"a {levels}-level U-Net ({self.generator.arch}) needs an image_size "
                             f"divisible by {2**levels}, got {self.image_size}")
        owned = sorted(set(self.teacher_train) & set(_TASK_OWNED_KEYS))
        if owned:
            raise ValueError(f"teacher_train must not set {owned}; they come from the task")
        teacher_train_config(self)  # fail now, not after the first use

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Generator input shape ``(C, H, W)``."""
        return (self.generator.input_nc, self.image_size, self.image_size)


def _unet_levels(config: GeneratorConfig) -> int:
    """Stride-2 levels of a U-Net generator (0 for other architectures)."""
    if config.arch == "unet_auto":
        return unet_depth(config.image_size)
    return {"unet_256": 8, "unet_128": 7}.get(config.arch, 0)


def teacher_train_config(task: TaskConfig) -> TeacherTrainConfig:
    """The recipe that trains ``task``'s teacher."""
    return from_dict(TeacherTrainConfig, {
        **task.teacher_train, "family": task.family, "data": task.data,
        "generator": task.generator, "discriminator": task.discriminator,
    }, where=f"task {task.name!r} teacher_train")


# --- built-in tasks ---------------------------------------------------------------------------


def _default(data_root: str | None) -> TaskConfig:
    return TaskConfig(
        name="default",
        family="pix2pix",
        data=DataConfig(root=None, mode="aligned", crop_size=64, load_size=64),
        generator=GeneratorConfig(arch="unet_auto", ngf=16, norm="batch", image_size=64),
        discriminator=DiscriminatorConfig(arch="basic", input_nc=6, ndf=16, norm="batch"),
        image_size=64,
        teacher_train={"n_steps": 1200, "batch_size": 16, "lr_decay_steps": 400,
                       "image_every": 100, "save_every": 200, "weights_dtype": "float16"},
    )


def _default_wide(data_root: str | None) -> TaskConfig:
    base = _default(data_root)
    return replace(
        base, name="default_wide",
        generator=replace(base.generator, ngf=64),
        discriminator=replace(base.discriminator, ndf=64),
        teacher_train={**base.teacher_train, "n_steps": WIDE_TEACHER_STEPS,
                       "lr_decay_steps": WIDE_TEACHER_STEPS // 2, "weights_dtype": "float32",
                       "save_every": 250, "keep_train_states": 100},
    )


def _default_long(data_root: str | None) -> TaskConfig:
    base = _default(data_root)
    return replace(
        base, name="default_long",
        teacher_train={**base.teacher_train, "n_steps": LONG_TEACHER_STEPS,
                       "lr_decay_steps": LONG_TEACHER_STEPS // 2, "save_every": 600,
                       "keep_train_states": 100},
    )


def _default_cyclegan(data_root: str | None) -> TaskConfig:
    return TaskConfig(
        name="default_cyclegan",
        family="cyclegan",
        data=DataConfig(root=None, mode="unaligned", crop_size=64, load_size=64),
        generator=GeneratorConfig(arch="resnet_6blocks", ngf=8, norm="instance", image_size=64),
        discriminator=DiscriminatorConfig(arch="basic", input_nc=3, ndf=16, norm="instance"),
        image_size=64,
        teacher_train={"n_steps": 600, "batch_size": 4, "lr_decay_steps": 200,
                       "image_every": 100, "save_every": 100},
    )


def _facades(data_root: str | None) -> TaskConfig:
    base = data_root or os.environ.get(DATA_ENV)
    if not base:
        raise ConfigError(f"task 'facades' needs its images: pass data_root or set ${DATA_ENV} "
                          "to the folder that holds facades/")
    return TaskConfig(
        name="facades",
        family="pix2pix",
        data=DataConfig(root=str(Path(base) / "facades"), mode="aligned", direction="BtoA",
                        load_size=143, crop_size=128),
        generator=GeneratorConfig(arch="unet_128", ngf=32, norm="batch", use_dropout=True,
                                  image_size=128),
        discriminator=DiscriminatorConfig(arch="basic", input_nc=6, ndf=64, norm="batch"),
        image_size=128,
        teacher_train={"epochs": 200, "batch_size": 1, "lr_decay_steps": 40000},
    )


BUILTIN_TASKS: dict[str, Callable[[str | None], TaskConfig]] = {
    "default": _default, "default_long": _default_long, "default_wide": _default_wide,
    "default_cyclegan": _default_cyclegan,
    "facades": _facades,
}


def list_tasks() -> list[str]:
    return sorted(BUILTIN_TASKS)


def get_task(name_or_config: str | os.PathLike | Mapping[str, Any] | TaskConfig,
             data_root: str | None = None) -> TaskConfig:
    """A task from a built-in name, a YAML file, a mapping, or a TaskConfig (returned as is).

    Args:
        data_root: folder holding the datasets of file-based built-in tasks (default
            ``$GAN_PRUNE_DATA``).
    """
    if isinstance(name_or_config, TaskConfig):
        return name_or_config
    if isinstance(name_or_config, Mapping):
        data = dict(name_or_config)
        builtin = BUILTIN_TASKS.get(data.get("name"))
        if builtin is not None:
            data = merge_overrides(to_dict(builtin(data_root)), data)
        return from_dict(TaskConfig, data)
    name = str(name_or_config)
    if name in BUILTIN_TASKS:
        return BUILTIN_TASKS[name](data_root)
    if name.endswith((".yaml", ".yml")):
        return get_task(load_yaml(name), data_root)
    raise ConfigError(f"unknown task {name!r}; built-in tasks are {list_tasks()} "
                      "(or give a YAML file or a mapping)")


# --- teachers ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where teachers trained on first use are kept: ``$GAN_PRUNE_CACHE`` or
    ``~/.cache/gan_prune_env``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gan_prune_env")


def _task_digest(task: TaskConfig) -> str:
    """Short hash of the task's config: a changed built-in recipe gets a new cache entry."""
    data = to_dict(task)
    data.pop("teacher_checkpoint")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def supernet_path(task: TaskConfig, supernet: str) -> Path:
    """The supernet file an env's ``supernet`` names: a path, or ``"shipped"``, the task's
    shipped file (only the built-in tasks in ``SHIPPED_SUPERNETS`` have one)."""
    if supernet != SHIPPED:
        return Path(supernet).expanduser()
    shipped = SHIPPED_SUPERNETS.get(task.name)
    if shipped is None or not shipped.is_file():
        raise ConfigError(
            f"supernet='shipped': task {task.name!r} ships no supernet (tasks that do: "
            f"{sorted(SHIPPED_SUPERNETS)}); train one with python -m gan_prune_env.supernet "
            f"--task {task.name} --out DIR and pass supernet='DIR/supernet.pt'")
    return shipped


def teacher_path(task: TaskConfig, train_if_missing: bool = True) -> Path:
    """The task's teacher file: ``teacher_checkpoint``, else the shipped file, else (for
    ``FIRST_USE_TEACHERS``) the cached one, trained here with the built-in recipe if missing;
    an interrupted first-use training resumes on the next call."""
    if task.teacher_checkpoint is not None:
        path = Path(task.teacher_checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointError(f"teacher checkpoint of task {task.name!r} not found: {path}")
        return path
    shipped = SHIPPED_TEACHERS.get(task.name)
    if shipped is not None and shipped.is_file():
        return shipped
    if task.name not in FIRST_USE_TEACHERS:
        how = (f"--task {task.name} --out DIR" if task.name in BUILTIN_TASKS
               else "--config TEACHER.yaml --out DIR")
        raise ConfigError(f"task {task.name!r} has no teacher: set teacher_checkpoint (train one "
                          f"with python -m gan_prune_env.train_teacher {how}; it writes "
                          "DIR/teacher.pt)")
    # The built-in recipe, not the caller's variant: overriding e.g. the evaluation resolution
    # must reuse the cached teacher, not train another one.
    builtin = BUILTIN_TASKS[task.name](None)
    run_dir = cache_dir() / "teachers" / f"{task.name}-{_task_digest(builtin)}"
    path = run_dir / TEACHER_FILE
    if not path.is_file():
        if not train_if_missing:
            raise CheckpointError(f"no cached teacher for task {task.name!r} at {path}")
        run_dir.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(run_dir / ".lock"):  # another process may be training it now
            if not path.is_file():
                logger.warning("training the teacher of task %r on first use; it is cached in "
                               "%s", task.name, run_dir)
                train_teacher(teacher_train_config(builtin), run_dir, resume=True)
    return path


def _architecture(config: GeneratorConfig | DiscriminatorConfig) -> dict[str, Any]:
    """Fields that decide a network's weights (image_size matters only to ``unet_auto``)."""
    data = to_dict(config)
    if isinstance(config, GeneratorConfig) and config.arch != "unet_auto":
        data.pop("image_size")
    return data


def check_teacher_fits(task: TaskConfig, payload: Mapping[str, Any]) -> None:
    """Raise CheckpointError unless ``payload`` is an unpruned teacher of ``task``'s
    family and architectures."""
    where = payload.get("path", "teacher checkpoint")
    if payload["kind"] != "teacher" or payload.get("kept"):
        raise CheckpointError(f"{where}: expected an unpruned teacher checkpoint, found kind "
                              f"{payload['kind']!r}")
    if payload["family"] != task.family:
        raise CheckpointError(f"{where}: a {payload['family']} checkpoint, but task {task.name!r}"
                              f" is {task.family}")
    found = dict(zip(("generator", "discriminator"), embedded_configs(payload)))
    expected = {"generator": task.generator, "discriminator": task.discriminator}
    for role in ("generator", "discriminator"):
        if _architecture(found[role]) != _architecture(expected[role]):
            raise CheckpointError(
                f"{where}: its {role} is {found[role]}, but task {task.name!r} expects "
                f"{expected[role]}; give the task a matching teacher_checkpoint"
            )


def load_teacher(task: str | TaskConfig | Mapping[str, Any],
                 device: str = "cpu") -> tuple[nn.Module, nn.Module]:
    """The task's pretrained (generator, discriminator), in eval mode.

    For CycleGAN these are the A -> B generator and the discriminator of domain B (which judges
    that generator's outputs). A teacher of another family or architecture than the task's
    raises CheckpointError.
    """
    task = get_task(task)
    payload = read_checkpoint(teacher_path(task))
    check_teacher_fits(task, payload)
    return load_generator(payload, device=device), load_discriminator(payload, device=device)


__all__ = [
    "BUILTIN_TASKS", "CACHE_ENV", "DATA_ENV", "FIRST_USE_TEACHERS", "SHIPPED_TEACHERS",
    "TaskConfig", "cache_dir", "check_teacher_fits", "get_task", "list_tasks", "load_teacher",
    "teacher_path", "teacher_train_config",
]
