"""Budget arithmetic shared by the agents: where a sampled architecture lands in compute, and
how to move it onto a network's budget along a direction that keeps its per-group shape.

Projection onto the budget is the AMC-style way to meet a hard resource constraint: the search
decides *where* channels go, the projection decides *how many* in total, so no sample is spent
on an architecture the env would penalise for exceeding its budget, and none leaves budget
unused.
"""

from __future__ import annotations

import numpy as np

from gan_prune_env.envs import AGENTS, PruningGame, action_to_ratios, ratios_to_action

Actions = dict[str, np.ndarray]


def achieved_compute(game: PruningGame, agent: str, action: np.ndarray) -> float:
    """Kept-MACs ratio the env will measure for ``action`` (same float32 action -> ratio ->
    count path as ``GANPruneParallelEnv.step``, so rounding cannot surprise us)."""
    ratios = action_to_ratios(np.asarray(action, dtype=np.float64), game.config.min_keep)
    return game.spaces[agent].macs_ratio(game.ratio_counts(agent, ratios))


def fit_to_budget(game: PruningGame, agent: str, ratios: np.ndarray, steps: int = 30
                  ) -> np.ndarray:
    """Action for ``clip(s * ratios, min_keep, 1)`` with the largest multiplier ``s`` whose
    compute is within the agent's budget.

    Compute is non-decreasing in ``s``, and ``s = 0`` (every group at ``min_keep``) is within
    budget (the game refuses impossible budgets), so bisection always ends feasible. The upper
    end ``1 / min(ratios)`` keeps every channel, so ``s`` may grow small samples too.
    """
    min_keep, budget = game.config.min_keep, game.budget(agent)
    ratios = np.asarray(ratios, dtype=np.float64)

    def action_at(scale: float) -> np.ndarray:
        return ratios_to_action(np.clip(scale * ratios, min_keep, 1.0), min_keep)

    lo, hi = 0.0, 1.0 / max(float(ratios.min()), 1e-12)
    if achieved_compute(game, agent, action_at(hi)) <= budget:
        return action_at(hi)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if achieved_compute(game, agent, action_at(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    return action_at(lo)


def uniform_actions(game: PruningGame) -> Actions:
    """Largest uniform keep ratio within budget, per network, as env actions.

    ``uniform_ratio_for_budget`` bisects in ratio space to 2^-40, far finer than the float32
    action's precision, so its ratio can sit just below a channel-rounding step that the
    action's round trip crosses; ``fit_to_budget`` re-snaps it through the action path.
    """
    return {a: fit_to_budget(game, a, np.full(game.num_groups(a), game.uniform_ratio_for_budget(a)))
            for a in AGENTS}
