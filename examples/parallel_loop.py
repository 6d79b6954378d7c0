"""Bring your own algorithm: a cross-entropy method per agent on the PettingZoo Parallel API.

Each agent keeps a Gaussian over its keep-ratio actions. Every generation, both agents sample
one action per round, the env scores each pair, and each agent refits its Gaussian to its own
elite (highest-reward) samples. The agents see each other only through the rewards they earn
together; a learning agent would also read the peer feedback in its observation.

    python examples/parallel_loop.py --generations 8 --population 12
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gan_prune_env.config import parse_key_values
from gan_prune_env.envs import GANPruneParallelEnv


def main(argv: list[str] | None = None) -> tuple[float, dict] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--population", type=int, default=12, help="rounds per generation")
    parser.add_argument("--elite", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-kwargs", nargs="*", default=["eval_size:6", "pool_size:16"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; tiny networks run fastest on one")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    env = GANPruneParallelEnv(**parse_key_values(args.env_kwargs))
    rng = np.random.default_rng(args.seed)
    mean = {a: np.zeros(env.action_space(a).shape) for a in env.possible_agents}
    std = {a: np.full(env.action_space(a).shape, 0.5) for a in env.possible_agents}
    best = None
    env.reset(seed=args.seed)
    for generation in range(args.generations):
        samples: dict[str, list] = {a: [] for a in env.possible_agents}
        for _ in range(args.population):
            actions = {a: np.clip(rng.normal(mean[a], std[a]), -1, 1).astype(np.float32)
                       for a in env.possible_agents}
            _, rewards, _, _, infos = env.step(actions)
            for agent, action in actions.items():
                samples[agent].append((rewards[agent], action))
            feasible = all(infos[a]["within_budget"] for a in env.possible_agents)
            if feasible and (best is None or rewards["generator"] > best[0]):
                best = (rewards["generator"], {a: infos[a]["kept_channels"] for a in infos})
            if not env.agents:  # episode over after `rounds` rounds
                env.reset()
        for agent, scored in samples.items():
            elite = np.stack([a for _, a in sorted(scored, key=lambda s: -s[0])[: args.elite]])
            mean[agent], std[agent] = elite.mean(0), elite.std(0) + 0.05
        print(f"generation {generation}: best generator reward so far "
              f"{best[0] if best else float('nan'):+.4f}")
    print("best kept channels:", best[1] if best else "none within budget")
    return best


if __name__ == "__main__":
    main()
