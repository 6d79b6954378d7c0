"""Baseline and SB3 agents on a tiny default-task env, and the two plug-in examples."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import (
    AGENT_CLASSES, PruningAgent, RandomSearchAgent, SB3Agent, SearchTracker, UniformAgent,
)
from agents.budget import achieved_compute, fit_to_budget
from agents.sb3_agent import PolicySnapshot
from gan_prune_env.config import ConfigError
from gan_prune_env.envs import AGENTS, ConstantPeer, GANPruneParallelEnv

ROOT = Path(__file__).resolve().parents[1]
TINY = {"eval_size": 3, "pool_size": 8, "k": 2, "rounds": 2}  # one round ~ 3 G + 6 D forwards
TINY_ARGS = [f"{k}:{v}" for k, v in TINY.items()]
SB3_TINY = {"alternate_every": 2,
            "hyperparams": {"n_steps": 2, "batch_size": 2, "n_epochs": 1, "learning_starts": 1,
                            "buffer_size": 64, "net_arch": [16]}}


@pytest.fixture(scope="module")
def env(one_torch_thread) -> GANPruneParallelEnv:
    return GANPruneParallelEnv(**TINY)


@pytest.fixture(scope="module")
def ppo(env) -> SB3Agent:
    """A PPO agent after one turn each for G and D."""
    agent = SB3Agent(algo="ppo", **SB3_TINY)
    learn(agent, env, 4)
    return agent


def learn(agent, env: GANPruneParallelEnv, rounds: int) -> SearchTracker:
    tracker = SearchTracker()
    agent.learn(env, rounds, tracker)
    return tracker


def first_observations(env: GANPruneParallelEnv) -> dict[str, np.ndarray]:
    observations, _ = env.reset(seed=123)
    return observations


def assert_same_actions(agent, other, env: GANPruneParallelEnv) -> None:
    observations = first_observations(env)
    before, after = (a.act(observations, deterministic=True) for a in (agent, other))
    for key in AGENTS:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-6)


# -- baselines -------------------------------------------------------------------------------------
def test_uniform_meets_both_budgets_with_one_ratio_per_network(env):
    agent = UniformAgent()
    tracker = learn(agent, env, 2)
    assert len(tracker.history) == 2
    for candidate in tracker.history:
        assert candidate.within_budget
        assert candidate.compute_ratio["generator"] <= env.config.budget_g
    for action in agent.act(first_observations(env)).values():
        assert np.ptp(action) == 0  # one keep ratio for every group


def test_fit_to_budget_spends_but_never_exceeds_the_budget(env):
    rng = np.random.default_rng(0)
    for agent in AGENTS:
        budget = env.game.budget(agent)
        for _ in range(5):
            ratios = rng.uniform(0.05, 1, env.game.num_groups(agent))
            action = fit_to_budget(env.game, agent, ratios)
            compute = achieved_compute(env.game, agent, action)
            assert compute <= budget
            assert compute > 0.5 * budget  # rescaled up to (close to) the budget


def test_random_search_is_deterministic_under_its_seed_and_within_budget(env):
    runs = [learn(RandomSearchAgent(seed=seed), env, 2) for seed in (7, 7, 8)]
    ratios = [[c.keep_ratios for c in tracker.history] for tracker in runs]
    assert ratios[0] == ratios[1] != ratios[2]
    assert all(c.within_budget for c in runs[0].history)
    assert runs[0].best.within_budget


def test_random_search_replays_its_best_when_deterministic(env):
    agent = RandomSearchAgent(seed=1)
    tracker = learn(agent, env, 3)
    assert agent.best.rewards == tracker.best.rewards
    replay = SearchTracker()
    _, rewards, _, _, infos = env.step(agent.act(first_observations(env), deterministic=True))
    assert replay.record(infos, rewards).kept_channels == tracker.best.kept_channels


# -- SB3 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["ppo", "sac"])
@pytest.mark.parametrize("mode", ["alternate", "joint"])
def test_sb3_records_every_round_and_round_trips(env, tmp_path, algo, mode):
    agent = SB3Agent(algo=algo, mode=mode, **SB3_TINY)
    tracker = learn(agent, env, 4)
    assert len(tracker.history) == 4
    for candidate in tracker.history:
        assert set(candidate.rewards) == set(AGENTS)
        assert all(math.isfinite(r) for r in candidate.rewards.values())
    assert all(model.num_timesteps > 0 for model in agent.models.values())  # both had a turn
    actions = agent.act(first_observations(env), deterministic=True)
    assert {a: v.shape for a, v in actions.items()} == \
        {a: env.action_space(a).shape for a in AGENTS}
    agent.save(tmp_path / "agent")
    restored = SB3Agent()
    restored.load(tmp_path / "agent")
    assert restored.config == agent.config
    assert_same_actions(agent, restored, env)
    if algo == "sac":  # a resumed off-policy search keeps its experience
        for key, model in agent.models.items():
            assert restored.models[key].replay_buffer.size() == model.replay_buffer.size() > 0


def test_alternate_turns_hand_each_model_the_others_policy(ppo):
    peer_of_d = ppo.models["discriminator"].get_env().get_attr("peer_policy")[0]
    peer_of_g = ppo.models["generator"].get_env().get_attr("peer_policy")[0]
    assert isinstance(peer_of_d, PolicySnapshot)  # G had its turn before D's
    assert isinstance(peer_of_g, ConstantPeer)  # D was untrained: the env default stood in
    assert ppo.turn == 2


def test_peer_snapshot_pickles_and_acts_like_the_policy(env, ppo):
    policy = ppo.models["discriminator"].policy
    snapshot = pickle.loads(pickle.dumps(PolicySnapshot(policy)))
    observation = first_observations(env)["discriminator"]
    expected, _ = policy.predict(observation, deterministic=True)
    np.testing.assert_allclose(snapshot(observation), expected, rtol=1e-6)


# -- persistence -----------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", [UniformAgent, lambda: RandomSearchAgent(seed=3)],
                         ids=["uniform", "random"])
def test_baseline_save_load_round_trip_gives_the_same_actions(env, tmp_path, factory):
    agent = factory()
    learn(agent, env, 2)
    path = tmp_path / "agent.pt"
    agent.save(path)
    agent.save(path)  # overwriting works, and leaves no temporaries
    restored = factory()
    restored.load(path)
    assert_same_actions(agent, restored, env)
    assert [p.name for p in tmp_path.iterdir()] == ["agent.pt"]


def test_random_search_resumes_its_sampler_after_load(env, tmp_path):
    agent = RandomSearchAgent(seed=5)
    learn(agent, env, 1)
    agent.save(tmp_path / "random.pt")
    restored = RandomSearchAgent()
    restored.load(tmp_path / "random.pt")
    assert learn(agent, env, 1).history[0].keep_ratios == \
        learn(restored, env, 1).history[0].keep_ratios


def test_a_failed_save_leaves_the_previous_save_intact(env, ppo, tmp_path, monkeypatch):
    path = tmp_path / "agent"
    ppo.save(path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ppo.models["discriminator"], "save", crash)
    with pytest.raises(OSError, match="disk full"):
        ppo.save(path)
    restored = SB3Agent()
    restored.load(path)
    assert_same_actions(ppo, restored, env)
    assert [p.name for p in tmp_path.iterdir()] == ["agent"]


# -- configuration ---------------------------------------------------------------------------------
def test_registry_builds_every_agent_and_configs_are_strict():
    for factory in AGENT_CLASSES.values():
        assert isinstance(factory(), PruningAgent)  # every agent has working defaults
    assert AGENT_CLASSES["sac"]().config.algo == "sac"
    with pytest.raises(ConfigError, match="n_step"):
        SB3Agent(hyperparams={"n_step": 4})
    with pytest.raises(ConfigError, match="algo"):
        SB3Agent(algo="dqn")
    with pytest.raises(ConfigError, match="sed"):
        RandomSearchAgent(sed=1)


# -- examples --------------------------------------------------------------------------------------
@pytest.mark.parametrize("script, args", [
    ("plug_in_sb3_contrib.py", ["--algo", "tqc", "--steps", "20"]),
    ("parallel_loop.py", ["--generations", "2", "--population", "4", "--elite", "2"]),
])
def test_examples_run(script, args):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args,
                             "--env-kwargs", *TINY_ARGS],
                            capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "kept" in result.stdout or "no architecture" in result.stdout


def test_the_thin_student_has_the_architecture_but_not_the_weights(env):
    from agents.run.artifacts import reinitialize, slice_pair

    best = learn(UniformAgent(), env, 1).best
    pruned, student, again = (slice_pair(env, best, "cpu") for _ in range(3))
    reinitialize(student, seed=3)
    reinitialize(again, seed=3)
    for name in ("generator", "discriminator"):
        inherited = pruned.networks[name].state_dict()
        fresh = student.networks[name].state_dict()
        assert {k: v.shape for k, v in fresh.items()} == {k: v.shape for k, v in inherited.items()}
        weights = [k for k in fresh if k.endswith("weight")]
        assert all(not torch.equal(fresh[k], inherited[k]) for k in weights)
        assert all(torch.equal(fresh[k], again.networks[name].state_dict()[k]) for k in fresh)
        means = [v for k, v in fresh.items() if k.endswith("running_mean")]
        assert all(torch.count_nonzero(m) == 0 for m in means)  # statistics reset too
    # GAN Compression's student: a fresh G (the same as above) against the teacher's D
    g_only = reinitialize(slice_pair(env, best, "cpu"), seed=3, roles=("generator",))
    for name, same_as in (("generator", student), ("discriminator", pruned)):
        expected, got = same_as.networks[name].state_dict(), g_only.networks[name].state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in got.items())
    with pytest.raises(ValueError, match="generators"):
        reinitialize(pruned, seed=3, roles=("generators",))


def test_a_search_goes_on_past_failed_rounds_and_never_picks_one(monkeypatch):
    """The env ends an episode whose evaluation failed; the search records the spent round
    (its error kept through a save), keeps searching, and returns an evaluated pair."""
    env = GANPruneParallelEnv(**TINY)
    played, calls = env.game.play_round, []

    def every_other_round_fails(ratios):
        calls.append(1)
        if len(calls) % 2:
            raise torch.OutOfMemoryError("out of memory")
        return played(ratios)

    monkeypatch.setattr(env.game, "play_round", every_other_round_fails)
    tracker = learn(RandomSearchAgent(seed=0), env, 6)
    failed = [c for c in tracker.history if c.error]
    assert len(tracker.history) == 6 and len(failed) == 3
    assert all("out of memory" in c.error and c.rewards["generator"] == -10.0 for c in failed)
    assert tracker.best is not None and not tracker.best.error
    restored = SearchTracker()
    restored.load_state_dict(pickle.loads(pickle.dumps(tracker.state_dict())))
    assert [c.error for c in restored.history] == [c.error for c in tracker.history]


def candidate(round_: int, reward_g: float, within: bool, compute_g: float = 0.2):
    from agents.base import Candidate

    return Candidate(round=round_, kept_channels={a: [1] for a in AGENTS},
                     keep_ratios={a: [0.5] for a in AGENTS},
                     compute_ratio={"generator": compute_g, "discriminator": 0.5},
                     rewards={"generator": reward_g, "discriminator": 0.0},
                     loss_terms={a: {} for a in AGENTS}, within_budget=within)


def test_the_best_pair_is_the_highest_g_reward_within_both_budgets():
    """The rule that picks what gets fine-tuned: max G reward among pairs within budget, else
    the pair that came closest to G's budget. Flip max/min or drop the budget filter: red."""
    tracker = SearchTracker(history=[candidate(0, -2.0, True), candidate(1, -0.5, True),
                                     candidate(2, 0.9, False), candidate(3, -1.0, True)])
    assert tracker.best.round == 1
    outside = SearchTracker(history=[candidate(0, 0.1, False, 0.6),
                                     candidate(1, -3.0, False, 0.3),
                                     candidate(2, 0.5, False, 0.9)])
    assert outside.best.round == 1


def test_a_failed_round_is_never_the_best_even_without_a_pair_within_budget():
    from dataclasses import replace

    failed = replace(candidate(0, -10.0, False, float("nan")), error="out of memory")
    tracker = SearchTracker(history=[failed, candidate(1, -3.0, False, 0.6)])
    assert tracker.best.round == 1
    assert SearchTracker(history=[failed]).best is None
