"""The pruning environments (METHOD 7-8) and the local-density objective (METHOD 5-6).

Checked against the RL libraries' own checkers (Gymnasium, SB3, PettingZoo) with warnings turned
into errors, plus the contracts those checkers do not cover: determinism with inner updates,
space containment under any action, error messages, episode structure, reward terms, the
density term's behaviour under pruning, rendering and vectorisation.

Everything runs on small pools (``SMALL``) so that the task preparation, cached per process and
per task-related configuration, is shared by most tests.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
import yaml
from gymnasium.utils.env_checker import check_env as gym_check_env
from pettingzoo.test import parallel_api_test, parallel_seed_test
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import gan_prune_env  # noqa: F401  (registers the ids)
from gan_prune_env.checkpoint import CheckpointError, make_checkpoint, save_checkpoint
from gan_prune_env.config import ConfigError
from gan_prune_env.envs.config import EnvConfig
from gan_prune_env.envs import (
    AGENTS, ActionError, EvaluationError, GANPruneParallelEnv, JointPruneEnv, SingleAgentPruneEnv,
    ratios_to_action,
)
from gan_prune_env.envs.peers import uniform_budget_peer
from gan_prune_env.envs.rendering import to_uint8
from gan_prune_env.families import build_network, network_config, network_names
from gan_prune_env.envs.game import recalibrating, to_eval_mode
from gan_prune_env.objective import (
    LocalDensityObjective, ObjectiveConfig, build_neighbourhoods, kernel_weights, pair_input,
    widen_for_center,
)
from gan_prune_env.objective.features import spatial_mean_std
from gan_prune_env.tasks import get_task, load_teacher

P2P = "Pix2PixPrune-v0"
CYC = "CycleGANPrune-v0"
SMALL = {"eval_size": 4, "pool_size": 6, "k": 2, "rounds": 2}
"""Tiny pools (k=2 neighbours), two rounds: one step evaluates 8 pairs. The task preparation of
these keys is shared (cached per process)."""
INNER = {"inner_steps": 2, "inner_batch": 1}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny pools: one thread is as fast, and many times faster when the 2 cores are busy with
    other work (two OpenMP threads then wait on each other at every op)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@contextlib.contextmanager
def strict_warnings():
    """Every warning raised inside is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def make(env_id: str = P2P, **kwargs):
    """``gymnasium.make`` with the small pools, unwrapped (checkers want the bare env)."""
    return gym.make(env_id, **{**SMALL, **kwargs}).unwrapped


def parallel(**kwargs) -> GANPruneParallelEnv:
    return GANPruneParallelEnv(**{**SMALL, **kwargs})


def uniform_actions(env: GANPruneParallelEnv, ratio_g: float, ratio_d: float | None = None
                    ) -> dict[str, np.ndarray]:
    """Actions that ask for the same keep ratio in every group."""
    ratio_d = ratio_g if ratio_d is None else ratio_d
    return {a: ratios_to_action(np.full(env.game.num_groups(a), r), env.config.min_keep)
            for a, r in (("generator", ratio_g), ("discriminator", ratio_d))}


def random_actions(env: GANPruneParallelEnv, rng: np.random.Generator, low=-1.0, high=1.0
                   ) -> dict[str, np.ndarray]:
    return {a: rng.uniform(low, high, env.game.num_groups(a)).astype(np.float32) for a in AGENTS}


def assert_same(a, b, path: str = "") -> None:
    """Exact, recursive equality of observations / rewards / infos (dicts, lists, arrays)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {a.keys()} vs {b}"
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: {a} vs {b}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, f"{path}: {a!r} vs {b!r}"
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


def assert_valid_obs(obs: np.ndarray, space: gym.spaces.Box, where: str = "") -> None:
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32, where
    assert obs.shape == space.shape, where
    assert np.isfinite(obs).all(), where
    assert space.contains(obs), f"{where}: observation outside its space"


def assert_valid_step(env: GANPruneParallelEnv, out) -> None:
    obs, rewards, terminations, truncations, infos = out
    for agent in env.possible_agents:
        assert_valid_obs(obs[agent], env.observation_space(agent), agent)
        assert type(rewards[agent]) is float and math.isfinite(rewards[agent])
        assert type(terminations[agent]) is bool and type(truncations[agent]) is bool
        info = infos[agent]
        assert rewards[agent] == pytest.approx(sum(info["reward_terms"].values()), rel=1e-12,
                                               abs=1e-12)
        assert all(type(v) is float and math.isfinite(v) for v in info["loss_terms"].values())
        ratios = np.asarray(info["keep_ratios"])
        assert ((ratios > 0) & (ratios <= 1)).all()
        assert 0 < info["compute_ratio"] <= 1 + 1e-12


# -- library checkers ----------------------------------------------------------------------------

@pytest.mark.parametrize("agent", AGENTS)
def test_gymnasium_check_env_single(agent):
    env = make(agent=agent, render_mode="rgb_array")
    assert isinstance(env, SingleAgentPruneEnv) and env.agent == agent
    with strict_warnings():
        gym_check_env(env)


def test_gymnasium_check_env_joint():
    env = make(view="joint", render_mode="ansi")
    assert isinstance(env, JointPruneEnv)
    with strict_warnings():
        gym_check_env(env)


@pytest.mark.parametrize("view,agent", [("single", "generator"), ("single", "discriminator"),
                                        ("joint", "generator")])
def test_sb3_check_env(view, agent):
    kwargs = {"agent": agent} if view == "single" else {}
    env = make(view=view, **kwargs)
    with strict_warnings():
        sb3_check_env(env, warn=True)


def test_pettingzoo_parallel_api():
    env = parallel(rounds=3)
    with strict_warnings():
        parallel_api_test(env, num_cycles=10)


def test_pettingzoo_parallel_seed():
    with strict_warnings():
        parallel_seed_test(lambda: parallel(**INNER), num_cycles=10)


@pytest.fixture(scope="module")
def cyclegan_teacher(tmp_path_factory) -> str:
    """An untrained network pair of ``default_cyclegan``'s architecture as its teacher: the
    checks below need no good teacher, the built-in one is trained on first use (minutes), and
    a fixed teacher keeps these tests the same on every machine."""
    task = get_task("default_cyclegan")
    nets = {name: build_network(network_config("cyclegan", name, task.generator,
                                               task.discriminator), seed=i)
            for i, name in enumerate(network_names("cyclegan"))}
    payload = make_checkpoint("teacher", "cyclegan", nets, task.generator, task.discriminator,
                              metadata={"note": "untrained, for tests only"})
    return str(save_checkpoint(tmp_path_factory.mktemp("teachers") / "cyclegan.pt", payload))


def test_cyclegan_checkers(cyclegan_teacher):
    kwargs = {"teacher": cyclegan_teacher}
    single = make(CYC, agent="generator", **kwargs)
    with strict_warnings():
        gym_check_env(single)
        sb3_check_env(make(CYC, view="joint", **kwargs), warn=True)
        parallel_api_test(parallel(task="default_cyclegan", **kwargs), num_cycles=2)
        parallel_seed_test(lambda: parallel(task="default_cyclegan", **kwargs), num_cycles=2)
    assert single.game.prepared.conditional is False
    assert single.game.prepared.task.family == "cyclegan"


def test_cyclegan_unpruned_pair_matches_reference(cyclegan_teacher):
    env = parallel(task="default_cyclegan", teacher=cyclegan_teacher, budget_g=1.0,
                   budget_d=1.0)
    env.reset(seed=0)
    _, rewards, _, _, infos = env.step(uniform_actions(env, 1.0))
    assert infos["generator"]["reward_terms"] == {"loss": -1.0, "compute": 0.0}
    assert infos["discriminator"]["reward_terms"] == {"loss": 0.0, "compute": 0.0}
    assert rewards == {"generator": -1.0, "discriminator": 0.0}
    infos = env.step(uniform_actions(env, 0.25, 1.0))[4]
    assert infos["generator"]["loss_terms"]["g_kde"] > 1e-6
    assert infos["generator"]["loss_terms"]["g_rec"] > 0


def test_cyclegan_frozen_steps_leave_teacher_weights(cyclegan_teacher):
    """InstanceNorm keeps no statistics: a frozen-weight step has nothing to recalibrate and
    leaves the generator exactly the teacher's (nothing to restore at reset)."""
    env = parallel(task="default_cyclegan", teacher=cyclegan_teacher)
    before = copy.deepcopy(env.game.generator.state_dict())
    env.reset(seed=0)
    env.step(uniform_actions(env, 0.3))
    assert not env.game._dirty
    assert _states_equal(env.game.generator.state_dict(), before)


