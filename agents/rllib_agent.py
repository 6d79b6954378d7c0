"""RLlib's multi-agent PPO (new API stack) as a pruning agent: one policy for genG, one for genD.

RLlib steps its own copies of the env, built from ``env.config`` through PettingZoo's Parallel
API (``ParallelPettingZooEnv``): on the local env runner (``num_env_runners=0``, the 2-core
default) or on ``num_env_runners`` Ray actors, each preparing the task once and scoring its
own rounds in parallel. Every round any of them plays is numbered and sent to the search's
:class:`RoundLog` (a Ray actor); after each training iteration the agent records the new rounds
into the search's ``SearchTracker`` in a fixed order (by env runner, then by step), so the best
pair is chosen exactly as for every other agent. Needs the ``[rllib]`` extra.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
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
_KEYS = itertools.count()


class RoundLog:
    """The rounds the env runners played since the last :meth:`drain` (a Ray actor of no
    CPU: it only holds records)."""

    def __init__(self) -> None:
        self.rounds: list[tuple[int, int, dict, dict]] = []

    def append(self, runner: int, step: int, infos: dict, rewards: dict) -> None:
        self.rounds.append((runner, step, infos, rewards))

    def drain(self) -> list[tuple[int, int, dict, dict]]:
        rounds, self.rounds = self.rounds, []
        return rounds


class RecordingEnv(BaseParallelWrapper):
    """Sends every step, numbered, to the search's :class:`RoundLog`. The call waits for the
    log, so a sampling call of RLlib returns only once its rounds are all logged."""

    def __init__(self, env: GANPruneParallelEnv, log: Any, runner: int) -> None:
        super().__init__(env)
        self.log = log
        self.runner = runner
        self.steps = 0

    def step(self, actions):
        import ray

        observations, rewards, terminations, truncations, infos = super().step(actions)
        ray.get(self.log.append.remote(self.runner, self.steps, infos, rewards))
        self.steps += 1
        return observations, rewards, terminations, truncations, infos


def make_rllib_env(env_config: dict[str, Any]):
    """The env creator RLlib calls on each env runner (``env_config`` is RLlib's
    ``EnvContext``; its ``worker_index`` is 0 on the local runner): our parallel env, logging
    its rounds, in RLlib's PettingZoo wrapper."""
    import ray
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    settings = dict(env_config)
    log = ray.get_actor(settings.pop("round_log"))
    runner = int(getattr(env_config, "worker_index", 0) or 0)
    return ParallelPettingZooEnv(RecordingEnv(GANPruneParallelEnv(from_dict(
        EnvConfig, settings, where="RLlib env_config")), log, runner))


@dataclass
class RLlibConfig:
    """Attributes:
        seed: RLlib's ``debugging(seed=...)``.
        lr: Adam learning rate of both policies.
        train_batch_size: env steps per training iteration (both agents act in each).
        minibatch_size, num_epochs: PPO's SGD over each batch.
        gamma: discount; an episode is ``rounds`` steps.
        num_env_runners: Ray actors that step copies of the env in parallel, one CPU each
            (RLlib's env runners); 0 steps it in this process. They pay where CPUs are free
            (2 Ray actors scored a random search 1.49x faster than one process on 2 idle
            cores, ``docs/SCALING.md``; here the learner shares them). Runners sample at once,
            so the rounds a seed plays depend on this count.
    """

    seed: int = 0
    lr: float = 3e-4
    train_batch_size: int = 64
    minibatch_size: int = 32
    num_epochs: int = 4
    gamma: float = 0.99
    num_env_runners: int = 0

    def __post_init__(self) -> None:
        if self.num_env_runners < 0:
            raise ValueError(f"num_env_runners must be >= 0, got {self.num_env_runners}")
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
        self._log = None
        self.rounds_by_runner: collections.Counter[int] = collections.Counter()
        """Rounds recorded from each env runner (0: this process): how the search spread."""

    # -- building ------------------------------------------------------------------------------
    def _build(self, env_config: dict[str, Any]) -> None:
        import ray
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.tune.registry import register_env

        if self.algo is not None and env_config == self._env_config:
            return
        self.close()
        cfg = self.config
        if not ray.is_initialized():
            ray.init(num_cpus=max(1, cfg.num_env_runners), include_dashboard=False,
                     log_to_driver=False)
        cpus = ray.cluster_resources().get("CPU", 0)
        if cfg.num_env_runners > cpus:
            raise ValueError(f"num_env_runners={cfg.num_env_runners} needs as many CPUs, and the "
                             f"running Ray has {cpus:g}: lower num_env_runners or start Ray "
                             "with more CPUs")
        register_env(ENV_NAME, make_rllib_env)
        log_name = f"gan_prune_round_log_{os.getpid()}_{next(_KEYS)}"  # unique per build
        self._log = ray.remote(num_cpus=0)(RoundLog).options(name=log_name).remote()
        algo_config = (
            PPOConfig()
            .environment(ENV_NAME, env_config={**env_config, "round_log": log_name})
            .multi_agent(policies=set(AGENTS),
                         policy_mapping_fn=lambda agent_id, *args, **kwargs: agent_id)
            .env_runners(num_env_runners=cfg.num_env_runners, num_cpus_per_env_runner=1)
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
        """Train RLlib PPO on its own copies of ``env.config`` until ``rounds`` rounds have been
        recorded (RLlib collects whole batches: the rounds after the last recorded one are
        played for its update but not recorded)."""
        import ray

        self._build(to_dict(env.config))
        target = len(tracker.history) + rounds
        while len(tracker.history) < target:
            self.algo.train()
            played = sorted(ray.get(self._log.drain.remote()), key=lambda r: r[:2])
            if not played:
                raise RuntimeError("an RLlib training iteration played no round")
            for runner, _, infos, rewards in played[: target - len(tracker.history)]:
                tracker.record(infos, rewards)
                self.rounds_by_runner[runner] += 1

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
        if self._log is not None:
            import ray

            ray.kill(self._log)
            self._log = None


__all__ = ["RLlibConfig", "RLlibPPOAgent", "RecordingEnv", "RoundLog", "make_rllib_env"]
