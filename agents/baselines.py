"""Two non-learning baselines every search must beat.

* ``UniformAgent``: every channel group of G (resp. D) at one keep ratio, the largest whose
  kept-MACs ratio meets that network's budget. This is the "prune everything equally" answer
  and the default peer of the single-agent views.
* ``RandomSearchAgent``: samples per-group keep ratios, then scales each network's sample by
  one global multiplier so that it spends (almost) exactly its budget. Rescaling matters: raw
  uniform samples in ``[min_keep, 1]`` keep ~half the MACs and would almost never meet a 25 %
  budget, so an unscaled random search mostly measures the compute penalty.

Both are deterministic under their seed and persist as one small torch file of plain data.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import (
    Candidate, PruningAgent, SearchTracker, load_agent_state, make_config, run_rounds,
)
from agents.budget import fit_to_budget, uniform_actions
from gan_prune_env.checkpoint import save_checkpoint
from gan_prune_env.config import from_dict, to_dict
from gan_prune_env.envs import (
    AGENTS, GANPruneParallelEnv, PruningGame, ratios_to_action,
)

Actions = dict[str, np.ndarray]


# -- persistence -----------------------------------------------------------------------------------
def actions_to_lists(actions: Actions | None) -> dict[str, list[float]] | None:
    return None if actions is None else {a: np.asarray(v).tolist() for a, v in actions.items()}


def actions_from_lists(data: dict[str, list[float]] | None) -> Actions | None:
    return None if data is None else {a: np.asarray(v, dtype=np.float32) for a, v in data.items()}


def candidate_actions(candidate: Candidate, min_keep: float) -> Actions:
    """Env actions that reproduce a recorded pair (its realised keep ratios map back to the
    same channel counts)."""
    return {a: ratios_to_action(np.asarray(candidate.keep_ratios[a]), min_keep) for a in AGENTS}


# -- agents ----------------------------------------------------------------------------------------
class _StateFileAgent(PruningAgent):
    """Shared ``save``/``load``: the config plus ``_state()`` in one small torch file, written
    atomically by ``save_checkpoint`` and read back with ``weights_only=True``."""

    config_class: type

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        self.config = make_config(self.config_class, config, kwargs, f"{self.name} agent config")

    def save(self, path: str | Path) -> None:
        save_checkpoint(path, {"agent": self.name, "config": to_dict(self.config),
                               "state": self._state()})

    def load(self, path: str | Path) -> None:
        data = load_agent_state(path)
        if data.get("agent") != self.name:
            raise ValueError(f"{path} holds a {data.get('agent')!r} agent, not {self.name!r}")
        self.config = from_dict(self.config_class, data["config"], where=str(path))
        self._load_state(data["state"])

    @abc.abstractmethod
    def _state(self) -> dict[str, Any]:
        """Learned state as plain Python containers (no pickled objects)."""

    @abc.abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``_state``."""


@dataclass
class UniformConfig:
    """Attributes:
        seed: seed of the env reset (only matters when ``inner_steps`` > 0).
    """

    seed: int = 0


class UniformAgent(_StateFileAgent):
    """Every group of a network at the largest uniform keep ratio that meets its budget."""

    name = "uniform"
    config_class = UniformConfig

    def __init__(self, config: UniformConfig | dict | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.actions: Actions | None = None

    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False) -> Actions:
        if self.actions is None:
            raise RuntimeError("UniformAgent has no ratios yet: call learn(env, ...) or load()")
        return {a: v.copy() for a, v in self.actions.items()}

    def learn(self, env: GANPruneParallelEnv, rounds: int, tracker: SearchTracker) -> None:
        """Nothing to learn: compute the ratios once, then evaluate them for ``rounds`` rounds
        (repeats differ only when the env adapts weights between rounds)."""
        self.actions = uniform_actions(env.game)
        run_rounds(env, self.act, rounds, tracker, seed=self.config.seed)

    def _state(self) -> dict[str, Any]:
        return {"actions": actions_to_lists(self.actions)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.actions = actions_from_lists(state["actions"])


@dataclass
class RandomSearchConfig:
    """Attributes:
        seed: seeds the architecture sampler and the env reset.
        low, high: per-group keep ratios are drawn uniformly from ``[low, high]`` before
            rescaling; ``low=None`` means the env's ``min_keep``.
        fit_budget: rescale each sample onto its network's budget (see module docstring).
        bisection_steps: iterations of the multiplier search.
        workers: Ray actors that score the samples in parallel, each with its own env (frozen
            weights only; extra ``[rllib]``); None scores them in this process. The samples
            do not depend on the scores, so the search records exactly what the serial one
            records.
    """

    seed: int = 0
    low: float | None = None
    high: float = 1.0
    fit_budget: bool = True
    bisection_steps: int = 30
    workers: int | None = None

    def __post_init__(self) -> None:
        low = 0.0 if self.low is None else self.low
        if not 0 <= low < self.high <= 1:
            raise ValueError(f"need 0 < low < high <= 1, got low={self.low}, high={self.high}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 (or None: this process), got "
                             f"{self.workers}")


class RandomSearchAgent(_StateFileAgent):
    """Samples architecture pairs; ``act(deterministic=True)`` replays the best one found."""

    name = "random"
    config_class = RandomSearchConfig

    def __init__(self, config: RandomSearchConfig | dict | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.rng = np.random.default_rng(self.config.seed)
        self.best: Candidate | None = None
        self.best_actions: Actions | None = None
        self._game: PruningGame | None = None
        self._scorer = None  # agents.parallel.ParallelScorer when workers is set

    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False) -> Actions:
        if deterministic and self.best_actions is not None:
            return {a: v.copy() for a, v in self.best_actions.items()}
        if self._game is None:
            raise RuntimeError("RandomSearchAgent samples against an env: call learn(env, ...)")
        return {a: self._sample(self._game, a) for a in AGENTS}

    def learn(self, env: GANPruneParallelEnv, rounds: int, tracker: SearchTracker) -> None:
        self._game = env.game
        start = len(tracker.history)
        if self.config.workers is not None:
            samples = [self.act({}) for _ in range(rounds)]
            self._parallel_scorer(env).score(samples, tracker)
        else:
            run_rounds(env, self.act, rounds, tracker, seed=self.config.seed)
        best = SearchTracker(history=tracker.history[start:] + ([self.best] if self.best else []))
        self.best = best.best
        self.best_actions = (candidate_actions(self.best, env.config.min_keep)
                             if self.best else None)

    def _parallel_scorer(self, env: GANPruneParallelEnv):
        """The Ray actors of ``env``'s config, started on first use and kept until ``close``."""
        from agents.parallel import ParallelScorer

        if self._scorer is not None and self._scorer.env_config != to_dict(env.config):
            self.close()
        if self._scorer is None:
            self._scorer = ParallelScorer(env.config, self.config.workers)
        return self._scorer

    def close(self) -> None:
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None

    def _sample(self, game: PruningGame, agent: str) -> np.ndarray:
        low = game.config.min_keep if self.config.low is None else self.config.low
        ratios = self.rng.uniform(low, self.config.high, game.num_groups(agent))
        if self.config.fit_budget:
            return fit_to_budget(game, agent, ratios, self.config.bisection_steps)
        return ratios_to_action(ratios, game.config.min_keep)

    def _state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state,
                "best": to_dict(self.best) if self.best else None,
                "best_actions": actions_to_lists(self.best_actions)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.best = Candidate(**state["best"]) if state["best"] else None
        self.best_actions = actions_from_lists(state["best_actions"])