def test_teacher_of_wrong_family_is_rejected(cyclegan_teacher):
    with pytest.raises(CheckpointError, match="cyclegan"):
        gym.make(P2P, **{**SMALL, "teacher": cyclegan_teacher})


# -- determinism ---------------------------------------------------------------------------------

@pytest.mark.parametrize("inner", [{}, INNER], ids=["frozen", "inner_steps"])
def test_determinism_parallel(inner):
    rng = np.random.default_rng(0)
    first, second = parallel(**inner), parallel(**inner)
    actions = [random_actions(first, rng) for _ in range(first.config.rounds)]

    def rollout(env, seed):
        trajectory = [env.reset(seed=seed)]
        trajectory += [env.step(a) for a in actions]
        return trajectory

    reference = rollout(first, 7)
    assert_same(reference, rollout(second, 7), "two envs")
    assert_same(reference, rollout(first, 7), "same env after reset")
    if inner:  # the seed reaches the inner updates' sampling of neighbourhoods
        first.reset(seed=8)
        assert first.step(actions[0])[1] != reference[1][1]


@pytest.mark.parametrize("view", ["single", "joint"])
def test_determinism_views(view):
    envs = [make(view=view, **INNER) for _ in range(2)]
    rng = np.random.default_rng(1)
    actions = [rng.uniform(-1, 1, envs[0].action_space.shape).astype(np.float32)
               for _ in range(SMALL["rounds"])]

    def rollout(env, seed):
        trajectory = [env.reset(seed=seed)]
        trajectory += [env.step(a) for a in actions]
        return trajectory

    reference = rollout(envs[0], 3)
    assert_same(reference, rollout(envs[1], 3), "two envs")
    assert_same(reference, rollout(envs[0], 3), "after reset")


# -- spaces and action handling ------------------------------------------------------------------

def test_random_actions_stay_in_spaces():
    env = parallel(rounds=4)
    rng = np.random.default_rng(2)
    obs, _ = env.reset(seed=0)
    for agent in AGENTS:
        assert_valid_obs(obs[agent], env.observation_space(agent), agent)
    for _ in range(40):
        if not env.agents:
            obs, _ = env.reset()
            for agent in AGENTS:
                assert_valid_obs(obs[agent], env.observation_space(agent), agent)
        actions = {a: env.action_space(a).sample() for a in env.agents} if rng.random() < 0.5 \
            else random_actions(env, rng)
        assert_valid_step(env, env.step(actions))
    assert env.state().shape == env.state_space.shape
    assert env.state_space.contains(env.state())


def test_extreme_actions_stay_in_spaces():
    env = parallel(rounds=4)
    n = {a: env.game.num_groups(a) for a in AGENTS}
    patterns = {
        "all -1": {a: -np.ones(n[a], np.float32) for a in AGENTS},
        "all +1": {a: np.ones(n[a], np.float32) for a in AGENTS},
        "alternating": {a: np.where(np.arange(n[a]) % 2, 1.0, -1.0).astype(np.float32)
                        for a in AGENTS},
        "mixed": {"generator": -np.ones(n["generator"], np.float32),
                  "discriminator": np.ones(n["discriminator"], np.float32)},
    }
    for name, actions in patterns.items():
        env.reset(seed=0)
        for _ in range(env.config.rounds):
            out = env.step(actions)
            assert_valid_step(env, out)
            for agent in AGENTS:
                assert out[4][agent]["clipped_entries"] == [], name
    env.reset(seed=0)
    infos = env.step(patterns["all -1"])[4]
    for agent in AGENTS:  # -1 is min_keep: at most one channel above it (rounding, minimum 1)
        kept, full = np.asarray(infos[agent]["kept_channels"]), env.game.spaces[agent].num_channels
        assert (kept <= np.maximum(np.ceil(env.config.min_keep * full), 1)).all(), agent


def test_out_of_box_actions_are_clipped_and_reported():
    env = parallel()
    n = {a: env.game.num_groups(a) for a in AGENTS}
    inside = {a: np.linspace(-0.9, 0.9, n[a]).astype(np.float32) for a in AGENTS}
    outside = {a: v.copy() for a, v in inside.items()}
    outside["generator"][[0, 2]] = [3.0, -7.5]
    outside["discriminator"][1] = 1.0001
    clipped = {a: np.clip(v, -1, 1) for a, v in outside.items()}

    env.reset(seed=0)
    infos = env.step(outside)[4]
    env.reset(seed=0)
    expected = env.step(clipped)
    assert infos["generator"]["clipped_entries"] == [0, 2]
    assert infos["discriminator"]["clipped_entries"] == [1]
    assert expected[4]["generator"]["clipped_entries"] == []
    for agent in AGENTS:
        assert infos[agent]["keep_ratios"] == expected[4][agent]["keep_ratios"]
        assert infos[agent]["loss_terms"] == expected[4][agent]["loss_terms"]
    # the views pass it through too
    single = make(agent="discriminator")
    single.reset(seed=0)
    action = np.full(single.action_space.shape, 2.0, np.float32)
    info = single.step(action)[4]
    assert info["clipped_entries"] == list(range(single.action_space.shape[0]))
    assert info["peer"]["clipped_entries"] == []


def test_reset_infos_and_obs():
    env = parallel()
    obs, infos = env.reset(seed=0)
    assert set(obs) == set(infos) == set(AGENTS) and env.agents == list(AGENTS)
    for agent in AGENTS:
        assert infos[agent]["round"] == 0 and infos[agent]["compute_ratio"] == 1.0
        assert infos[agent]["budget"] == env.game.budget(agent)
        assert_valid_obs(obs[agent], env.observation_space(agent), agent)
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
        space = env.action_space(agent)
        assert space.dtype == np.float32 and (space.low == -1).all() and (space.high == 1).all()


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("agent", AGENTS)
def test_bad_actions_name_agent_and_entry(agent):
    env = parallel()
    env.reset(seed=0)
    n = env.game.num_groups(agent)
    good = uniform_actions(env, 0.5)
    cases = [
        (np.where(np.arange(n) == 2, np.nan, 0.0), rf"{agent}.*entry 2\b.*nan"),
        (np.where(np.arange(n) == 0, -np.inf, 0.0), rf"{agent}.*entry 0\b.*inf"),
        (np.where(np.arange(n) >= n - 2, np.inf, 0.0), rf"{agent}.*entry {n - 2}\b.*2 non-finite"),
        (np.zeros(n + 1), rf"{agent}.*shape \({n + 1},\).*expected \({n},\)"),
        (np.zeros((1, n)), rf"{agent}.*shape \(1, {n}\)"),
        (np.zeros(0), rf"{agent}.*shape \(0,\)"),
        ("half", rf"{agent}.*not numeric"),
        (None, rf"{agent}"),
        (np.ones(n, dtype=bool), rf"{agent}.*not numeric.*dtype bool"),
        (np.zeros(n, dtype=complex), rf"{agent}.*not numeric.*dtype complex"),
        (["0.5"] * n, rf"{agent}.*not numeric"),
        ([True] + [0.0] * (n - 1), rf"{agent}.*not numeric.*got bool"),
    ]
    for action, pattern in cases:
        with pytest.raises(ActionError, match=re.compile(pattern, re.I | re.S)):
            env.step({**good, agent: action})
    assert issubclass(ActionError, ValueError)
    # a rejected action leaves the episode where it was
    infos = env.step(good)[4]
    assert infos[agent]["round"] == 1


