"""Entry points of the Gymnasium ids that ``import gan_prune_env`` registers.

``gymnasium.make("Pix2PixPrune-v0", **kwargs)``: ``view`` ("single" | "joint"), ``agent`` and
``peer_policy`` (single view), ``reward_weights`` (joint view), ``render_mode``, and every
``EnvConfig`` field (``task``, ``dataset``, ``teacher``, ``budget_g``, ``budget_d``,
``compute_weight``, ``rounds``, ``inner_steps``, ``eval_size``, ``k``, ``resolution``,
``device``, ...). An unknown keyword raises ``ConfigError`` naming it.

Each id is a family and the ``EnvConfig`` keywords it starts from (``ENV_IDS``); a caller's
keywords override them, ``objective`` key by key (``objective={"k": 8}`` on
``Pix2PixPruneDensity-v0`` keeps its density-only weights). Like CompilerGym's ids (one per
reward and observation preset of one environment), ``Pix2PixPruneDensity-v0`` is a preset of
``Pix2PixPrune-v0``, not its successor: v0 stays the paper's full objective on the teacher's
weights, the reference of the leaderboard and of the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import gymnasium as gym

from gan_prune_env.config import from_dict
from gan_prune_env.envs.config import EnvConfig
from gan_prune_env.envs.preparation import resolve_task
from gan_prune_env.envs.game import PruningGame
from gan_prune_env.envs.parallel import GANPruneParallelEnv, check_shareable
from gan_prune_env.envs.views import JointPruneEnv, SingleAgentPruneEnv
from gan_prune_env.tasks import SHIPPED

DENSITY_ALONE = {"lambda_adv": 0.0, "lambda_rec": 0.0}
"""The objective of ``Pix2PixPruneDensity-v0``: MGGC's local-density term alone (no adversarial
term, no L1 anchor). ``L_G`` is the KL between the teacher's and the student's neighbourhood
densities and the reward ``-KL / KL_ref`` (``KL_ref``: the unpruned pair's, a supernet's whole
network; with the teacher's weights that is 0, and the uniform pair's scales it). With a
supernet's weights, the one env reward that ranks architectures as fine-tuning does
(``docs/RESULTS.md``, "The density term alone")."""
ENV_IDS: dict[str, tuple[str, Mapping[str, Any]]] = {
    "Pix2PixPrune-v0": ("pix2pix", {"task": "default"}),
    "Pix2PixPruneDensity-v0": ("pix2pix", {"task": "default", "supernet": SHIPPED,
                                           "budget_g": 0.1, "objective": DENSITY_ALONE}),
    "CycleGANPrune-v0": ("cyclegan", {"task": "default_cyclegan"}),
}
VIEWS = ("single", "joint")


def env_config(env_id: str, kwargs: Mapping[str, Any]) -> EnvConfig:
    """The ``EnvConfig`` of ``env_id`` with a caller's keywords over its defaults (the
    objective's merged key by key), checked: unknown keys, values, and a task of the wrong
    family are errors."""
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown env id {env_id!r}; expected one of {sorted(ENV_IDS)}")
    family, defaults = ENV_IDS[env_id]
    merged = {**defaults, **kwargs}
    if isinstance(defaults.get("objective"), Mapping) and isinstance(kwargs.get("objective"),
                                                                     Mapping):
        merged["objective"] = {**defaults["objective"], **kwargs["objective"]}
    config = from_dict(EnvConfig, merged, where=f"{env_id} kwargs")
    task = resolve_task(config)
    if task.family != family:
        raise ValueError(f"task {config.task!r} is a {task.family} task; {env_id} needs {family}")
    return config


def make_prune_env(env_id: str, view: str = "single", agent: str = "generator",
                   peer_policy: Any = None, reward_weights: tuple[float, float] = (1.0, 1.0),
                   render_mode: str | None = None, game: PruningGame | None = None,
                   **kwargs: Any) -> gym.Env:
    """Entry point of every id: build the view over a game of ``env_id`` (a new one, or
    ``game``, shared with other episodes)."""
    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {VIEWS}")
    if game is None:
        game = PruningGame(env_config(env_id, kwargs))
    elif kwargs:
        raise TypeError(f"a shared game brings its own config: pass no other options {kwargs}")
    if view == "joint":
        return JointPruneEnv(reward_weights, render_mode=render_mode, game=game)
    return SingleAgentPruneEnv(agent, peer_policy, render_mode=render_mode, game=game)


def make_prune_vector_env(env_id: str, num_envs: int = 1, **kwargs: Any
                          ) -> gym.vector.SyncVectorEnv:
    """Vector entry point of every id (``gymnasium.make_vec(id, num_envs)``): ``num_envs``
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
    config = env_config(env_id, kwargs)
    check_shareable(config)
    game = PruningGame(config)
    factories = [partial(make_prune_env, env_id, game=game, **views) for _ in range(num_envs)]
    return gym.vector.SyncVectorEnv(factories, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


def make_parallel_env(env_id: str, render_mode: str | None = None, **kwargs: Any
                      ) -> GANPruneParallelEnv:
    """The two-agent (PettingZoo Parallel) env behind a Gymnasium id, for multi-agent code."""
    return GANPruneParallelEnv(env_config(env_id, kwargs), render_mode=render_mode)


# Gymnasium's entry points (strings in ``gan_prune_env.ENV_ENTRY_POINTS``, so that importing the
# package stays light until an env is made): one per id and kind
make_pix2pix_env = partial(make_prune_env, "Pix2PixPrune-v0")
make_pix2pix_density_env = partial(make_prune_env, "Pix2PixPruneDensity-v0")
make_cyclegan_env = partial(make_prune_env, "CycleGANPrune-v0")
make_pix2pix_vector_env = partial(make_prune_vector_env, "Pix2PixPrune-v0")
make_pix2pix_density_vector_env = partial(make_prune_vector_env, "Pix2PixPruneDensity-v0")
make_cyclegan_vector_env = partial(make_prune_vector_env, "CycleGANPrune-v0")
