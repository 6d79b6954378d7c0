"""The genG/genD hypernetwork agents: acting, both learning modes, ablations, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import MGGCAgent, SearchTracker
from agents.mggc import MGGCConfig
from gan_prune_env.config import ConfigError
from gan_prune_env.envs import AGENTS, make_parallel_env

TINY = {"eval_size": 6, "pool_size": 8, "k": 2, "rounds": 2, "calibration_size": 4}


@pytest.fixture(scope="module")
def env():
    return make_parallel_env("Pix2PixPrune-v0", **TINY)


def test_policy_starts_at_the_budget_heuristic(env) -> None:
    agent = MGGCAgent(seed=0)
    agent.bind(env)
    obs, _ = env.reset(seed=0)
    actions = agent.act(obs, deterministic=True)
    for name in AGENTS:
        assert actions[name].shape == env.action_space(name).shape
        assert env.action_space(name).contains(actions[name])
        ratio = env.game.uniform_ratio_for_budget(name)
        target = 2 * (ratio - env.config.min_keep) / (1 - env.config.min_keep) - 1
        assert np.allclose(actions[name].mean(), target, atol=0.2)


@pytest.mark.parametrize("mode", ["reinforce", "gates"])
def test_learning_changes_the_policy_and_records_rounds(env, mode: str) -> None:
    agent = MGGCAgent(mode=mode, batch_rounds=2, seed=0)
    agent.bind(env)
    before = {a: [p.detach().clone() for p in net.parameters()] for a, net in agent.nets.items()}
    tracker = SearchTracker()
    agent.learn(env, 4, tracker)
    assert len(tracker.history) == 4
    for name, net in agent.nets.items():
        changed = any(not torch.equal(p, q) for p, q in zip(before[name], net.parameters()))
        assert changed, f"{name} hypernet did not learn in {mode} mode"
    assert tracker.best is not None


def test_peer_feedback_ablation_ignores_the_peer(env) -> None:
    agent = MGGCAgent(peer_feedback=False, seed=0)
    agent.bind(env)
    obs, _ = env.reset(seed=0)
    layout = env.observation_layout("generator")
    changed = obs["generator"].copy()
    changed[layout["peer_ratios"]] = 0.1
    same = agent.act(obs, deterministic=True)["generator"]
    assert np.array_equal(same, agent.act({**obs, "generator": changed}, True)["generator"])
    with_peer = MGGCAgent(seed=0)
    with_peer.bind(env)
    assert not np.array_equal(with_peer.act(obs, True)["generator"],
                              with_peer.act({**obs, "generator": changed}, True)["generator"])


def test_generator_alone_keeps_the_discriminator_full(env) -> None:
    agent = MGGCAgent(prune_discriminator=False, seed=0)
    tracker = SearchTracker()
    agent.learn(env, 2, tracker)
    assert set(agent.nets) == {"generator"}
    for candidate in tracker.history:
        assert candidate.keep_ratios["discriminator"] == [1.0] * env.game.num_groups("discriminator")


def test_budget_projection_spends_each_budget_without_exceeding_it(env) -> None:
    """Samples far from the budget (large std) still land on it with ``fit_budget``; without it
    they scatter, which is what the projection exists to prevent."""
    def search(fit_budget: bool) -> list:
        agent = MGGCAgent(fit_budget=fit_budget, init_log_std=0.0, batch_rounds=2, seed=0)
        tracker = SearchTracker()
        agent.learn(env, 6, tracker)
        return tracker.history

    for candidate in search(fit_budget=True):
        assert candidate.within_budget
        for name in AGENTS:
            assert 0.85 * env.game.budget(name) <= candidate.compute_ratio[name] \
                <= env.game.budget(name)
    spread = [c.compute_ratio["generator"] for c in search(fit_budget=False)]
    assert max(spread) - min(spread) > 0.05


def test_save_load_round_trip_and_determinism(env, tmp_path) -> None:
    agent = MGGCAgent(seed=3)
    agent.learn(env, 2, SearchTracker())
    agent.save(tmp_path / "agent.pt")
    restored = MGGCAgent(seed=3)
    restored.load(tmp_path / "agent.pt", env=env)
    obs, _ = env.reset(seed=1)
    for name in AGENTS:
        assert np.array_equal(agent.act(obs, True)[name], restored.act(obs, True)[name])
    assert np.array_equal(agent.act(obs)["generator"], restored.act(obs)["generator"])


def test_bad_hyperparameters_are_named() -> None:
    with pytest.raises(ConfigError, match="learning_rat"):
        MGGCAgent(learning_rat=1e-3)
    with pytest.raises(ConfigError, match="mode"):
        MGGCAgent(mode="evolution")
    assert MGGCAgent(MGGCConfig(gamma=0.5)).config.gamma == 0.5


def test_the_policy_gradient_moves_the_policy_towards_the_rewarded_actions(env) -> None:
    """REINFORCE's rule itself: after one update on rounds where actions above the mean were
    paid more than actions below it, the mean moves up (and the other way round). A flipped
    sign or a dropped advantage turns this red."""
    for direction in (+1.0, -1.0):
        agent = MGGCAgent(seed=0, lr=1e-2, weight_decay=0.0, entropy_coef=0.0)
        agent.bind(env)
        obs, _ = env.reset(seed=0)
        mean = agent._sample(obs, deterministic=True)["generator"]
        offsets = [np.full_like(mean, 0.3), np.full_like(mean, -0.3)] * 4
        batch = {agent_name: {"obs": [obs[agent_name]] * 8, "act": [], "rew": [], "done": []}
                 for agent_name in agent.learning_agents}
        for offset in offsets:
            for agent_name, data in batch.items():
                base = agent._sample(obs, deterministic=True)[agent_name]
                data["act"].append(base + offset[0])
                data["rew"].append(direction * float(offset[0]))  # paid for moving `direction`
                data["done"].append(True)
        agent._policy_gradient_step(batch)
        moved = agent._sample(obs, deterministic=True)["generator"] - mean
        assert np.sign(moved.mean()) == direction, (direction, moved)


def test_unknown_keyword_arguments_are_errors_even_with_a_config() -> None:
    with pytest.raises(ConfigError, match="lrr"):
        MGGCAgent(MGGCConfig(), seed=7, lrr=1)
    assert MGGCAgent(MGGCConfig(), seed=7).config.seed == 7