def test_missing_agent_is_named():
    env = parallel()
    env.reset(seed=0)
    good = uniform_actions(env, 0.5)
    with pytest.raises(ValueError, match="discriminator"):
        env.step({"generator": good["generator"]})
    with pytest.raises(ValueError, match="generator"):
        env.step({"discriminator": good["discriminator"]})
    with pytest.raises(ValueError, match=r"unknown agent\(s\) \['genG'\]"):
        env.step({**good, "genG": good["generator"]})
    assert env.step(good)[4]["generator"]["round"] == 1


def test_bad_actions_in_views():
    single = make(agent="generator")
    single.reset(seed=0)
    n = single.action_space.shape[0]
    with pytest.raises(ActionError, match=r"generator.*shape"):
        single.step(np.zeros(n - 1, np.float32))
    with pytest.raises(ActionError, match=r"generator.*entry 1\b"):
        single.step(np.array([0.0, np.nan] + [0.0] * (n - 2), np.float32))

    joint = make(view="joint")
    joint.reset(seed=0)
    n_g = joint.game.num_groups("generator")
    action = np.zeros(joint.action_space.shape, np.float32)
    with pytest.raises(ValueError, match=r"joint action has shape"):
        joint.step(action[:-1])
    action[n_g + 3] = np.nan  # entry 3 of the discriminator's part
    with pytest.raises(ActionError, match=r"discriminator.*entry 3\b"):
        joint.step(action)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"bogus_option": 1}, r"bogus_option"),
    ({"budget_g": 0}, r"budget_g.*\(0, 1\]"),
    ({"budget_g": 1.5}, r"budget_g.*\(0, 1\].*1\.5"),
    ({"budget_d": -0.1}, r"budget_d"),
    ({"rounds": 0}, r"rounds must be >= 1"),
    ({"rounds": 1.5}, r"rounds.*integer"),
    ({"inner_steps": -1}, r"inner_steps"),
    ({"min_keep": 0}, r"min_keep"),
    ({"compute_weight": float("nan")}, r"compute_weight must be a finite number"),
    ({"inner_lr": float("inf")}, r"inner_lr must be a finite number"),
    ({"seed": -1}, r"seed must be >= 0"),
    ({"inner_lr": -1e-4}, r"inner_lr must be > 0"),
    ({"device": "tpu"}, r"device 'tpu' is not a device"),
    ({"compute_penalty": "both"}, r"compute_penalty"),
    ({"precision": "float16"}, r"precision 'float16' is not one of"),
    ({"eval_size": 4}, r"eval_size.*k"),
    ({"objective": {"feature_map": "vgg"}}, r"feature_map"),
    ({"objective": {"lambda_kdee": 1.0}}, r"lambda_kdee"),
])
def test_bad_config_values(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        gym.make(P2P, **kwargs)


@pytest.mark.parametrize("failure", ["nan_reward", "out_of_memory"])
def test_a_failed_round_ends_the_episode_instead_of_the_process(monkeypatch, failure):
    """A long training run survives a broken evaluation: the step terminates both agents with
    the documented reward and names the cause; reset starts a normal episode again."""
    env = parallel()
    env.reset(seed=0)
    good = uniform_actions(env, 0.5)
    played = env.game.play_round

    def broken(ratios):
        if failure == "out_of_memory":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        result = played(ratios)
        result.rewards["generator"] = float("nan")
        return result

    monkeypatch.setattr(env.game, "play_round", broken)
    observations, rewards, terminations, truncations, infos = env.step(good)
    assert rewards == {a: -10.0 for a in AGENTS} and all(terminations.values())
    assert not any(truncations.values()) and env.agents == []
    cause = "OutOfMemoryError: CUDA out of memory" if failure == "out_of_memory" \
        else "non-finite reward_generator"
    assert all(cause in infos[a]["error"] and "round 1" in infos[a]["error"] for a in AGENTS)
    assert all(observations[a] in env.observation_space(a) for a in AGENTS)
    monkeypatch.setattr(env.game, "play_round", played)
    _, infos = env.reset(seed=0)
    assert infos["generator"]["error"] == ""
    assert env.step(good)[4]["generator"]["error"] == ""


def raising(error: Exception):
    def play_round(ratios):
        raise error
    return play_round


def test_on_error_raise_raises_and_bad_actions_and_bugs_raise_either_way(monkeypatch):
    env = parallel(on_error="raise")
    env.reset(seed=0)
    good = uniform_actions(env, 0.5)
    monkeypatch.setattr(env.game, "play_round",
                        raising(RuntimeError("CUDA error: an illegal memory access")))
    with pytest.raises(EvaluationError, match="round 1: the evaluation failed: RuntimeError"):
        env.step(good)
    lenient = parallel()
    lenient.reset(seed=0)
    with pytest.raises(ActionError):
        lenient.step({**good, "generator": np.full_like(good["generator"], np.nan)})
    monkeypatch.setattr(lenient.game, "play_round", raising(TypeError("a bug")))
    with pytest.raises(TypeError, match="a bug"):  # a programming error is not a fault to hide
        lenient.step(good)


def test_a_divisor_that_freezes_channel_groups_warns():
    with pytest.warns(UserWarning, match=r"divisor 4096 is at least the width of \d+ of"):
        make(divisor=4096).reset(seed=0)


def test_bad_view_agent_and_render_mode():
    with pytest.raises(ValueError, match="view"):
        gym.make(P2P, view="triple", **SMALL)
    with pytest.raises(ValueError, match="agent"):
        gym.make(P2P, agent="critic", **SMALL)
    with pytest.raises(ValueError, match="render_mode"):
        GANPruneParallelEnv(render_mode="human", **SMALL)
    with pytest.raises(ValueError, match="keep ratio"):
        gym.make(P2P, peer_policy=1.5, **SMALL)


@pytest.mark.parametrize("key", ["budget_g", "budget_d"])
def test_impossible_budget_names_smallest_ratio(key):
    env = parallel()
    agent = "generator" if key == "budget_g" else "discriminator"
    smallest = env.game.min_compute[agent]
    assert 0 < smallest < 1
    with pytest.raises(ValueError, match=rf"{key}=1e-06.*smallest reachable.*{smallest:.4f}"):
        gym.make(P2P, **{key: 1e-6}, **SMALL)
    # the smallest reachable ratio itself is a valid budget: all -1 meets it
    env = parallel(**{key: smallest})
    env.reset(seed=0)
    infos = env.step({a: -np.ones(env.game.num_groups(a), np.float32) for a in AGENTS})[4]
    assert infos[agent]["within_budget"] and infos[agent]["reward_terms"]["compute"] == 0.0


def test_wrong_family_for_id():
    with pytest.raises(ValueError, match=r"cyclegan task.*needs pix2pix"):
        gym.make(P2P, task="default_cyclegan")
    with pytest.raises(ValueError, match=r"pix2pix task.*needs cyclegan"):
        gym.make(CYC, task="default")
    with pytest.raises(ConfigError, match="no_such_task"):
        gym.make(P2P, task="no_such_task")


# -- episodes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("rounds", [1, 3])
def test_episode_structure_parallel(rounds):
    env = parallel(rounds=rounds)
    actions = uniform_actions(env, 0.5)
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        assert env.agents == list(AGENTS)
        for r in range(1, rounds + 1):
            assert env.agents == list(AGENTS)
            obs, _, terminations, truncations, infos = env.step(actions)
            done = r == rounds
            assert terminations == dict.fromkeys(AGENTS, done)
            assert truncations == dict.fromkeys(AGENTS, False)
            assert all(infos[a]["round"] == r for a in AGENTS)
            own_global = obs["generator"][env._builders["generator"].layout["own_global"]]
            round_feature = own_global[3]
            assert round_feature == pytest.approx(r / rounds)
        assert env.agents == []
        with pytest.raises(RuntimeError, match="reset"):
            env.step(actions)


@pytest.mark.parametrize("view", ["single", "joint"])
def test_episode_structure_views(view):
    env = make(view=view, rounds=3)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, np.float32)
    for r in range(1, 4):
        _, _, terminated, truncated, _ = env.step(action)
        assert terminated is (r == 3) and truncated is False
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)
    env.reset()
    assert env.step(action)[2] is False
    env.close()
    env.close()


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_reset_restores_pretrained_weights():
    env = parallel(rounds=2, **INNER)
    game = env.game
    teacher_g, teacher_d = load_teacher(game.prepared.task)
    teacher = {"generator": teacher_g.state_dict(), "discriminator": teacher_d.state_dict()}
    for agent in AGENTS:
        assert _states_equal(game.network(agent).state_dict(), teacher[agent]), agent

    env.reset(seed=0)
    env.step(uniform_actions(env, 0.5))
    env.step(uniform_actions(env, 0.6))
    for agent in AGENTS:  # the inner updates did change the weights ...
        assert not _states_equal(game.network(agent).state_dict(), teacher[agent]), agent
    # ... but never the shared, cached teacher
    assert _states_equal(game.prepared.generator.state_dict(), teacher["generator"])
    assert _states_equal(game.prepared.discriminator.state_dict(), teacher["discriminator"])

    env.reset(seed=1)
    for agent in AGENTS:
        assert _states_equal(game.network(agent).state_dict(), teacher[agent]), agent
        assert not any(p.requires_grad for p in game.network(agent).parameters())
        assert not game.network(agent).training
    # full architecture after reset: the unpruned pair is the reference again (BN stats too;
    # a step would run inner updates first, so evaluate directly)
    full = {a: game.spaces[a].num_channels for a in AGENTS}
    assert game.evaluate(full["generator"], full["discriminator"]) == game.reference_terms

    # frozen weights, masks: a pruned round re-estimates the masked G's BatchNorm statistics
    frozen = parallel(evaluation="masked")
    frozen.reset(seed=0)
    frozen.step(uniform_actions(frozen, 0.5))
    assert not _states_equal(frozen.game.generator.state_dict(), teacher["generator"])
    frozen.reset(seed=0)
    assert _states_equal(frozen.game.generator.state_dict(), teacher["generator"])
    # sliced: the statistics are re-estimated on the sliced tensors; the modules stay the teacher's
    sliced = parallel(evaluation="sliced")
    sliced.reset(seed=0)
    sliced.step(uniform_actions(sliced, 0.5))
    assert _states_equal(sliced.game.generator.state_dict(), teacher["generator"])


