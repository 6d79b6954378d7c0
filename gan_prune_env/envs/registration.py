"""Entry points of the Gymnasium ids that ``import gan_prune_env`` registers.

``gymnasium.make("Pix2PixPrune-v0", **kwargs)``: ``view`` ("single" | "joint"), ``agent`` and
``peer_policy`` (single view), ``reward_weights`` (joint view), ``render_mode``, and every
``EnvConfig`` field (``task``, ``dataset``, ``teacher``, ``budget_g``, ``budget_d``,
``compute_weight``, ``rounds``, ``inner_steps``, ``eval_size``, ``k``, ``resolution``,
``device``, ...). An unknown keyword raises ``ConfigError`` naming it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym

from gan_prune_env.config import from_dict
from gan_prune_env.envs.config import EnvConfig
from gan_prune_env.envs.preparation import resolve_task
from gan_prune_env.envs.game import PruningGame
from gan_prune_env.envs.parallel import GANPruneParallelEnv, check_shareable
from gan_prune_env.envs.views import JointPruneEnv, SingleAgentPruneEnv

ENV_IDS = {"Pix2PixPrune-v0": ("pix2pix", "default"),
           "CycleGANPrune-v0": ("cyclegan", "default_cyclegan")}
VIEWS = ("single", "joint")


def make_prune_env(family: str, default_task: str, view: str = "single",
                   agent: str = "generator", peer_policy: Any = None,
                   reward_weights: tuple[float, float] = (1.0, 1.0),
                   render_mode: str | None = None, game: PruningGame | None = None,
                   **kwargs: Any) -> gym.Env:
    """Entry point of both ids: build the view over a game of the given family (a new one, or
    ``game``, shared with other episodes)."""
    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {VIEWS}")
    if game is None:
        config = from_dict(EnvConfig, {"task": default_task, **kwargs}, where="env kwargs")
        _check_family(config, family)
        game = PruningGame(config)
    elif kwargs:
        raise TypeError(f"a shared game brings its own config: pass no other options {kwargs}")
    if view == "joint":
        return JointPruneEnv(reward_weights, render_mode=render_mode, game=game)
    return SingleAgentPruneEnv(agent, peer_policy, render_mode=render_mode, game=game)


def make_prune_vector_env(family: str, default_task: str, num_envs: int = 1,
                          **kwargs: Any) -> gym.vector.SyncVectorEnv:
    """Vector entry point of both ids (``gymnasium.make_vec(id, num_envs)``): ``num_envs``
    episodes, in one process, over ONE game: the networks, pools and task are prepared once,
    and the cache of evaluated pairs serves every episode (a pair one episode scored is a
    lookup for the others). Gymnasium's ``SyncVectorEnv`` batches them and resets a finished
    episode on the next step (``AutoresetMode.NEXT_STEP``). Frozen weights only
    (``inner_steps`` 0); keywords as :func:`make_prune_env`, ``peer_policy`` excepted (each
    episode would need its own): use ``view="joint"`` or the default peer."""
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    if kwargs.pop("max_episode_steps", None) is not None:
        raise ValueError("the episode length is the env's `rounds`, not max_episode_steps")
    if "peer_policy" in kwargs:
        raise ValueError("peer_policy is per episode: build the views yourself and give them to "
                         "gymnasium.vector.SyncVectorEnv")
    views = {key: kwargs.pop(key) for key in ("view", "agent", "reward_weights", "render_mode")
             if key in kwargs}
    config = from_dict(EnvConfig, {"task": default_task, **kwargs}, where="env kwargs")
    _check_family(config, family)
    check_shareable(config)
    game = PruningGame(config)
    factories = [partial(make_prune_env, family, default_task, game=game, **views)
                 for _ in range(num_envs)]
    return gym.vector.SyncVectorEnv(factories, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


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


def make_pix2pix_vector_env(num_envs: int = 1, **kwargs: Any) -> gym.vector.SyncVectorEnv:
    return make_prune_vector_env("pix2pix", "default", num_envs, **kwargs)


def make_cyclegan_vector_env(num_envs: int = 1, **kwargs: Any) -> gym.vector.SyncVectorEnv:
    return make_prune_vector_env("cyclegan", "default_cyclegan", num_envs, **kwargs)
