"""Search agents for the pruning game: baselines, SB3 algorithms and MGGC.

``AGENT_CLASSES`` maps a CLI / config name to a factory ``(config dict or dataclass, **options)
-> PruningAgent``. Registering an agent is one entry in it (plus the import of its class).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from agents.base import Candidate, PruningAgent, SearchTracker, run_rounds
from agents.baselines import RandomSearchAgent, UniformAgent
from agents.learned_widths import LearnedWidthsAgent
from agents.mggc import MGGCAgent
from agents.sb3_agent import SB3Agent



def _rllib_ppo(*args: Any, **kwargs: Any) -> PruningAgent:
    """RLlib PPO, imported on use: the ``[rllib]`` extra is optional."""
    try:
        from agents.rllib_agent import RLlibPPOAgent
    except ImportError as err:
        raise ImportError(f"agent 'rllib_ppo' needs RLlib: pip install -e '.[rllib]' ({err})"
                          ) from err
    return RLlibPPOAgent(*args, **kwargs)


AGENT_CLASSES: dict[str, Callable[..., PruningAgent]] = {
    "uniform": UniformAgent,
    "random": RandomSearchAgent,
    "ppo": functools.partial(SB3Agent, algo="ppo"),
    "sac": functools.partial(SB3Agent, algo="sac"),
    "tqc": functools.partial(SB3Agent, algo="tqc"),
    "mggc": MGGCAgent,
    "widths": LearnedWidthsAgent,
    "rllib_ppo": _rllib_ppo,
}

__all__ = [
    "AGENT_CLASSES", "Candidate", "LearnedWidthsAgent", "MGGCAgent", "PruningAgent",
    "RandomSearchAgent", "SB3Agent", "SearchTracker", "UniformAgent", "run_rounds",
]