def test_frozen_evaluation_does_not_depend_on_history():
    """With frozen weights a round's outcome is a function of the two architectures alone:
    whatever was evaluated before (e.g. a pruned generator whose norms were recalibrated)."""
    env = parallel(rounds=6)
    env.reset(seed=0)
    sequence = [(1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0), (1.0, 0.5)]
    infos = [env.step(uniform_actions(env, g, d))[4] for g, d in sequence]
    for first, again in ((0, 3), (1, 4), (2, 5)):
        for agent in AGENTS:
            assert infos[first][agent]["loss_terms"] == infos[again][agent]["loss_terms"], \
                (sequence[first], agent)
    assert infos[3]["generator"]["loss_terms"] == infos[3]["generator"]["reference_terms"]


def test_same_seed_same_episode_whatever_the_global_rng(tmp_path):
    """A generator with dropout (as on facades): the norm recalibration of a pruned generator
    must not draw from torch's global RNG, or same-seed episodes would differ."""
    base = get_task("default")
    generator = dataclasses.replace(base.generator, use_dropout=True)
    nets = {name: build_network(network_config("pix2pix", name, generator, base.discriminator),
                                seed=i) for i, name in enumerate(network_names("pix2pix"))}
    teacher = save_checkpoint(tmp_path / "dropout_teacher.pt", make_checkpoint(
        "teacher", "pix2pix", nets, generator, base.discriminator))
    task_file = tmp_path / "dropout_task.yaml"
    task_file.write_text(yaml.safe_dump({"name": "default", "generator": {"use_dropout": True},
                                         "teacher_checkpoint": str(teacher)}))
    env = parallel(task=str(task_file))
    assert any(isinstance(m, torch.nn.Dropout) for m in env.game.generator.modules())
    results = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        env.reset(seed=0)
        results.append(env.step(uniform_actions(env, 0.5)))
    assert_same(results[0], results[1])


def test_inner_steps_change_losses():
    frozen, adapted = parallel(rounds=2), parallel(rounds=2, **INNER)
    actions = uniform_actions(frozen, 0.4)
    frozen.reset(seed=0)
    adapted.reset(seed=0)
    f = frozen.step(actions)[4]["generator"]["loss_terms"]
    a = adapted.step(actions)[4]["generator"]["loss_terms"]
    assert f != a


def test_envs_are_garbage_collected():
    """Nothing global (e.g. a method-level cache) keeps a closed env and its networks alive."""
    import gc
    import weakref

    for build in (lambda: parallel(), lambda: make(), lambda: make(view="joint")):
        env = build()
        env.reset(seed=0)
        spaces = env.possible_agents if isinstance(env, GANPruneParallelEnv) else []
        for agent in spaces:
            env.observation_space(agent), env.action_space(agent)
        game = env.game if isinstance(env, GANPruneParallelEnv) else env.parallel.game
        refs = [weakref.ref(env), weakref.ref(game.generator)]
        env.close()
        del env, game
        gc.collect()
        assert all(ref() is None for ref in refs)


# -- rewards -------------------------------------------------------------------------------------

def test_unpruned_pair_rewards():
    env = parallel(budget_g=1.0, budget_d=1.0)
    env.reset(seed=0)
    _, rewards, _, _, infos = env.step(uniform_actions(env, 1.0))
    assert infos["generator"]["reward_terms"]["loss"] == -1.0
    assert infos["discriminator"]["reward_terms"]["loss"] == 0.0
    for agent in AGENTS:
        assert infos[agent]["reward_terms"]["compute"] == 0.0
        assert infos[agent]["compute_ratio"] == 1.0 and infos[agent]["within_budget"]
        assert infos[agent]["keep_ratios"] == [1.0] * env.game.num_groups(agent)
        assert rewards[agent] == sum(infos[agent]["reward_terms"].values())
        assert infos[agent]["loss_terms"] == infos[agent]["reference_terms"]
    assert rewards == {"generator": -1.0, "discriminator": 0.0}


L1_ONLY = {"objective": {"lambda_kde": 0.0, "lambda_adv": 0.0}}
"""L_G is the L1 anchor to the teacher alone: exactly 0 for the unpruned pair."""


def test_distillation_only_reward_takes_its_scale_from_the_uniform_pair():
    assert parallel().game.reference_source == "teacher"
    env = parallel(**L1_ONLY)
    game = env.game
    assert game.reference_source == "uniform" and game.reference_terms["g_loss"] > 0
    uniform = {a: game.ratio_counts(a, np.full(game.num_groups(a), game.uniform_ratio_for_budget(a)))
               for a in AGENTS}
    assert game.evaluate(uniform["generator"], uniform["discriminator"])["g_loss"] == \
        game.reference_terms["g_loss"]
    env.reset(seed=0)
    _, rewards, _, _, infos = env.step(uniform_actions(env, 1.0))  # the teacher: nothing lost
    assert infos["generator"]["reference_source"] == "uniform"
    assert infos["generator"]["reward_terms"]["loss"] == 0.0
    _, rewards, _, _, infos = env.step(uniform_actions(env, 0.05))  # far below the uniform pair
    assert infos["generator"]["reward_terms"]["loss"] < -1.0 and math.isfinite(rewards["generator"])


