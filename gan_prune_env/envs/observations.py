"""Observation layout of one agent (flat float32 vector with finite bounds).

=============================  ============================  ==========
block                          size                          range
=============================  ============================  ==========
static group features          n_groups * 12                 [0, 1]
own current keep ratios        n_groups                      [0, 1]
own budget, compute, slack     3                             [0,1],[0,1],[-1,1]
round index / rounds           1                             [0, 1]
own last loss terms            4                             [0, 10]
peer last keep ratios          n_peer_groups                 [0, 1]
peer last loss terms           4                             [0, 10]
peer compute ratio, budget     2                             [0, 1]
=============================  ============================  ==========

Loss terms are divided by the unpruned pair's reference values and clipped to [0, 10]:
G: (L_G, adversarial, KDE KL, L1 anchor); D: (L_D, |L_D - ref| / ref, real term, fake term).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from gan_prune_env.envs.game import PruningGame

LOSS_CLIP = 10.0
LOSS_KEYS = {
    "generator": ("g_loss", "g_adv", "g_kde", "g_rec"),
    "discriminator": ("d_loss", "d_gap", "d_real", "d_fake"),
}


def peer_of(agent: str) -> str:
    return "discriminator" if agent == "generator" else "generator"


def normalised_losses(agent: str, terms: dict[str, float], reference: dict[str, float]
                      ) -> np.ndarray:
    """Loss terms relative to the reference; absolute for the terms that are 0 at reference."""
    values = dict(terms)
    values["d_gap"] = abs(terms["d_loss"] - reference["d_loss"])
    out = []
    for key in LOSS_KEYS[agent]:
        ref = reference.get(key, 0.0) if key != "d_gap" else reference["d_loss"]
        out.append(values[key] / ref if ref > 1e-8 else values[key])
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, LOSS_CLIP)


def observation_layout(n_groups: int, n_peer_groups: int, n_features: int) -> dict[str, slice]:
    """Named slices of the flat observation, so agents can read it back into its parts."""
    sizes = [("group_features", n_groups * n_features), ("ratios", n_groups), ("own_global", 4),
             ("own_losses", 4), ("peer_ratios", n_peer_groups), ("peer_losses", 4),
             ("peer_global", 2)]
    layout, start = {}, 0
    for name, size in sizes:
        layout[name] = slice(start, start + size)
        start += size
    return layout


class ObservationBuilder:
    """Builds one agent's observation vector from the game's state."""

    def __init__(self, game: PruningGame, agent: str) -> None:
        self.game, self.agent, self.peer = game, agent, peer_of(agent)
        self.static = game.spaces[agent].group_features().reshape(-1)
        n, n_peer = game.num_groups(agent), game.num_groups(self.peer)
        low = np.concatenate([
            np.zeros(self.static.size + n), [0.0, 0.0, -1.0, 0.0], np.zeros(4),
            np.zeros(n_peer), np.zeros(4), np.zeros(2),
        ]).astype(np.float32)
        high = np.concatenate([
            np.ones(self.static.size + n), [1.0, 1.0, 1.0, 1.0], np.full(4, LOSS_CLIP),
            np.ones(n_peer), np.full(4, LOSS_CLIP), np.ones(2),
        ]).astype(np.float32)
        self.space = spaces.Box(low, high, dtype=np.float32)
        self.layout = observation_layout(n, n_peer, self.static.size // max(n, 1))

    def build(self, ratios: dict[str, np.ndarray], compute: dict[str, float],
              terms: dict[str, float], round_index: int) -> np.ndarray:
        game, agent, peer = self.game, self.agent, self.peer
        budget = game.budget(agent)
        reference = game.reference_terms
        obs = np.concatenate([
            self.static,
            ratios[agent],
            [budget, min(compute[agent], 1.0), np.clip(budget - compute[agent], -1.0, 1.0),
             round_index / game.config.rounds],
            normalised_losses(agent, terms, reference),
            ratios[peer],
            normalised_losses(peer, terms, reference),
            [min(compute[peer], 1.0), game.budget(peer)],
        ]).astype(np.float32)
        return np.clip(obs, self.space.low, self.space.high)
