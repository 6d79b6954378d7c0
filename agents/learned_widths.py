"""Learned widths: G's per-group widths come out of a short run of the distillation recipe
itself, with soft channel gates and the budget as a Lagrangian constraint
(``gan_prune_env.width_search``); D stays at its uniform ratio. Not a reward-driven search: it
never reads the env's reward, so it tests whether the allocation a *trained* student wants
beats the uniform one, the question no proxy reward has answered (``docs/RESULTS.md``, reward
fidelity).

The learned fractions are projected onto G's budget along their own direction
(``agents.budget.fit_to_budget``), then evaluated in the env for ``rounds`` rounds like the
uniform agent's ratios, so the run's tracker and artifacts are those of every other agent.

Measured at 10% of the default task's G (3 seeds, ``docs/RESULTS.md``, "Learned widths"): the
same allocation on every seed, and worse than uniform pruning on every seed (FID +9.4 ± 2.8,
PSNR to the teacher -0.78 dB), so no pipeline uses it by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.base import SearchTracker, run_rounds
from agents.baselines import Actions, _StateFileAgent, actions_from_lists, actions_to_lists
from agents.budget import fit_to_budget, uniform_actions
from gan_prune_env.envs import GANPruneParallelEnv
from gan_prune_env.width_search import WidthSearchConfig, search_widths


@dataclass
class LearnedWidthsConfig(WidthSearchConfig):
    """``WidthSearchConfig`` (the phase's steps, ``dual_lr``, temperature and
    ``fraction_lr_scale``, validated there) plus:

    Attributes:
        seed: seeds the joint phase's data order and the env reset.
        progress: a progress bar over the joint phase.
    """

    seed: int = 0
    progress: bool = True


class LearnedWidthsAgent(_StateFileAgent):
    """G's allocation learned by the recipe under soft gates; D uniform."""

    name = "widths"
    config_class = LearnedWidthsConfig

    def __init__(self, config: LearnedWidthsConfig | dict | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.actions: Actions | None = None
        self.fractions: list[float] | None = None

    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False) -> Actions:
        if self.actions is None:
            raise RuntimeError("LearnedWidthsAgent has no widths yet: call learn(env, ...) or "
                               "load()")
        return {a: v.copy() for a, v in self.actions.items()}

    def learn(self, env: GANPruneParallelEnv, rounds: int, tracker: SearchTracker) -> None:
        """Learn the widths once (the first call), then evaluate them for ``rounds`` rounds."""
        game, cfg = env.game, self.config
        if self.actions is None:
            result = search_widths(
                {"generator": game.generator, "discriminator": game.discriminator},
                game.spaces["generator"], game.task, budget=game.budget("generator"),
                min_keep=game.config.min_keep,
                init_fraction=game.uniform_ratio_for_budget("generator"),
                config=cfg, seed=cfg.seed, device=str(game.device),
                progress=cfg.progress)
            self.fractions = result["fractions"]
            self.actions = {
                "generator": fit_to_budget(game, "generator", np.asarray(self.fractions)),
                "discriminator": uniform_actions(game)["discriminator"]}
            if self.logger is not None:  # how the soft ratio held the budget, step by step
                for step, ratio in enumerate(result["ratios"]):
                    self.logger("agent/generator/width_search_macs_ratio", ratio, step)
        run_rounds(env, self.act, rounds, tracker, seed=cfg.seed)

    def _state(self) -> dict[str, Any]:
        return {"actions": actions_to_lists(self.actions), "fractions": self.fractions}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.actions = actions_from_lists(state["actions"])
        self.fractions = state["fractions"]