def test_reward_without_any_scale_is_refused():
    # L1 only and nothing to prune in G: L_G is 0 for the teacher and for the uniform pair
    with pytest.raises(ValueError, match=r"L_G is 0 .*budget_g=1\.0.*no scale"):
        parallel(budget_g=1.0, **L1_ONLY)


def test_compute_terms():
    env = parallel()  # budgets 0.25 / 0.5, lambda_F = 2
    weight = env.config.compute_weight
    env.reset(seed=0)
    infos = env.step(uniform_actions(env, 1.0))[4]
    for agent in AGENTS:  # unpruned is above budget: lambda_F * log(1 / p)
        expected = -weight * math.log(1.0 / env.game.budget(agent))
        assert infos[agent]["reward_terms"]["compute"] == pytest.approx(expected, rel=1e-12)
        assert not infos[agent]["within_budget"]
    # the default peer heuristic, the largest uniform ratio within budget, is not penalised
    infos = env.step({a: uniform_budget_peer(env.game, a).action for a in AGENTS})[4]
    for agent in AGENTS:
        assert infos[agent]["within_budget"], agent
        assert infos[agent]["compute_ratio"] <= env.game.budget(agent)
        assert infos[agent]["reward_terms"]["compute"] == 0.0

    above = parallel(budget_g=0.5)
    above.reset(seed=0)
    last = -1.0
    for r in (0.75, 0.9, 1.0):  # the penalty grows with the excess
        infos = above.step(uniform_actions(above, r, 1.0))[4]["generator"]
        if not above.agents:
            above.reset(seed=0)
        assert infos["compute_ratio"] > 0.5
        penalty = -infos["reward_terms"]["compute"]
        assert penalty == pytest.approx(weight * math.log(infos["compute_ratio"] / 0.5))
        assert penalty > max(last, 0.0)
        last = penalty

    two_sided = parallel(compute_penalty="two_sided")
    two_sided.reset(seed=0)
    infos = two_sided.step(uniform_actions(two_sided, 0.05, 0.05))[4]
    for agent in AGENTS:  # below budget is penalised too
        r, p = infos[agent]["compute_ratio"], two_sided.game.budget(agent)
        assert r < p and infos[agent]["reward_terms"]["compute"] == pytest.approx(
            -weight * math.log(p / r))


def test_reward_terms_sum_in_every_view():
    rng = np.random.default_rng(3)
    single = make(agent="generator")
    single.reset(seed=0)
    for _ in range(2):
        _, reward, _, _, info = single.step(single.action_space.sample())
        assert reward == pytest.approx(sum(info["reward_terms"].values()), rel=1e-12)
        peer = info["peer"]
        assert peer["reward"] == pytest.approx(sum(peer["reward_terms"].values()), rel=1e-12)
    joint = make(view="joint", reward_weights=(0.7, 2.0))
    joint.reset(seed=0)
    for _ in range(2):
        _, reward, _, _, info = joint.step(rng.uniform(-1, 1, joint.action_space.shape))
        parts = {a: sum(info[a]["reward_terms"].values()) for a in AGENTS}
        assert info["generator"]["reward"] == pytest.approx(parts["generator"], rel=1e-12)
        assert reward == pytest.approx(0.7 * parts["generator"] + 2.0 * parts["discriminator"],
                                       rel=1e-12)


def test_single_view_peer_policies():
    env = make(agent="generator", peer_policy=0.5)
    env.reset(seed=0)
    action = np.ones(env.action_space.shape, np.float32)
    info = env.step(action)[4]
    expected = env.game.spaces["discriminator"].counts_for_ratios(
        np.full(env.game.num_groups("discriminator"), 0.5))
    assert info["peer"]["kept_channels"] == expected.tolist()

    default = make(agent="discriminator")  # default peer: uniform ratio within G's budget
    default.reset(seed=0)
    peer = default.step(np.ones(default.action_space.shape, np.float32))[4]["peer"]
    assert peer["within_budget"] and peer["reward_terms"]["compute"] == 0.0

    seen = []

    def policy(observation):
        seen.append(observation)
        return -np.ones(env.game.num_groups("discriminator"), np.float32)

    env.set_peer_policy(policy)
    env.reset(seed=0)
    info = env.step(action)[4]
    assert len(seen) == 1 and seen[0].shape == env.parallel.observation_space("discriminator").shape
    assert info["peer"]["kept_channels"] == env.game.ratio_counts(
        "discriminator", env.game.min_ratios("discriminator")).tolist()
    with pytest.raises(TypeError, match="peer policy"):
        env.set_peer_policy("strong")


# -- the density term under pruning --------------------------------------------------------------

@pytest.fixture(scope="module")
def default_env() -> GANPruneParallelEnv:
    """The default task at the default pool sizes (density and reward measurements)."""
    return GANPruneParallelEnv(task="default", rounds=4)


def test_density_loss_grows_with_pruning(default_env):
    env = default_env
    env.reset(seed=0)
    kde = []
    for ratio in (1.0, 0.75, 0.5, 0.25):
        infos = env.step(uniform_actions(env, ratio, 1.0))[4]
        kde.append(infos["generator"]["loss_terms"]["g_kde"])
    assert abs(kde[0]) < 1e-6, kde
    assert all(a < b for a, b in zip(kde, kde[1:])), f"g_kde not increasing: {kde}"


def test_reference_rewards_on_default_task(default_env):
    """Both agents uniform at 1, 0.5, 0.25: the unpruned pair's loss terms are -1 and 0 (printed
    for the record with ``-s``). Then D unpruned: G's loss term worsens as G alone is pruned.
    (With D pruned too, G's adversarial term is judged by a weaker critic and drops, so the
    pair's G term is not monotone in the common ratio; that is the game, not checked here.)"""
    env = default_env
    env.reset(seed=0)
    rows = {}
    for ratio in (1.0, 0.5, 0.25):
        _, rewards, _, _, infos = env.step(uniform_actions(env, ratio))
        rows[ratio] = (rewards, {a: infos[a]["reward_terms"] for a in AGENTS})
    print("\nratio: (rewards, reward terms)", *(f"\n{k}: {v}" for k, v in rows.items()))
    assert rows[1.0][1]["generator"]["loss"] == -1.0
    assert rows[1.0][1]["discriminator"]["loss"] == 0.0
    env.reset(seed=0)
    g_terms = [env.step(uniform_actions(env, ratio, 1.0))[4]["generator"]["reward_terms"]["loss"]
               for ratio in (1.0, 0.75, 0.5, 0.25)]
    assert g_terms[0] == -1.0
    assert all(a > b for a, b in zip(g_terms, g_terms[1:])), g_terms


# -- rendering -----------------------------------------------------------------------------------

