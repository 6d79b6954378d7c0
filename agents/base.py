"""The interface every pruning agent implements, and the search bookkeeping they share.

An agent plays both roles of the two-agent game (genG and genD) on a
``GANPruneParallelEnv``: ``act`` maps both observations to both actions, ``learn`` improves
from the env's rewards for a number of rounds, ``save``/``load`` persist it. Whatever the
algorithm, a ``SearchTracker`` records every evaluated architecture pair and keeps the best one
(METHOD 9: best G reward among pairs within both budgets).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from gan_prune_env.config import from_dict, to_dict
from gan_prune_env.envs import AGENTS, GANPruneParallelEnv

C = TypeVar("C")


@dataclass
class Candidate:
    """One evaluated architecture pair."""

    round: int
    kept_channels: dict[str, list[int]]
    keep_ratios: dict[str, list[float]]
    compute_ratio: dict[str, float]
    rewards: dict[str, float]
    loss_terms: dict[str, dict[str, float]]
    within_budget: bool
    error: str = ""
    """Why the round's evaluation failed (the env's ``info["error"]``); such a round is kept in
    the history (it was spent) but is never the best."""

    @classmethod
    def from_infos(cls, index: int, infos: dict[str, dict], rewards: dict[str, float]
                   ) -> Candidate:
        error = infos[AGENTS[0]].get("error", "")
        if error:
            return cls(round=index, kept_channels={a: [] for a in AGENTS},
                       keep_ratios={a: [] for a in AGENTS},
                       compute_ratio={a: float("nan") for a in AGENTS},
                       rewards={a: float(rewards[a]) for a in AGENTS},
                       loss_terms={a: {} for a in AGENTS}, within_budget=False, error=error)
        return cls(
            round=index,
            kept_channels={a: list(infos[a]["kept_channels"]) for a in AGENTS},
            keep_ratios={a: [float(r) for r in infos[a]["keep_ratios"]] for a in AGENTS},
            compute_ratio={a: float(infos[a]["compute_ratio"]) for a in AGENTS},
            rewards={a: float(rewards[a]) for a in AGENTS},
            loss_terms={a: dict(infos[a]["loss_terms"]) for a in AGENTS},
            within_budget=all(bool(infos[a]["within_budget"]) for a in AGENTS),
        )


@dataclass
class SearchTracker:
    """Records rounds; ``best`` is the highest-G-reward pair within both budgets (else the pair
    with the smallest G compute ratio, so a search that never met them still returns something)."""

    history: list[Candidate] = field(default_factory=list)
    listeners: list[Callable[[Candidate], None]] = field(default_factory=list)

    def record(self, infos: dict[str, dict], rewards: dict[str, float]) -> Candidate:
        candidate = Candidate.from_infos(len(self.history), infos, rewards)
        self.history.append(candidate)
        for listener in self.listeners:
            listener(candidate)
        return candidate

    @property
    def best(self) -> Candidate | None:
        evaluated = [c for c in self.history if not c.error]
        feasible = [c for c in evaluated if c.within_budget]
        if feasible:
            return max(feasible, key=lambda c: c.rewards["generator"])
        if not evaluated:
            return None
        return min(evaluated, key=lambda c: c.compute_ratio["generator"])

    def state_dict(self) -> dict[str, Any]:
        return {"history": [asdict(c) for c in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [Candidate(**c) for c in state["history"]]

    def save_json(self, path: str | Path) -> None:
        best = self.best
        Path(path).write_text(json.dumps(asdict(best) if best else None, indent=2))


class PruningAgent(abc.ABC):
    """genG and genD together. Subclasses set ``name`` and implement the four abstract methods;
    the runner also calls :meth:`bind` before a search, sets :attr:`logger`, and calls
    :meth:`close` at the end, whose defaults do nothing."""

    name: str = "agent"
    logger: Callable[[str, float, int], None] | None = None
    """Where an agent reports its own scalars (``name, value, step``), e.g. to TensorBoard."""

    def bind(self, env: GANPruneParallelEnv) -> None:
        """Prepare for ``env`` (build networks sized to its channel groups) before acting."""

    def close(self) -> None:
        """Release what the agent holds (vectorised envs, worker processes)."""

    @abc.abstractmethod
    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False
            ) -> dict[str, np.ndarray]:
        """Actions in ``Box(-1, 1)`` for both agents."""

    @abc.abstractmethod
    def learn(self, env: GANPruneParallelEnv, rounds: int, tracker: SearchTracker) -> None:
        """Interact with ``env`` for ``rounds`` rounds (env steps), recording into ``tracker``."""

    @abc.abstractmethod
    def save(self, path: str | Path) -> None:
        """Persist everything needed to continue learning (atomically)."""

    @abc.abstractmethod
    def load(self, path: str | Path) -> None:
        """Restore what ``save`` wrote."""


def make_config(cls: type[C], config: C | dict | None, overrides: dict[str, Any], where: str
                ) -> C:
    """``cls`` from an instance, a mapping or None, plus keyword overrides, checked strictly, so
    ``Agent(cfg)``, ``Agent({"seed": 1})`` and ``Agent(seed=1)`` all work and typos fail."""
    base = to_dict(config) if isinstance(config, cls) else dict(config or {})
    return from_dict(cls, {**base, **overrides}, where=where)


def load_agent_state(path: str | Path) -> dict[str, Any]:
    """Read an agent state written with ``save_checkpoint``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"agent state not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated or not a torch file
        raise ValueError(f"{path}: not a readable agent state: {err}") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not an agent state (expected a mapping)")
    return state


def run_rounds(env: GANPruneParallelEnv, policy: Callable[[dict[str, np.ndarray]], dict],
               rounds: int, tracker: SearchTracker, seed: int | None = None,
               on_step: Callable[[dict, dict, dict, dict], None] | None = None) -> None:
    """Drive ``env`` with ``policy`` for ``rounds`` steps, resetting at episode ends."""
    observations, _ = env.reset(seed=seed)
    for _ in range(rounds):
        actions = policy(observations)
        next_obs, rewards, terminations, _, infos = env.step(actions)
        tracker.record(infos, rewards)
        if on_step is not None:
            on_step(observations, actions, rewards, infos)
        observations = next_obs
        if all(terminations.values()):
            observations, _ = env.reset()
