"""Plug an sb3-contrib algorithm into the pruning env, with none of this project's agents.

The joint view (``view="joint"``) is an ordinary Gymnasium env: one Box action sets the keep
ratios of G's and D's channel groups, the reward is ``r_G + r_D``, and ``info`` holds one
sub-dict per network. A ten-line callback keeps the best pair that meets both budgets.

    python examples/plug_in_sb3_contrib.py --algo tqc --steps 300
    python examples/plug_in_sb3_contrib.py --algo trpo --env-kwargs eval_size:12 budget_g:0.3
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from sb3_contrib import TQC, TRPO
from stable_baselines3.common.callbacks import BaseCallback

import gan_prune_env  # noqa: F401  (registers Pix2PixPrune-v0)
from gan_prune_env.config import parse_key_values

SMALL_NET = {"net_arch": [64, 64]}
ALGOS = {  # small settings: an episode is only `rounds` steps long
    "tqc": (TQC, {"learning_starts": 16, "batch_size": 16, "policy_kwargs": SMALL_NET}),
    "trpo": (TRPO, {"n_steps": 16, "batch_size": 16, "policy_kwargs": SMALL_NET}),
}


class BestArchitecture(BaseCallback):
    """Best generator reward among rounds where both networks meet their budgets."""

    def __init__(self) -> None:
        super().__init__()
        self.best: dict | None = None

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            g, d = info["generator"], info["discriminator"]
            feasible = g["within_budget"] and d["within_budget"]
            if feasible and (self.best is None or g["reward"] > self.best["generator"]["reward"]):
                self.best = {"generator": g, "discriminator": d}
        return True


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=sorted(ALGOS), default="tqc")
    parser.add_argument("--steps", type=int, default=300, help="env steps (rounds) to train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-kwargs", nargs="*", default=["eval_size:6", "pool_size:16"],
                        help="EnvConfig fields as key:value")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; tiny networks run fastest on one")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    env = gym.make("Pix2PixPrune-v0", view="joint", **parse_key_values(args.env_kwargs))
    algo_class, hyperparams = ALGOS[args.algo]
    model = algo_class("MlpPolicy", env, seed=args.seed, device="cpu", **hyperparams)
    callback = BestArchitecture()
    model.learn(total_timesteps=args.steps, callback=callback)

    if callback.best is None:
        print("no architecture pair met both budgets; train longer")
        return None
    for name, info in callback.best.items():
        print(f"{name:13s} reward {info['reward']:+.4f}  kept-MACs {info['compute_ratio']:.3f} "
              f"(budget {info['budget']})  kept channels {info['kept_channels']}")
    return callback.best


if __name__ == "__main__":
    main()