def test_render_ansi_names_groups():
    env = parallel(render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and text.startswith("round 0/")
    for agent in AGENTS:
        assert f"{agent}: kept MACs" in text
        for row in env.game.spaces[agent].describe():
            assert re.search(rf"^\s*{row['group']} {re.escape(row['kind'])}\s+"
                             rf"{row['channels']}/{row['channels']}", text, re.M), row
    env.step(uniform_actions(env, 0.5))
    text = env.render()
    assert text.startswith("round 1/") and text.count("reward") == 2
    view = make(render_mode="ansi")
    view.reset(seed=0)
    assert isinstance(view.render(), str)
    assert make().render() is None


def test_render_rgb_array_has_three_columns():
    env = parallel(render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    batch = env.game.eval_batch
    rows, size = min(4, batch.inputs.shape[0]), batch.inputs.shape[-1]
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.shape == (rows * size, 3 * size, 3)
    columns = np.split(image, 3, axis=1)
    np.testing.assert_array_equal(columns[0], np.concatenate(to_uint8(batch.inputs[:rows])))
    np.testing.assert_array_equal(columns[1], np.concatenate(to_uint8(batch.outputs[:rows])))
    np.testing.assert_array_equal(columns[2], columns[1])  # unpruned student == teacher
    env.step(uniform_actions(env, 0.25))
    pruned = env.render()
    assert pruned.shape == image.shape
    assert not np.array_equal(np.split(pruned, 3, axis=1)[2], columns[1])
    view = make(render_mode="rgb_array", view="joint")
    view.reset(seed=0)
    assert view.render().shape == image.shape


# -- vectorisation -------------------------------------------------------------------------------

def test_sb3_dummy_vec_env():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    vec = make_vec_env(P2P, n_envs=2, vec_env_cls=DummyVecEnv, seed=0, env_kwargs=SMALL)
    obs = vec.reset()
    assert obs.shape == (2, *vec.observation_space.shape) and obs.dtype == np.float32
    vec.env_method("set_peer_policy", 0.5)
    for _ in range(SMALL["rounds"]):
        obs, rewards, dones, infos = vec.step(np.stack([vec.action_space.sample()] * 2))
        assert rewards.shape == (2,) and np.isfinite(rewards).all()
    assert dones.all() and "terminal_observation" in infos[0]
    vec.close()


def _local_peer_counts(ratio: float) -> list[int]:
    env = make(agent="generator", peer_policy=ratio)
    env.reset(seed=0)
    return env.step(np.zeros(env.action_space.shape, np.float32))[4]["peer"]["kept_channels"]


@pytest.mark.parametrize("start_method", ["forkserver"])
def test_sb3_subproc_vec_env(start_method):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    # "module:id": gymnasium imports the module (registering the ids) in the fresh worker
    # processes of spawn/forkserver; a bare id is unknown there (gymnasium 1.x has no plugins)
    vec = make_vec_env(f"gan_prune_env:{P2P}", n_envs=2, vec_env_cls=SubprocVecEnv, seed=0,
                       env_kwargs=SMALL, vec_env_kwargs={"start_method": start_method})
    try:
        vec.reset()
        assert vec.env_method("set_peer_policy", 0.5) == [None, None]
        assert vec.get_attr("agent") == ["generator", "generator"]
        actions = np.zeros((2, *vec.action_space.shape), np.float32)
        _, rewards, dones, infos = vec.step(actions)
        assert np.isfinite(rewards).all() and not dones.any()
        expected = _local_peer_counts(0.5)
        assert [info["peer"]["kept_channels"] for info in infos] == [expected, expected]
    finally:
        vec.close()


def test_gymnasium_make_vec_sync():
    vec = gym.make_vec(P2P, num_envs=2, vectorization_mode="sync", **SMALL)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, *vec.single_observation_space.shape)
    for _ in range(SMALL["rounds"] + 1):
        obs, rewards, terminated, truncated, _ = vec.step(vec.action_space.sample())
        assert rewards.shape == (2,) and np.isfinite(rewards).all()
        assert vec.single_observation_space.contains(obs[0])
    vec.close()


# -- the objective on its own --------------------------------------------------------------------

def test_neighbourhoods_knn_and_kernel():
    features = torch.randn(21, 5, generator=torch.Generator().manual_seed(0))
    nb = build_neighbourhoods(features, k=3)
    dist = torch.cdist(features.double(), features.double())
    for i in range(21):
        assert i not in nb.neighbours[i].tolist(), "a center is not its own neighbour"
        others = [j for j in torch.argsort(dist[i]).tolist() if j != i][:3]
        assert nb.neighbours[i].tolist() == others
        np.testing.assert_allclose(nb.distances[i].numpy(), dist[i, others].numpy(), rtol=1e-6)
    # bandwidth: the median k-NN distance (63 values: an exact middle one)
    assert nb.bandwidth == pytest.approx(float(np.median(nb.distances.double().numpy())),
                                         rel=1e-6)
    weights = nb.weights.double()
    np.testing.assert_allclose(weights.sum(1).numpy(), 1.0, atol=1e-6)
    assert (weights > 0).all() and (weights[:, :-1] >= weights[:, 1:] - 1e-7).all()
    raw = torch.exp(-nb.distances.double() ** 2 / (2 * nb.bandwidth**2))
    np.testing.assert_allclose(weights.numpy(), (raw / raw.sum(1, keepdim=True)).numpy(),
                               rtol=1e-5)
    assert nb.k == 3 and len(nb) == 21

    even = build_neighbourhoods(features[:20], k=4)  # 80 values: h is a median of them
    d = torch.cdist(features[:20].double(), features[:20].double())
    d = d.fill_diagonal_(float("inf")).topk(4, largest=False).values
    assert (d < even.bandwidth).sum() <= 40 and (d > even.bandwidth).sum() <= 40
    fixed = build_neighbourhoods(features, k=3, bandwidth=0.7)
    assert fixed.bandwidth == 0.7
    np.testing.assert_allclose(fixed.weights.double().numpy(),
                               kernel_weights(fixed.distances.double(), 0.7).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="k must be"):
        build_neighbourhoods(features[:3], k=3)


@pytest.fixture(scope="module")
def prepared():
    return parallel().game.prepared


def _perturbed_student(prepared, scale: float = 0.05, seed: int = 0):
    student = copy.deepcopy(prepared.generator).requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=gen))
    return student


def test_pools_neighbourhoods(prepared):
    for pool in (prepared.train_pool, prepared.eval_pool):
        nb = pool.neighbourhoods
        assert (nb.neighbours != torch.arange(len(pool))[:, None]).all()
        np.testing.assert_allclose(nb.weights.sum(1).numpy(), 1.0, atol=1e-6)
        assert nb.bandwidth == pytest.approx(float(nb.distances.median()), rel=1e-6)
    batch = prepared.eval_pool.batch(torch.tensor([0, 3]))
    assert batch.neighbour_pos.shape == (2, prepared.objective.config.k)
    for c, centre in enumerate([0, 3]):  # positions index the gathered images correctly
        assert torch.equal(batch.outputs[batch.center_pos[c]], prepared.eval_pool.outputs[centre])
        for j, n in enumerate(prepared.eval_pool.neighbourhoods.neighbours[centre]):
            assert torch.equal(batch.inputs[batch.neighbour_pos[c, j]],
                               prepared.eval_pool.inputs[n])


def test_kl_zero_for_teacher_and_positive_otherwise(prepared):
    objective, pool = prepared.objective, prepared.eval_pool
    batch = pool.batch(torch.arange(len(pool)))
    with torch.no_grad():
        assert abs(float(objective.density_kl(batch, batch.outputs))) < 1e-6
        # the same images in another order: each center's neighbourhood looks different
        assert float(objective.density_kl(batch, batch.outputs.flip(0))) > 1e-3


@pytest.mark.parametrize("term", ["all", "lambda_adv", "lambda_kde", "lambda_rec"])
def test_gradients_flow_to_student(prepared, term):
    """L_G, and each of its three terms alone, trains the student's parameters."""
    base = prepared.objective
    config = base.config
    if term != "all":
        config = dataclasses.replace(config, **{name: float(name == term) for name in
                                                ("lambda_adv", "lambda_kde", "lambda_rec")})
    objective = LocalDensityObjective(config, base.feature_map, base.center_first, base.gan_mode)
    batch = prepared.train_pool.batch(torch.arange(4))
    discriminator = copy.deepcopy(prepared.discriminator).requires_grad_(False)
    student = _perturbed_student(prepared)
    loss, values = objective.generator_loss(discriminator, batch, student(batch.inputs))
    loss.backward()
    grads = [p.grad for p in student.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), term
    assert sum(float(g.abs().sum()) for g in grads) > 0, term
    assert values["g_loss"] == pytest.approx(float(loss.detach()), rel=1e-6)
    assert all(p.grad is None for p in discriminator.parameters())
    assert all(p.grad is None for p in objective.feature_map.parameters())


