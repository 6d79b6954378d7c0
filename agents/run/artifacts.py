"""From a found architecture pair to files: sliced networks, checkpoints, exports, reports."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from agents.base import Candidate
from gan_prune_env.checkpoint import (
    embedded_configs, load_discriminator, load_generator, make_checkpoint, read_checkpoint,
    save_checkpoint,
)
from gan_prune_env.envs import GANPruneParallelEnv
from gan_prune_env.envs.game import recalibrating
from gan_prune_env.families import ROLES
from gan_prune_env.models import GeneratorConfig
from gan_prune_env.models.factory import reinitialize as reinitialize_network
from gan_prune_env.pruning import ChannelSpace, count_macs, count_params, slice_by_indices
from gan_prune_env.students import fresh_separable_student, narrowed_separable_student
from gan_prune_env.tasks import TaskConfig, teacher_path

MAIN = {"pix2pix": ("generator", "discriminator"), "cyclegan": ("generator_AB", "discriminator_B")}


@dataclass
class PrunedPair:
    """The teacher's networks with the main G and D sliced to the found architecture."""

    family: str
    networks: dict[str, nn.Module]  # every network the family trains, main ones sliced
    teacher: dict[str, nn.Module]  # unpruned copies, for comparison
    kept: dict[str, dict[str, list[int]]]
    input_shape: dict[str, list[int]]
    generator_config: GeneratorConfig | None = None
    """The main G's architecture when it is a student of another layout (``use_student``);
    None: the teacher's, sliced to ``kept``."""

    @property
    def generator(self) -> nn.Module:
        return self.networks[MAIN[self.family][0]]

    @property
    def discriminator(self) -> nn.Module:
        return self.networks[MAIN[self.family][1]]


def teacher_networks(task: TaskConfig, device: str) -> dict[str, nn.Module]:
    """All networks of the task's teacher checkpoint (CycleGAN: both directions)."""
    payload = read_checkpoint(teacher_path(task))
    names = ("generator", "discriminator") if task.family == "pix2pix" else \
        ("generator_AB", "generator_BA", "discriminator_B", "discriminator_A")
    loaders = {n: (load_generator if n.startswith("generator") else load_discriminator)
               for n in names}
    return {n: loaders[n](payload, which=n, device=device) for n in names}


def slice_pair(env: GANPruneParallelEnv, best: Candidate, device: str,
               source: str = "teacher") -> PrunedPair:
    """Slice the teacher's main G and D to ``best``; the other CycleGAN networks stay full.

    ``source="supernet"`` slices the main G from the env's supernet (the weights it was scored
    with) instead of the teacher's; the teacher stays the distillation target.

    The discriminator is sliced in its *original* input layout (the env's center-conditioned
    copy of a CycleGAN D has extra input channels, which the kept indices never touch).
    """
    task = env.game.task
    teacher = teacher_networks(task, device)
    networks = {name: copy.deepcopy(net) for name, net in teacher.items()}
    size = task.image_size
    g_name, d_name = MAIN[task.family]
    if source == "supernet":
        supernet = env.game.supernet
        if supernet is None:
            raise ValueError("slicing from the supernet needs an env built with supernet=FILE")
        networks[g_name] = copy.deepcopy(supernet).to(device)
    elif source != "teacher":
        raise ValueError(f"source must be 'teacher' or 'supernet', got {source!r}")
    d_channels = 6 if task.family == "pix2pix" else 3
    shapes = {g_name: [3, size, size], d_name: [d_channels, size, size]}
    kept = {}
    for agent, name in (("generator", g_name), ("discriminator", d_name)):
        space: ChannelSpace = env.game.spaces[agent]
        kept[name] = space.keep_indices(best.kept_channels[agent])
        example = torch.zeros(1, *shapes[name], device=device)
        networks[name] = slice_by_indices(networks[name], example, kept[name])
    return PrunedPair(task.family, networks, teacher, kept, shapes)


