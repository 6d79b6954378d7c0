"""RLlib's multi-agent PPO (new API stack) as a pruning agent: one policy for genG, one for genD.

RLlib steps its own copy of the env, built from ``env.config`` through PettingZoo's Parallel API
(``ParallelPettingZooEnv``), on the local env runner (``num_env_runners=0``: the 2-core default;
the search's evaluations stay in this process). Every round it plays is recorded into the
search's ``SearchTracker`` by a thin wrapper, so the best pair is chosen exactly as for every
other agent. Needs the ``[rllib]`` extra.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pettingzoo.utils.wrappers import BaseParallelWrapper

from agents.base import PruningAgent, SearchTracker, make_config
from gan_prune_env.atomic import complete_folder, write_folder_atomically
from gan_prune_env.config import from_dict, to_dict
from gan_prune_env.envs import AGENTS, EnvConfig, GANPruneParallelEnv

ENV_NAME = "gan_prune_parallel"
_TRACKERS: dict[str, tuple[SearchTracker, int]] = {}
"""Where the recording wrapper of a search writes: (tracker, rounds to record), by search key.
The env runner is local, so the wrapper and the agent share this process."""
_KEYS = itertools.count()


class RecordingEnv(BaseParallelWrapper):
    """Records every step (up to the search's round count) into the search's tracker."""

    def __init__(self, env: GANPruneParallelEnv, key: str) -> None:
        super().__init__(env)
        self.key = key

    def step(self, actions):
        observations, rewards, terminations, truncations, infos = super().step(actions)
        tracker, rounds = _TRACKERS.get(self.key, (None, 0))
        if tracker is not None and len(tracker.history) < rounds:
            tracker.record(infos, rewards)
        return observations, rewards, terminations, truncations, infos


def make_rllib_env(env_config: dict[str, Any]):
    """The env creator RLlib calls: our parallel env, recorded, in RLlib's PettingZoo wrapper."""
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    settings = dict(env_config)
    key = settings.pop("search_key")
    return ParallelPettingZooEnv(RecordingEnv(GANPruneParallelEnv(from_dict(
        EnvConfig, settings, where="RLlib env_config")), key))


@dataclass
class RLlibConfig:
    """Attributes:
        seed: RLlib's ``debugging(seed=...)``.
        lr: Adam learning rate of both policies.
        train_batch_size: env steps per training iteration (both agents act in each).
        minibatch_size, num_epochs: PPO's SGD over each batch.
        gamma: discount; an episode is ``rounds`` steps.
    """

    seed: int = 0
    lr: float = 3e-4
    train_batch_size: int = 64
    minibatch_size: int = 32
    num_epochs: int = 4
    gamma: float = 0.99

    def __post_init__(self) -> None:
        if min(self.train_batch_size, self.minibatch_size, self.num_epochs) < 1:
            raise ValueError("train_batch_size, minibatch_size and num_epochs must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


class RLlibPPOAgent(PruningAgent):
    """RLlib PPO with a policy per agent (genG and genD have different spaces)."""

    name = "rllib_ppo"

    def __init__(self, config: RLlibConfig | dict | None = None, **kwargs: Any) -> None:
        self.config = make_config(RLlibConfig, config, kwargs, "RLlibPPOAgent config")
        self.algo = None
        self._env_config: dict[str, Any] | None = None
        self._restore_from: Path | None = None
        self._key = f"search-{next(_KEYS)}"

    # -- building ------------------------------------------------------------------------------
    def _build(self, env_config: dict[str, Any]) -> None:
        import ray
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.tune.registry import register_env

        if self.algo is not None and env_config == self._env_config:
            return
        self.close()
        if not ray.is_initialized():
            ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        register_env(ENV_NAME, make_rllib_env)
        cfg = self.config
        algo_config = (
            PPOConfig()
            .environment(ENV_NAME, env_config={**env_config, "search_key": self._key})
            .multi_agent(policies=set(AGENTS),
                         policy_mapping_fn=lambda agent_id, *args, **kwargs: agent_id)
            .env_runners(num_env_runners=0)
            .training(lr=cfg.lr, gamma=cfg.gamma, train_batch_size_per_learner=cfg.train_batch_size,
                      minibatch_size=cfg.minibatch_size, num_epochs=cfg.num_epochs)
            .debugging(seed=cfg.seed))
        self.algo = algo_config.build_algo()
        self._env_config = env_config
        if self._restore_from is not None:
            self.algo.restore_from_path(str(self._restore_from / "algorithm"))
            self._restore_from = None

    # -- acting and learning ---------------------------------------------------------------------
    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False
            ) -> dict[str, np.ndarray]:
        if self.algo is None:
            raise RuntimeError("RLlibPPOAgent has no policies yet: call learn(env, ...) first")
        actions = {}
        for agent in AGENTS:
            module = self.algo.get_module(agent)
            obs = torch.as_tensor(np.asarray(observations[agent]), dtype=torch.float32)[None]
            with torch.no_grad():
                inputs = module.forward_inference({"obs": obs})["action_dist_inputs"]
            dist = module.get_inference_action_dist_cls().from_logits(inputs)
            action = (dist.to_deterministic() if deterministic else dist).sample()
            actions[agent] = np.clip(action[0].numpy(), -1.0, 1.0).astype(np.float32)
        return actions

    def learn(self, env: GANPruneParallelEnv, rounds: int, tracker: SearchTracker) -> None:
        """Train RLlib PPO on its own copy of ``env.config`` until ``rounds`` rounds have been
        recorded (RLlib collects whole batches: the rounds after the last recorded one are
        played for its update but not recorded)."""
        self._build(to_dict(env.config))
        target = len(tracker.history) + rounds
        _TRACKERS[self._key] = (tracker, target)
        try:
            while len(tracker.history) < target:
                before = len(tracker.history)
                self.algo.train()
                if len(tracker.history) == before:
                    raise RuntimeError("an RLlib training iteration played no round")
        finally:
            _TRACKERS.pop(self._key, None)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """The RLlib checkpoint and ``state.json`` in a folder swapped in atomically."""
        if self.algo is None:
            raise RuntimeError("nothing to save: the agent has not learned yet")
        write_folder_atomically(path, self._write_save)

    def _write_save(self, folder: Path) -> None:
        self.algo.save_to_path(str((folder / "algorithm").resolve()))
        state = {"agent": self.name, "config": to_dict(self.config),
                 "env_config": self._env_config}
        (folder / "state.json").write_text(json.dumps(state, indent=2))

    def load(self, path: str | Path) -> None:
        """Restores on the next ``learn`` (RLlib needs the env to rebuild the algorithm)."""
        folder = complete_folder(path, "state.json", "RLlibPPOAgent save")
        state = json.loads((folder / "state.json").read_text())
        self.close()
        self.config = from_dict(RLlibConfig, state["config"], where=str(folder / "state.json"))
        self._restore_from = folder.resolve()
        self._build(state["env_config"])

    def close(self) -> None:
        if self.algo is not None:
            self.algo.stop()
            self.algo = None
            self._env_config = None


__all__ = ["RLlibConfig", "RLlibPPOAgent", "RecordingEnv", "make_rllib_env"]