def test_discriminator_loss_trains_discriminator(prepared):
    objective, pool = prepared.objective, prepared.train_pool
    batch = pool.batch(torch.arange(4))
    discriminator = copy.deepcopy(prepared.discriminator).requires_grad_(True)
    student = _perturbed_student(prepared)
    loss, values = objective.discriminator_loss(discriminator, batch, student(batch.inputs))
    loss.backward()
    assert all(p.grad is None for p in student.parameters())  # student outputs are detached
    assert sum(float(p.grad.abs().sum()) for p in discriminator.parameters()) > 0
    assert values["d_loss"] == pytest.approx(0.5 * (values["d_real"] + values["d_fake"]))


@pytest.mark.parametrize("scale", [0.0, 0.1])
def test_evaluate_matches_separate_losses(prepared, scale):
    objective, pool = prepared.objective, prepared.eval_pool
    batch = pool.batch(torch.arange(len(pool)))
    discriminator = prepared.discriminator
    with torch.no_grad():
        student = _perturbed_student(prepared, scale).eval()(batch.inputs)
        together = objective.evaluate(discriminator, batch, student)
        _, g_values = objective.generator_loss(discriminator, batch, student)
        _, d_values = objective.discriminator_loss(discriminator, batch, student)
    separate = {**g_values, **d_values}
    assert together.keys() == separate.keys()
    for key in together:
        assert together[key] == pytest.approx(separate[key], rel=1e-5, abs=1e-7), key
    assert together["g_loss"] == pytest.approx(
        objective.config.lambda_adv * together["g_adv"] + objective.config.lambda_kde
        * together["g_kde"] + objective.config.lambda_rec * together["g_rec"], rel=1e-6)


def test_widened_discriminator_judges_as_teacher():
    from gan_prune_env.models import DiscriminatorConfig, build_discriminator

    d = build_discriminator(DiscriminatorConfig(input_nc=3, ndf=8, n_layers=2), seed=0).eval()
    wide = widen_for_center(d).eval()
    x, c = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(wide(pair_input(c, x, center_first=False)), d(x))
    assert ObjectiveConfig().k == 4


def test_spatial_mean_std_is_the_mean_and_unbiased_std_over_space_in_float32():
    """The density term's features: per channel, the mean then the std over space (as
    ``Tensor.mean``/``Tensor.std``), in float32 even from a bfloat16 pass."""
    x = torch.randn(4, 3, 5, 6).mul(3).add(1).to(memory_format=torch.channels_last)
    expected = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)
    torch.testing.assert_close(spatial_mean_std(x), expected, rtol=1e-5, atol=1e-6)
    low = x.bfloat16()
    out = spatial_mean_std(low)
    assert out.dtype == torch.float32
    wide = low.float()
    torch.testing.assert_close(out, torch.cat([wide.mean((2, 3)), wide.std((2, 3))], 1),
                               rtol=1e-5, atol=1e-6)


def test_recalibrating_trains_only_the_norms_and_leaves_every_module_in_eval_mode():
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5),
                            nn.Sequential(nn.BatchNorm2d(4)))
    network.train()  # a caller's network in train mode: dropout must still be off inside
    with recalibrating(network):
        assert [m.training for m in network.modules()] == [False, False, True, False, False,
                                                           True]
    assert not any(m.training for m in network.modules())
    network[2].train()  # one stray module in train mode is found too
    assert not any(m.training for m in to_eval_mode(network).modules())


# -- sliced evaluation ---------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["default", "default_cyclegan"])
@pytest.mark.parametrize("inner", [{}, INNER])
def test_sliced_and_masked_evaluation_pay_the_same_rewards(task, inner):
    """``evaluation="sliced"`` runs each architecture at its true width; it must score what the
    masked full network scores (to float rounding), round after round, with frozen weights
    and with inner updates, with norm recalibration (Pix2Pix) and without norms to recalibrate
    (CycleGAN's InstanceNorm)."""
    envs = {mode: parallel(task=task, rounds=3, evaluation=mode, **inner)
            for mode in ("sliced", "masked")}
    assert envs["sliced"].game.slicers is not None and envs["masked"].game.slicers is None
    for env in envs.values():
        env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        actions = random_actions(envs["sliced"], rng)
        results = {mode: env.step(actions) for mode, env in envs.items()}
        for agent in AGENTS:
            sliced, masked = (results[m][4][agent]["loss_terms"] for m in ("sliced", "masked"))
            assert sliced.keys() == masked.keys()
            for key in sliced:
                assert sliced[key] == pytest.approx(masked[key], rel=1e-4, abs=1e-6), key
            assert results["sliced"][1][agent] == pytest.approx(results["masked"][1][agent],
                                                                rel=1e-4, abs=1e-6)
    # what ``render`` shows is what was scored: the sliced G with its recalibrated norms
    torch.testing.assert_close(envs["sliced"].game.student_outputs(2),
                               envs["masked"].game.student_outputs(2), atol=1e-4, rtol=0)


def test_evaluation_mode_is_checked():
    with pytest.raises(ValueError, match="evaluation 'slice'"):
        EnvConfig(evaluation="slice")


# -- bfloat16 scoring ----------------------------------------------------------------------------


