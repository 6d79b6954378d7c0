"""Scoring architecture pairs on Ray actors, each holding its own env.

A search whose next sample does not depend on the scores so far (random search, a fixed list
of candidates, a benchmark's architectures) can score its samples anywhere: with frozen weights
a pair's score depends on the pair alone. ``ParallelScorer`` sends chunks of samples to
``workers`` Ray actors (one env each, one torch thread each) and records the results in the
samples' order, so the tracker holds exactly what a serial search records. Needs the
``[rllib]`` extra (Ray).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import SearchTracker
from gan_prune_env.config import to_dict
from gan_prune_env.envs import EnvConfig
from gan_prune_env.envs.parallel import check_shareable

Actions = dict[str, np.ndarray]


class EnvScorer:
    """One env; ``score`` plays each pair as a one-round step of a fresh episode."""

    def __init__(self, env_config: dict[str, Any], threads: int = 1) -> None:
        import torch

        from gan_prune_env.config import from_dict
        from gan_prune_env.envs import GANPruneParallelEnv

        torch.set_num_threads(threads)
        self.env = GANPruneParallelEnv(from_dict(EnvConfig, env_config, where="EnvScorer"))

    def score(self, samples: list[Actions]) -> list[tuple[dict[str, dict], dict[str, float]]]:
        results = []
        for actions in samples:
            self.env.reset()
            _, rewards, _, _, infos = self.env.step(actions)
            results.append((infos, rewards))
        return results


class ParallelScorer:
    """``workers`` Ray actors, each with an env of ``env_config``, kept until :meth:`close` so
    that a search called in chunks (the pipeline checkpoints every ``save_freq`` rounds) pays
    their start-up once."""

    def __init__(self, env_config: EnvConfig, workers: int) -> None:
        import ray

        check_shareable(env_config)  # frozen weights: a pair's score is the pair's alone
        if not ray.is_initialized():
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        self.env_config = to_dict(env_config)
        actor = ray.remote(num_cpus=1)(EnvScorer)
        self.scorers = [actor.remote(self.env_config) for _ in range(workers)]

    def score(self, samples: list[Actions], tracker: SearchTracker, chunk: int = 16) -> None:
        """Score ``samples`` and record them into ``tracker`` in their order."""
        import ray

        chunks = [samples[i: i + chunk] for i in range(0, len(samples), chunk)]
        futures = [self.scorers[i % len(self.scorers)].score.remote(part)
                   for i, part in enumerate(chunks)]
        for part in ray.get(futures):  # in submission order: the samples' order
            for infos, rewards in part:
                tracker.record(infos, rewards)

    def close(self) -> None:
        import ray

        for scorer in self.scorers:
            ray.kill(scorer)
        self.scorers = []


__all__ = ["EnvScorer", "ParallelScorer"]
