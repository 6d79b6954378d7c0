"""Peer policies: who plays the other agent in a single-agent view.

A peer policy is any picklable callable ``observation -> action`` (so it can be sent into a
``SubprocVecEnv`` worker with ``env_method("set_peer_policy", policy)``), or any object with an
SB3-style ``predict(observation, deterministic=True)``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from gan_prune_env.envs.actions import action_to_ratios, ratios_to_action
from gan_prune_env.envs.game import PruningGame


class PeerPolicy(Protocol):
    def __call__(self, observation: np.ndarray) -> np.ndarray: ...


class ConstantPeer:
    """Always the same action (e.g. a searched architecture replayed)."""

    def __init__(self, action: np.ndarray) -> None:
        self.action = np.asarray(action, dtype=np.float32)

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return self.action.copy()


class PredictPeer:
    """Adapter for SB3 models and policies (anything with ``predict``)."""

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        action, _ = self.model.predict(observation, deterministic=self.deterministic)
        return np.asarray(action, dtype=np.float32)


def uniform_budget_peer(game: PruningGame, agent: str) -> ConstantPeer:
    """Default heuristic: the largest uniform keep ratio that meets the agent's own budget."""
    ratio = game.uniform_ratio_for_budget(agent)
    min_keep = game.config.min_keep
    action = ratios_to_action(np.full(game.num_groups(agent), ratio), min_keep)
    # The bisection's ratio sits on a channel-rounding boundary; the float32 action can land a
    # hair above it and keep one channel too many. Step down until the budget is met again.
    space, budget = game.spaces[agent], game.budget(agent)
    while (space.macs_ratio(space.counts_for_ratios(action_to_ratios(action, min_keep))) > budget
           and action[0] > -1):
        action = np.nextafter(action, np.float32(-1))
    return ConstantPeer(action)


def resolve_peer(spec: Any, game: PruningGame, agent: str) -> PeerPolicy:
    """``None`` -> uniform-within-budget heuristic; a float -> that uniform keep ratio;
    an object with ``predict`` -> ``PredictPeer``; a callable -> itself."""
    if spec is None or spec == "uniform_budget":
        return uniform_budget_peer(game, agent)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not 0 < spec <= 1:
            raise ValueError(f"a numeric peer policy is a uniform keep ratio in (0, 1], got {spec}")
        return ConstantPeer(ratios_to_action(np.full(game.num_groups(agent), float(spec)),
                                             game.config.min_keep))
    if hasattr(spec, "predict"):
        return PredictPeer(spec)
    if callable(spec):
        return spec
    raise TypeError(f"peer policy must be None, a keep ratio, a callable or have predict(); "
                    f"got {type(spec).__name__}")