def test_bfloat16_scoring_pays_close_to_float32_and_ranks_alike():
    """``precision="bfloat16"`` must change the arithmetic (else the option does nothing) and
    not what is paid: each loss term within 1% of float32's, the same order over the pairs,
    float rewards, and what ``render`` shows in float32."""
    envs = {p: parallel(rounds=6, precision=p) for p in ("float32", "bfloat16")}
    for env in envs.values():
        env.reset(seed=0)
    rng = np.random.default_rng(0)
    paid = {p: [] for p in envs}
    for _ in range(6):
        actions = random_actions(envs["float32"], rng)
        for precision, env in envs.items():
            _, rewards, _, _, infos = env.step(actions)
            assert all(type(r) is float for r in rewards.values())
            paid[precision].append(infos["generator"]["reward_terms"]["loss"])
    reference, low = np.array(paid["float32"]), np.array(paid["bfloat16"])
    assert not np.array_equal(reference, low), "bfloat16 scoring computed in float32"
    np.testing.assert_allclose(low, reference, rtol=1e-2)
    assert list(np.argsort(low)) == list(np.argsort(reference))
    assert envs["bfloat16"].game.student_outputs(2).dtype == torch.float32


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_scoring_warns_on_a_cpu_that_would_emulate_it(monkeypatch, native):
    monkeypatch.setattr("gan_prune_env.envs.game.has_native_bfloat16", lambda device: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel(precision="bfloat16")
    emulated = [w for w in caught if "no native bfloat16" in str(w.message)]
    assert len(emulated) == (0 if native else 1)


# -- cache of evaluated pairs --------------------------------------------------------------------


def test_a_pair_seen_again_is_answered_from_the_cache_with_the_same_outcome(monkeypatch):
    env = parallel(rounds=4, cache_size=2)
    uncached = parallel(rounds=4, cache_size=0)
    evaluations = []
    original = env.game.evaluate
    monkeypatch.setattr(env.game, "evaluate",
                        lambda g, d: evaluations.append((g.tolist(), d.tolist())) or original(g, d))
    sequence = [(0.5, 1.0), (0.7, 0.6), (0.5, 1.0), (0.3, 0.3)]
    for e in (env, uncached):
        e.reset(seed=0)
    hits = []
    for g, d in sequence:
        step = env.step(uniform_actions(env, g, d))
        expected = uncached.step(uniform_actions(uncached, g, d))
        assert_same(step[1], expected[1])
        for agent in AGENTS:
            assert step[4][agent]["loss_terms"] == expected[4][agent]["loss_terms"]
        hits.append(step[4]["generator"]["cache_hit"])
        assert not expected[4]["generator"]["cache_hit"]
    assert hits == [False, False, True, False] and len(evaluations) == 3
    assert env.game.cache_hit_rate == pytest.approx(1 / 4)
    # bounded, least recently used out: the hit in round 3 kept (0.5, 1.0); (0.7, 0.6) left
    assert env.reset()[1]["generator"]["cache_hit_rate"] == pytest.approx(1 / 4)
    again = [env.step(uniform_actions(env, g, d))[4]["generator"]["cache_hit"]
             for g, d in ((0.5, 1.0), (0.7, 0.6))]
    assert again == [True, False] and evaluations[3:] == [evaluations[1]]
    # a seeded reset starts afresh: the same seed and actions, the same infos
    assert env.reset(seed=0)[1]["generator"]["cache_hit_rate"] == 0.0
    assert not env.step(uniform_actions(env, 0.3, 0.3))[4]["generator"]["cache_hit"]


def _count_real_judgements(monkeypatch, env: GANPruneParallelEnv) -> list[int]:
    """Calls of ``judge_real`` while ``env`` steps, one entry per step (the objective is
    shared by every env of the task, so calls are counted around this env's steps only)."""
    objective, counts, counting = env.game.objective, [], [False]
    original = objective.judge_real

    def judge_real(discriminator, batch):
        if counting[0]:
            counts[-1] += 1
        return original(discriminator, batch)

    def step(actions, _step=env.step):
        counts.append(0)
        counting[0] = True
        try:
            return _step(actions)
        finally:
            counting[0] = False

    monkeypatch.setattr(objective, "judge_real", judge_real)
    monkeypatch.setattr(env, "step", step)
    return counts


def test_real_verdicts_are_kept_per_discriminator_architecture(monkeypatch):
    """D's verdicts on the real pairs do not depend on G: a round whose D architecture was
    judged before judges only its fake pairs, and scores exactly as if nothing were kept."""
    env, uncached = parallel(rounds=4), parallel(rounds=4, cache_size=0)
    judged, judged_uncached = (_count_real_judgements(monkeypatch, e) for e in (env, uncached))
    for e in (env, uncached):
        e.reset(seed=0)
    for g, d in [(0.5, 0.6), (0.7, 0.6), (0.3, 0.8), (0.9, 0.6)]:
        step = env.step(uniform_actions(env, g, d))
        expected = uncached.step(uniform_actions(uncached, g, d))
        assert not step[4]["generator"]["cache_hit"]  # every pair is new: all scored
        for agent in AGENTS:
            assert step[4][agent]["loss_terms"] == expected[4][agent]["loss_terms"], (g, d)
    assert judged == [1, 0, 1, 0] and judged_uncached == [1, 1, 1, 1]


def test_no_cache_with_inner_updates(monkeypatch):
    """Inner updates change the weights: the same pair scores differently later, and D's
    verdicts on the real pairs change with them."""
    env = parallel(rounds=2, cache_size=8, **INNER)
    judged = _count_real_judgements(monkeypatch, env)
    env.reset(seed=0)
    infos = [env.step(uniform_actions(env, 0.5))[4] for _ in range(2)]
    assert not any(info["generator"]["cache_hit"] for info in infos)
    assert env.game.cache_hit_rate == 0.0
    assert judged == [1, 1]
    with pytest.raises(ValueError, match="cache_size"):
        EnvConfig(cache_size=-1)


# -- vector env ----------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["single", "joint"])
def test_vector_entry_point_runs_episodes_over_one_game(view):
    vector = gym.make_vec(P2P, num_envs=3, view=view, **SMALL)
    assert vector.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    games = {id(env.unwrapped.game) for env in vector.envs}
    assert len(games) == 1  # one set of networks, pools and cache
    single = make(P2P, view=view)
    assert vector.single_observation_space == single.observation_space
    assert vector.single_action_space == single.action_space
    observations, infos = vector.reset(seed=0)
    assert observations.shape == (3, *single.observation_space.shape)
    # the same actions in every episode: the first scores the pair, the others look it up
    action = np.stack([single.action_space.sample()] * 3)
    _, rewards, terminated, _, infos = vector.step(action)
    assert len(set(rewards.tolist())) == 1
    hits = infos["generator"]["cache_hit"] if view == "joint" else infos["cache_hit"]
    assert hits.tolist() == [False, True, True]
    # each sub-env alone is the single env: same seed, same actions, same rewards
    single.reset(seed=0)
    assert single.step(action[0])[1] == pytest.approx(rewards[0])
    _, _, terminated, _, _ = vector.step(action)  # round 2 of 2: every episode ends
    assert terminated.all()
    observations, rewards, terminated, _, infos = vector.step(action)  # NEXT_STEP autoreset
    assert not rewards.any() and not terminated.any()
    round_ = infos["generator"]["round"] if view == "joint" else infos["round"]
    assert round_.tolist() == [0, 0, 0]
    vector.close()


def test_vector_env_refuses_what_episodes_cannot_share():
    with pytest.raises(ValueError, match="inner_steps"):
        gym.make_vec(P2P, num_envs=2, **SMALL, **INNER)
    with pytest.raises(ValueError, match="num_envs"):
        gym.make_vec(P2P, num_envs=0, **SMALL)
    with pytest.raises(ConfigError, match="budgt_g"):
        gym.make_vec(P2P, num_envs=2, budgt_g=0.3, **SMALL)


def test_unseeded_resets_keep_the_cache_and_seeded_ones_clear_it():
    env = make(P2P)
    env.reset(seed=0)
    action = env.action_space.sample()
    assert not env.step(action)[4]["cache_hit"]
    env.reset()  # a new episode of the same run: the pair is known
    assert env.step(action)[4]["cache_hit"]
    env.reset(seed=0)
    assert not env.step(action)[4]["cache_hit"]


# -- numeric infos -------------------------------------------------------------------------------


def _info_signature(info: dict) -> dict:
    """Key -> (kind, shape): what a tensor-based library builds its info spec from."""
    signature = {}
    for key, value in info.items():
        array = np.asarray(value)
        assert array.dtype.kind in "biuf", f"{key}: {value!r} is not numeric"
        signature[key] = (array.dtype.kind, array.shape)
    return signature


@pytest.mark.parametrize("view", ["parallel", "single", "joint"])
def test_numeric_infos_have_the_same_numeric_keys_and_shapes_at_reset_and_every_step(view):
    env = parallel(info_format="numeric", rounds=3) if view == "parallel" else \
        make(view=view, info_format="numeric", rounds=3)
    per_agent = view == "parallel"
    _, infos = env.reset(seed=0)
    reference = ({a: _info_signature(infos[a]) for a in AGENTS} if per_agent
                 else _info_signature(infos))
    rng = np.random.default_rng(0)
    for _ in range(3):
        if per_agent:
            step = env.step(random_actions(env, rng, low=-2, high=2))  # some entries clipped
            assert {a: _info_signature(step[4][a]) for a in AGENTS} == reference
        else:
            step = env.step(rng.uniform(-2, 2, env.action_space.shape).astype(np.float32))
            assert _info_signature(step[4]) == reference
    if per_agent:
        info = step[4]["generator"]
        assert info["clipped"].any() and not info["failed"]
        assert info["reward_loss"] + info["reward_compute"] == pytest.approx(step[1]["generator"])
        assert info["kept_channels"].tolist() == env.game.current_counts["generator"].tolist()


def test_a_failed_round_keeps_the_numeric_info_shape(monkeypatch):
    env = parallel(info_format="numeric")
    _, infos = env.reset(seed=0)
    reference = {a: _info_signature(infos[a]) for a in AGENTS}

    def broken(*_):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(env.game, "evaluate", broken)
    _, rewards, terminated, _, infos = env.step(uniform_actions(env, 0.4))
    assert all(terminated.values()) and {a: _info_signature(infos[a]) for a in AGENTS} == reference
    assert infos["generator"]["failed"] and "out of memory" in env.last_error
    assert infos["generator"]["reward_loss"] == rewards["generator"] == env.config.error_reward
