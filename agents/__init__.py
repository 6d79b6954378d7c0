"""Search agents for the pruning game: baselines, SB3 algorithms and (added by the lead) MGGC.

``AGENT_CLASSES`` maps a CLI / config name to a factory ``(**config) -> PruningAgent``; adding an
agent is one entry below.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from agents.base import Candidate, PruningAgent, SearchTracker, run_rounds
from agents.baselines import RandomSearchAgent, UniformAgent
from agents.sb3_agent import SB3Agent

AGENT_CLASSES: dict[str, Callable[..., PruningAgent]] = {
    "uniform": UniformAgent,
    "random": RandomSearchAgent,
    "ppo": functools.partial(SB3Agent, algo="ppo"),
    "sac": functools.partial(SB3Agent, algo="sac"),
    # -- more agents: one line each, e.g. "mggc": MGGCAgent (import it above) --
}

__all__ = [
    "AGENT_CLASSES", "Candidate", "PruningAgent", "RandomSearchAgent", "SB3Agent",
    "SearchTracker", "UniformAgent", "run_rounds",
]