def use_student(pair: PrunedPair, task: TaskConfig, kind: str, budget: float, seed: int,
                source: str | None = None, width: float = 1.0, importance: str = "l1"
                ) -> PrunedPair:
    """Replace the pair's main G by a student of GAN Compression's layout within ``budget`` of
    the teacher's G MACs (``RunConfig.student``): ``separable``, fresh at ``seed``, at most
    ``width`` times the teacher's width (``RunConfig.separable_width``); ``pruned_separable``,
    the separable G of the checkpoint ``source`` narrowed to fit, keeping the channels
    ``importance`` ranks best (``RunConfig.separable_importance``). The pair then records the
    student's config, which its checkpoints embed."""
    g_name = MAIN[pair.family][0]
    device = next(pair.networks[g_name].parameters()).device
    example = torch.zeros(1, *pair.input_shape[g_name])  # students are built on the CPU
    cap = budget * count_macs(pair.teacher[g_name], example.to(device))
    if kind == "separable":
        net, config = fresh_separable_student(task.generator, cap, example, seed, width)
    elif kind == "pruned_separable":
        payload = read_checkpoint(source)
        net, config = narrowed_separable_student(load_generator(payload),
                                                 embedded_configs(payload)[0], task.generator,
                                                 cap, example, importance)
    else:
        raise ValueError(f"unknown student {kind!r}")
    pair.networks[g_name] = net.to(device)
    pair.kept.pop(g_name, None)
    pair.generator_config = config
    return pair


def student_task(pair: PrunedPair, task: TaskConfig) -> TaskConfig:
    """``task`` with the pair's main G architecture: what its checkpoints must embed."""
    if pair.generator_config is None:
        return task
    return dataclasses.replace(task, generator=pair.generator_config)


def recalibrated_generator(pair: PrunedPair, env: GANPruneParallelEnv) -> nn.Module:
    """The pair's main G with its BatchNorm statistics re-estimated on the env's calibration
    images, as the env scores a pruned G ("adaptive BN"): how to judge a slice that is not
    fine-tuned. Modifies and returns the pair's network."""
    generator = pair.networks[MAIN[pair.family][0]]
    device = next(generator.parameters()).device
    calibration = env.game.calibration_inputs
    with torch.no_grad(), recalibrating(generator):
        generator(calibration.to(device))
    return generator


def reinitialize(pair: PrunedPair, seed: int, roles: tuple[str, ...] = ROLES) -> PrunedPair:
    """Turn ``pair`` into the thin student of the same architecture trained from scratch: the
    main G and D (or those of ``roles``) get fresh weights (the reference init, seeds ``seed``
    and ``seed + 1``, whichever roles are asked for) and fresh BatchNorm statistics. The
    baseline a user would reach for instead of pruning: the same MACs, distilled with the same
    recipe, without the teacher's weights; ``roles=("generator",)`` keeps the teacher's
    discriminator, as GAN Compression trains its students."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"roles {sorted(unknown)} are not among {ROLES}")
    for offset, (role, name) in enumerate(zip(ROLES, MAIN[pair.family])):
        if role in roles:
            reinitialize_network(pair.networks[name], seed=seed + offset)
    return pair


def save_pruned(pair: PrunedPair, task: TaskConfig, path: Path, metadata: dict) -> Path:
    """A "pruned" checkpoint that embeds the base architecture and the kept channels."""
    payload = make_checkpoint("pruned", pair.family, pair.networks,
                              student_task(pair, task).generator,
                              task.discriminator, kept=pair.kept, input_shape=pair.input_shape,
                              metadata=metadata)
    return save_checkpoint(path, payload)


def compute_table(pair: PrunedPair) -> dict[str, dict[str, float]]:
    """MACs (field and true convention) and params of teacher vs pruned main G and D."""
    g_name, d_name = MAIN[pair.family]
    rows = {}
    for role, name in (("generator", g_name), ("discriminator", d_name)):
        example = torch.zeros(1, *pair.input_shape[name])
        for which, net in (("teacher", pair.teacher[name]), ("pruned", pair.networks[name])):
            rows[f"{role}/{which}"] = {
                "macs": count_macs(net, example), "true_macs": count_macs(net, example, "true"),
                "params": count_params(net)}
    return rows
