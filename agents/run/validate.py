"""``python -m agents.run.validate RUN_DIR``: re-score a run's architecture pairs.

Like CompilerGym's ``validate``: the env is rebuilt from the run's recorded ``config.yaml``, each
pair (the found one in ``best_architecture.json``; with ``--all`` every round of the saved search)
is played from a fresh reset, and it passes when the env keeps the recorded channel counts and
pays the recorded rewards. Frozen-weight rewards do not depend on the episode's history, so they
replay exactly; with ``inner_steps`` > 0 they do, and the pairs are reported as not replayable.
Exit status 0 when every pair passes, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.base import Candidate
from agents.run.config import load_run_config
from agents.run.run_folder import find_run_folder
from agents.run.search import read_best, read_history
from gan_prune_env.config import ConfigError
from gan_prune_env.envs import AGENTS, GANPruneParallelEnv, make_parallel_env, ratios_to_action

REWARD_TOLERANCE = 1e-5
"""Relative tolerance of a replayed reward (CPU float32 evaluations repeat to ~1e-7)."""


@dataclass
class Verdict:
    round: int
    status: str  # "PASS", "FAIL" or "SKIP"
    detail: str

    def line(self) -> str:
        return f"{self.status} round {self.round}: {self.detail}"


def replay(env: GANPruneParallelEnv, candidate: Candidate, seed: int) -> Verdict:
    """Play ``candidate``'s keep ratios from a fresh reset; compare counts and rewards."""
    env.reset(seed=seed)
    actions = {a: ratios_to_action(np.asarray(candidate.keep_ratios[a]), env.config.min_keep)
               for a in AGENTS}
    _, rewards, _, _, infos = env.step(actions)
    if infos[AGENTS[0]]["error"]:
        return Verdict(candidate.round, "FAIL",
                       f"the evaluation failed: {infos[AGENTS[0]]['error']}")
    for agent in AGENTS:
        if list(infos[agent]["kept_channels"]) != list(candidate.kept_channels[agent]):
            return Verdict(candidate.round, "FAIL",
                           f"{agent} keeps {infos[agent]['kept_channels']}, recorded "
                           f"{candidate.kept_channels[agent]}")
    lines = []
    for agent in AGENTS:
        got, recorded = rewards[agent], candidate.rewards[agent]
        if not math.isclose(got, recorded, rel_tol=REWARD_TOLERANCE, abs_tol=REWARD_TOLERANCE):
            return Verdict(candidate.round, "FAIL",
                           f"{agent} reward {got:.6f}, recorded {recorded:.6f}")
        lines.append(f"{agent} reward {got:+.6f}")
    return Verdict(candidate.round, "PASS", ", ".join(lines) + " (as recorded)")


def candidates(run_dir: Path, everything: bool) -> list[Candidate]:
    """The found pair, or every evaluated round of the saved search."""
    if everything:
        return [c for c in read_history(run_dir) if not c.error]
    return [read_best(run_dir)]


def validate_run(run_dir: str | Path, everything: bool = False) -> list[Verdict]:
    run_dir = find_run_folder(run_dir)
    config = load_run_config(run_dir)
    pairs = candidates(run_dir, everything)
    env = make_parallel_env(config.env, **config.env_options)
    if env.config.inner_steps > 0:
        return [Verdict(c.round, "SKIP", "not replayable: with inner_steps > 0 the rewards "
                        "depend on the episode's history") for c in pairs]
    return [replay(env, c, config.search.seed) for c in pairs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run folder (logs/ALGO/ENV_N)")
    parser.add_argument("--all", action="store_true", help="every round of the saved search")
    args = parser.parse_args(argv)
    try:
        verdicts = validate_run(args.run, args.all)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for verdict in verdicts:
        print(verdict.line())
    failed = sum(v.status == "FAIL" for v in verdicts)
    print(f"{len(verdicts) - failed} of {len(verdicts)} pairs validated"
          + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
