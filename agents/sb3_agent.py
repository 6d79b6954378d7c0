"""Stable-Baselines3 (and sb3-contrib) algorithms as pruning agents.

SB3 is single-agent by design, so the two-agent game is played in one of two ways:

* ``mode="alternate"``: one model per agent, each on a ``SingleAgentPruneEnv`` view. Turns
  alternate: genG's model trains for ``alternate_every`` rounds while genD is played by a frozen
  snapshot of D's current policy, then the roles swap. Until a model has had its first turn, its
  peer role is played by the env default (uniform keep ratio within budget), a sane prior that
  an untrained network is not.
* ``mode="joint"``: one model on ``JointPruneEnv`` sets both networks and is paid
  ``w_G * r_G + w_D * r_D``.

Peers travel as ``PolicySnapshot`` objects: an SB3 policy reduced to (class, constructor
arguments, CPU state dict), rebuilt lazily where it is first called. They pickle cheaply, so the
same call updates in-process and out-of-process envs alike::

    vec_env.env_method("set_peer_policy", PolicySnapshot(d_model.policy))

With ``vec_env="subproc"`` each ``SubprocVecEnv`` worker receives the pickled snapshot and rebuilds
the policy in its own process; with ``"dummy"`` the call is a plain method call.

Every round any env plays is recorded into the ``SearchTracker`` by ``TrackerCallback``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from agents.base import PruningAgent, SearchTracker
from agents.baselines import make_config
from gan_prune_env.atomic import complete_folder, write_folder_atomically
from gan_prune_env.config import from_dict, to_dict
from gan_prune_env.envs import (
    AGENTS, EnvConfig, GANPruneParallelEnv, JointPruneEnv, SingleAgentPruneEnv,
)
from gan_prune_env.envs.observations import peer_of

ALGORITHMS: dict[str, tuple[str, str]] = {
    "ppo": ("stable_baselines3", "PPO"),
    "sac": ("stable_baselines3", "SAC"),
    "tqc": ("sb3_contrib", "TQC"),
    "trpo": ("sb3_contrib", "TRPO"),
    "recurrentppo": ("sb3_contrib", "RecurrentPPO"),
}
MODES = ("alternate", "joint")
VEC_ENVS: dict[str, type[VecEnv]] = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}
JOINT = "joint"
REPLAY_SUFFIX = "_replay_buffer.pkl"


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """SB3 / sb3-contrib class for a lower-case name (imported on demand)."""
    if algo not in ALGORITHMS:
        raise ValueError(f"algo {algo!r} is not one of {sorted(ALGORITHMS)}")
    module, name = ALGORITHMS[algo]
    return getattr(importlib.import_module(module), name)


# -- configuration ---------------------------------------------------------------------------------
ON_POLICY, OFF_POLICY = {"family": "on_policy"}, {"family": "off_policy"}


@dataclass
class SB3Hyperparams:
    """Algorithm arguments shared by one dataclass. Fields marked on-/off-policy reach only that
    family (SAC also has an ``n_steps``, meaning n-step returns, which must not receive the
    on-policy rollout length); any field reaches only algorithms whose constructor takes it.
    Episodes are a few rounds long, hence small rollouts and an early start of learning.

    Attributes:
        net_arch: hidden sizes of the policy (and value / critic) networks.
        extra: further constructor keywords, passed through unchecked (RL-Zoo style);
            ``extra["policy_kwargs"]`` is merged with ``net_arch``.
    """

    learning_rate: float = 3e-4
    gamma: float = 0.99
    batch_size: int = 16
    n_steps: int = field(default=16, metadata=ON_POLICY)
    n_epochs: int = field(default=4, metadata=ON_POLICY)
    learning_starts: int = field(default=16, metadata=OFF_POLICY)
    buffer_size: int = field(default=10_000, metadata=OFF_POLICY)
    train_freq: int = field(default=1, metadata=OFF_POLICY)
    gradient_steps: int = field(default=1, metadata=OFF_POLICY)
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    extra: dict[str, Any] = field(default_factory=dict)

    def kwargs_for(self, algo_class: type[BaseAlgorithm]) -> dict[str, Any]:
        """Constructor keywords of ``algo_class``."""
        family = "on_policy" if issubclass(algo_class, OnPolicyAlgorithm) else "off_policy"
        accepted = inspect.signature(algo_class.__init__).parameters
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name in accepted and f.metadata.get("family", family) == family}
        extra = dict(self.extra)
        policy_kwargs = {"net_arch": list(self.net_arch), **extra.pop("policy_kwargs", {})}
        return {**kwargs, **extra, "policy_kwargs": policy_kwargs}


@dataclass
class SB3Config:
    """Attributes:
        algo: ``ppo`` | ``sac`` | ``tqc`` | ``trpo`` | ``recurrentppo``.
        mode: ``alternate`` (a model per agent, turns) or ``joint`` (one model for both).
        alternate_every: rounds per turn; rounded up to whole rollouts (``n_steps * n_envs`` for
            on-policy algorithms) so that every turn ends with an update.
        n_envs, vec_env: vectorised envs per model (``dummy`` or ``subproc``).
        seed: seeds the models and their envs (D's model uses ``seed + 1``).
        device: torch device of the models (the envs use the env config's).
        policy: SB3 policy name (default ``MlpPolicy``, ``MlpLstmPolicy`` for RecurrentPPO).
        reward_weights: (w_G, w_D) of the joint reward.
        deterministic_peer: the peer snapshot acts with its mean action.
        tensorboard_log: folder passed to the algorithms; runs are named after the model.
        save_replay_buffer: off-policy saves include the replay buffer, so a resumed search
            continues exactly (about ``buffer_size * 2 * obs_dim * 4`` bytes per model).
        hyperparams: see ``SB3Hyperparams``.
    """

    algo: str = "ppo"
    mode: str = "alternate"
    alternate_every: int = 16
    n_envs: int = 1
    vec_env: str = "dummy"
    seed: int = 0
    device: str = "cpu"
    policy: str | None = None
    reward_weights: tuple[float, float] = (1.0, 1.0)
    deterministic_peer: bool = True
    tensorboard_log: str | None = None
    save_replay_buffer: bool = True
    verbose: int = 0
    hyperparams: SB3Hyperparams = field(default_factory=SB3Hyperparams)

    def __post_init__(self) -> None:
        algorithm_class(self.algo)  # fail early on a bad name or a missing sb3-contrib
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")
        if self.vec_env not in VEC_ENVS:
            raise ValueError(f"vec_env {self.vec_env!r} is not one of {sorted(VEC_ENVS)}")
        if self.alternate_every < 1 or self.n_envs < 1:
            raise ValueError("alternate_every and n_envs must be >= 1")

    @property
    def policy_name(self) -> str:
        return self.policy or ("MlpLstmPolicy" if self.algo == "recurrentppo" else "MlpPolicy")

    @property
    def model_keys(self) -> tuple[str, ...]:
        return (JOINT,) if self.mode == "joint" else AGENTS


# -- peers and bookkeeping -------------------------------------------------------------------------
class PolicySnapshot:
    """Frozen, picklable copy of an SB3 policy, usable as a peer policy (``obs -> action``).

    Pickles as (policy class, constructor arguments, CPU state dict), the same data SB3's own
    ``BasePolicy.save`` writes, and rebuilds the network on first call, so sending it to a
    ``SubprocVecEnv`` worker costs one state dict, not a live module with optimizer state.
    Recurrent policies are called without memory (each observation from a fresh state).
    """

    def __init__(self, policy: BasePolicy, deterministic: bool = True) -> None:
        self.policy_class = type(policy)
        self.constructor_kwargs = policy._get_constructor_parameters()
        self.state_dict = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
        self.deterministic = deterministic
        self._policy: BasePolicy | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_policy": None}

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        if self._policy is None:
            self._policy = self.policy_class(**self.constructor_kwargs)
            self._policy.load_state_dict(self.state_dict)
            self._policy.set_training_mode(False)
        action, _ = self._policy.predict(observation, deterministic=self.deterministic)
        return np.asarray(action, dtype=np.float32)


def split_round_info(info: dict[str, Any], reward: float, agent: str | None
                     ) -> tuple[dict[str, dict], dict[str, float]]:
    """Per-agent infos and rewards of one round, from a view's step info.

    The joint view's info has a sub-dict per agent, each with its ``reward``; a single view's
    info is the learner's own, its reward is the step reward, and the peer's sits in ``peer``.
    """
    if agent is None:
        return {a: info[a] for a in AGENTS}, {a: float(info[a]["reward"]) for a in AGENTS}
    peer = peer_of(agent)
    return ({agent: info, peer: info["peer"]},
            {agent: float(reward), peer: float(info["peer"]["reward"])})


class TrackerCallback(BaseCallback):
    """Records every round of every env into ``tracker``; stops training after ``max_rounds``."""

    def __init__(self, tracker: SearchTracker, agent: str | None, max_rounds: int) -> None:
        super().__init__()
        self.tracker, self.agent, self.max_rounds = tracker, agent, max_rounds
        self.recorded = 0

    def _on_step(self) -> bool:
        for info, reward in zip(self.locals["infos"], self.locals["rewards"]):
            self.tracker.record(*split_round_info(info, reward, self.agent))
            self.recorded += 1
        return self.recorded < self.max_rounds


# -- the agent -------------------------------------------------------------------------------------
class SB3Agent(PruningAgent):
    """genG and genD as SB3 models (alternating single-agent views, or one joint model)."""

    name = "sb3"

    def __init__(self, config: SB3Config | dict | None = None, **kwargs: Any) -> None:
        self._configure(make_config(SB3Config, config, kwargs, "SB3Agent config"))

    def _configure(self, config: SB3Config) -> None:
        """Start from scratch under ``config`` (construction, and ``load`` before it restores)."""
        self.config = config
        self.algo_class = algorithm_class(config.algo)
        self.models: dict[str, BaseAlgorithm] = {}
        self.turn = 0  # alternate mode: the model that trains next is AGENTS[turn % 2]
        self.split: int | None = None  # joint mode: generator groups in the joint action
        self._env_signature: str | None = None

    # -- acting ------------------------------------------------------------------------------
    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False
            ) -> dict[str, np.ndarray]:
        if not self.models:
            raise RuntimeError("SB3Agent has no models yet: call learn(env, ...) or load()")
        if self.config.mode == "joint":
            joint = np.concatenate([observations[a] for a in AGENTS])
            action = self._predict(JOINT, joint, deterministic)
            return {"generator": action[: self.split], "discriminator": action[self.split:]}
        return {a: self._predict(a, observations[a], deterministic) for a in AGENTS}

    def _predict(self, key: str, observation: np.ndarray, deterministic: bool) -> np.ndarray:
        action, _ = self.models[key].predict(observation, deterministic=deterministic)
        return np.asarray(action, dtype=np.float32)

    # -- learning ----------------------------------------------------------------------------
    def learn(self, env: GANPruneParallelEnv, rounds: int, tracker: SearchTracker) -> None:
        """Train on fresh views of ``env.config`` (the views own their games, so ``env`` itself
        is not stepped) for exactly ``rounds`` rounds, recording each into ``tracker``.

        SB3 restarts an on-policy rollout that a stop cut short, so calls in chunks (e.g. to
        checkpoint) lose nothing when ``rounds`` is a multiple of the turn length (alternate)
        or of ``n_steps * n_envs`` (joint)."""
        self._attach(env.config, env.game.num_groups("generator"))
        if self.config.mode == "joint":
            self._train(JOINT, rounds, tracker)
            return
        played = 0
        while played < rounds:
            learner = AGENTS[self.turn % 2]
            self._send_peer(learner)
            played += self._train(learner, min(self._turn_length(learner), rounds - played),
                                  tracker)
            self.turn += 1

    def _train(self, key: str, rounds: int, tracker: SearchTracker) -> int:
        callback = TrackerCallback(tracker, None if key == JOINT else key, rounds)
        self.models[key].learn(total_timesteps=rounds, callback=callback,
                               reset_num_timesteps=False, tb_log_name=f"{self.config.algo}_{key}")
        if callback.recorded == 0:  # would make learn() loop forever
            raise RuntimeError(f"{self.config.algo} model {key!r} played no round")
        return callback.recorded

    def _turn_length(self, key: str) -> int:
        model = self.models[key]
        rollout = model.n_steps if isinstance(model, OnPolicyAlgorithm) else 1
        rollout *= model.n_envs
        return math.ceil(self.config.alternate_every / rollout) * rollout

    def _send_peer(self, learner: str) -> None:
        """The learner's envs get a snapshot of the peer's policy (or the env default while the
        peer model is untrained)."""
        peer_model = self.models[peer_of(learner)]
        snapshot = (PolicySnapshot(peer_model.policy, self.config.deterministic_peer)
                    if peer_model.num_timesteps > 0 else None)
        self.models[learner].get_env().env_method("set_peer_policy", snapshot)

    # -- models and envs ---------------------------------------------------------------------
    def _attach(self, env_config: EnvConfig, generator_groups: int) -> None:
        """Create (or re-point loaded) models at vectorised views of ``env_config``."""
        signature = json.dumps(to_dict(env_config), sort_keys=True)
        if signature == self._env_signature:
            return
        self.close()
        self.split = generator_groups
        for index, key in enumerate(self.config.model_keys):
            vec_env = self._make_vec_env(env_config, key, self.config.seed + index)
            if key in self.models:
                self.models[key].set_env(vec_env)
            else:
                self.models[key] = self._new_model(vec_env, self.config.seed + index)
        self._env_signature = signature

    def _make_vec_env(self, env_config: EnvConfig, key: str, seed: int) -> VecEnv:
        if key == JOINT:
            factory = functools.partial(JointPruneEnv, self.config.reward_weights,
                                        config=env_config)
        else:
            factory = functools.partial(SingleAgentPruneEnv, key, None, config=env_config)
        return make_vec_env(factory, n_envs=self.config.n_envs, seed=seed,
                            vec_env_cls=VEC_ENVS[self.config.vec_env])

    def _new_model(self, vec_env: VecEnv, seed: int) -> BaseAlgorithm:
        cfg = self.config
        return self.algo_class(cfg.policy_name, vec_env, seed=seed, device=cfg.device,
                               verbose=cfg.verbose, tensorboard_log=cfg.tensorboard_log,
                               **cfg.hyperparams.kwargs_for(self.algo_class))

    def close(self) -> None:
        """Close the models' envs (and so their worker processes with ``vec_env="subproc"``)."""
        for model in self.models.values():
            if model.get_env() is not None:
                model.get_env().close()
        self._env_signature = None

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """A folder with one SB3 zip per model and ``state.json``, built in a temporary sibling
        folder and swapped in only once complete."""
        write_folder_atomically(path, self._write_save)

    def _write_save(self, folder: Path) -> None:
        for key, model in self.models.items():
            model.save(folder / f"{key}.zip")
            if self._has_replay_buffer(model):
                model.save_replay_buffer(folder / f"{key}{REPLAY_SUFFIX}")
        state = {"agent": self.name, "config": to_dict(self.config), "turn": self.turn,
                 "split": self.split, "models": sorted(self.models)}
        (folder / "state.json").write_text(json.dumps(state, indent=2))

    def load(self, path: str | Path) -> None:
        folder = complete_folder(path, "state.json", "SB3Agent save")
        state = json.loads((folder / "state.json").read_text())
        self._configure(from_dict(SB3Config, state["config"], where=str(folder / "state.json")))
        self.turn, self.split = state["turn"], state["split"]
        self.models = {key: self.algo_class.load(folder / f"{key}.zip", device=self.config.device)
                       for key in state["models"]}
        for key, model in self.models.items():
            if (folder / f"{key}{REPLAY_SUFFIX}").is_file():
                model.load_replay_buffer(folder / f"{key}{REPLAY_SUFFIX}")

    def _has_replay_buffer(self, model: BaseAlgorithm) -> bool:
        return (self.config.save_replay_buffer and isinstance(model, OffPolicyAlgorithm)
                and model.replay_buffer is not None)
