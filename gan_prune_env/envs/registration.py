"""Entry points of the Gymnasium ids that ``import gan_prune_env`` registers.

``gymnasium.make("Pix2PixPrune-v0", **kwargs)``: ``view`` ("single" | "joint"), ``agent`` and
``peer_policy`` (single view), ``reward_weights`` (joint view), ``render_mode``, and every
``EnvConfig`` field (``task``, ``dataset``, ``teacher``, ``budget_g``, ``budget_d``,
``compute_weight``, ``rounds``, ``inner_steps``, ``eval_size``, ``k``, ``resolution``,
``device``, ...). An unknown keyword raises ``ConfigError`` naming it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from gan_prune_env.config import from_dict
from gan_prune_env.envs.config import EnvConfig
from gan_prune_env.envs.preparation import resolve_task
from gan_prune_env.envs.parallel import GANPruneParallelEnv
from gan_prune_env.envs.views import JointPruneEnv, SingleAgentPruneEnv

ENV_IDS = {"Pix2PixPrune-v0": ("pix2pix", "default"),
           "CycleGANPrune-v0": ("cyclegan", "default_cyclegan")}
VIEWS = ("single", "joint")


def make_prune_env(family: str, default_task: str, view: str = "single",
                   agent: str = "generator", peer_policy: Any = None,
                   reward_weights: tuple[float, float] = (1.0, 1.0),
                   render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """Entry point of both ids: build the view over a game of the given family."""
    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {VIEWS}")
    config = from_dict(EnvConfig, {"task": default_task, **kwargs}, where="env kwargs")
    _check_family(config, family)
    if view == "joint":
        return JointPruneEnv(reward_weights, render_mode=render_mode, config=config)
    return SingleAgentPruneEnv(agent, peer_policy, render_mode=render_mode, config=config)


def make_parallel_env(env_id: str, render_mode: str | None = None, **kwargs: Any
                      ) -> GANPruneParallelEnv:
    """The two-agent (PettingZoo Parallel) env behind a Gymnasium id, for multi-agent code."""
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown env id {env_id!r}; expected one of {sorted(ENV_IDS)}")
    family, default_task = ENV_IDS[env_id]
    config = from_dict(EnvConfig, {"task": default_task, **kwargs}, where="env kwargs")
    _check_family(config, family)
    return GANPruneParallelEnv(config, render_mode=render_mode)


def _check_family(config: EnvConfig, family: str) -> None:
    task = resolve_task(config)
    if task.family != family:
        raise ValueError(f"task {config.task!r} is a {task.family} task; this id needs {family}")


def make_pix2pix_env(**kwargs: Any) -> gym.Env:
    return make_prune_env("pix2pix", "default", **kwargs)


def make_cyclegan_env(**kwargs: Any) -> gym.Env:
    return make_prune_env("cyclegan", "default_cyclegan", **kwargs)
