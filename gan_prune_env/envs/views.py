"""Gymnasium views of the two-agent game, for single-agent RL libraries such as SB3.

* ``SingleAgentPruneEnv``: one agent learns; the other is a pluggable peer policy.
* ``JointPruneEnv``: one policy sets both networks; the action is genG's and genD's actions
  concatenated (G first), the observation both observations concatenated, the reward the
  weighted sum of both rewards.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gan_prune_env.envs.game import AGENTS
from gan_prune_env.envs.observations import peer_of
from gan_prune_env.envs.parallel import RENDER_MODES, GANPruneParallelEnv
from gan_prune_env.envs.peers import resolve_peer


class _View(gym.Env):
    """Shared plumbing: owns a parallel env, seeds it from ``np_random`` for reproducibility."""

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}

    def __init__(self, render_mode: str | None = None, config=None, game=None, **kwargs: Any
                 ) -> None:
        self.parallel = GANPruneParallelEnv(config, render_mode=render_mode, game=game, **kwargs)
        self.render_mode = render_mode
        self._observations: dict[str, np.ndarray] = {}

    @property
    def game(self):
        return self.parallel.game

    @property
    def numeric_info(self) -> bool:
        return self.parallel.config.info_format == "numeric"

    def _reset_parallel(self, seed: int | None, options: dict | None):
        super().reset(seed=seed)
        inner_seed = int(self.np_random.integers(2**31 - 1))
        observations, infos = self.parallel._reset(inner_seed, options,
                                                   clear_cache=seed is not None)
        self._observations = observations
        return observations, infos

    def _step_parallel(self, actions: dict[str, np.ndarray]):
        observations, rewards, terminations, truncations, infos = self.parallel.step(actions)
        self._observations = observations
        done = bool(terminations["generator"])
        return observations, rewards, done, bool(truncations["generator"]), infos

    def render(self):
        return self.parallel.render()

    def close(self) -> None:
        self.parallel.close()


class SingleAgentPruneEnv(_View):
    """``agent`` learns; its peer acts through ``peer_policy`` (default: uniform ratio that
    meets the peer's budget). Spaces are the agent's spaces of ``GANPruneParallelEnv``; the
    peer's outcome is in ``info["peer"]``."""

    def __init__(self, agent: str = "generator", peer_policy: Any = None,
                 render_mode: str | None = None, config=None, game=None, **kwargs: Any) -> None:
        if agent not in AGENTS:
            raise ValueError(f"agent {agent!r} is not one of {AGENTS}")
        super().__init__(render_mode, config, game, **kwargs)
        self.agent, self.peer = agent, peer_of(agent)
        self.observation_space = self.parallel.observation_space(agent)
        self.action_space = self.parallel.action_space(agent)
        self.peer_policy = resolve_peer(peer_policy, self.game, self.peer)

    def set_peer_policy(self, policy: Any) -> None:
        """Swap the peer (e.g. the other agent's latest policy in alternating training)."""
        self.peer_policy = resolve_peer(policy, self.game, self.peer)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observations, infos = self._reset_parallel(seed, options)
        if self.numeric_info:
            return observations[self.agent], self._with_peer(infos, 0.0)
        return observations[self.agent], infos[self.agent]

    def step(self, action):
        peer_action = self.peer_policy(self._observations[self.peer])
        observations, rewards, terminated, truncated, infos = self._step_parallel(
            {self.agent: action, self.peer: peer_action})
        if self.numeric_info:
            info = self._with_peer(infos, rewards[self.peer])
        else:
            info = dict(infos[self.agent], peer={**infos[self.peer], "reward": rewards[self.peer]})
        return observations[self.agent], rewards[self.agent], terminated, truncated, info

    def _with_peer(self, infos: dict[str, dict], peer_reward: float) -> dict[str, Any]:
        """Numeric infos stay flat: the peer's keys (and reward) prefixed with ``peer_``."""
        peer = {**infos[self.peer], "reward": float(peer_reward)}
        return {**infos[self.agent], **{f"peer_{k}": v for k, v in peer.items()}}


class JointPruneEnv(_View):
    """One policy for both networks; reward ``w_G * r_G + w_D * r_D``."""

    def __init__(self, reward_weights: tuple[float, float] = (1.0, 1.0),
                 render_mode: str | None = None, config=None, game=None, **kwargs: Any) -> None:
        super().__init__(render_mode, config, game, **kwargs)
        self.reward_weights = tuple(float(w) for w in reward_weights)
        if len(self.reward_weights) != 2:
            raise ValueError(f"reward_weights needs two values (G, D), got {reward_weights}")
        obs = [self.parallel.observation_space(a) for a in AGENTS]
        self.observation_space = spaces.Box(np.concatenate([o.low for o in obs]),
                                            np.concatenate([o.high for o in obs]), dtype=np.float32)
        self._split = self.game.num_groups("generator")
        n = self._split + self.game.num_groups("discriminator")
        self.action_space = spaces.Box(-1.0, 1.0, (n,), np.float32)

    def split_action(self, action) -> dict[str, np.ndarray]:
        array = np.asarray(action)
        if array.shape != self.action_space.shape:
            raise ValueError(f"joint action has shape {array.shape}, expected "
                             f"{self.action_space.shape} (generator groups then discriminator)")
        return {"generator": array[: self._split], "discriminator": array[self._split:]}

    def _joint_obs(self) -> np.ndarray:
        return np.concatenate([self._observations[a] for a in AGENTS])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        _, infos = self._reset_parallel(seed, options)
        return self._joint_obs(), self._joint_info(infos, None)

    def step(self, action):
        _, rewards, terminated, truncated, infos = self._step_parallel(self.split_action(action))
        reward = float(self.reward_weights[0] * rewards["generator"]
                       + self.reward_weights[1] * rewards["discriminator"])
        return self._joint_obs(), reward, terminated, truncated, self._joint_info(infos, rewards)

    def _joint_info(self, infos: dict[str, dict], rewards: dict[str, float] | None
                    ) -> dict[str, Any]:
        """Both agents' infos with their rewards (none at reset): nested by agent, or flat
        with the agent's name as prefix for numeric infos (reward 0 at reset)."""
        if self.numeric_info:
            return {f"{a}_{k}": v for a in AGENTS
                    for k, v in {**infos[a], "reward": 0.0 if rewards is None
                                 else float(rewards[a])}.items()}
        if rewards is None:
            return {a: infos[a] for a in AGENTS}
        return {a: {**infos[a], "reward": rewards[a]} for a in AGENTS}
