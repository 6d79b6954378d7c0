"""The env in the RL libraries researchers use besides SB3: TorchRL and RLlib.

Each library trains a few iterations on the env, through its own wrappers and collectors, with
none of our agents in the loop. The libraries are optional extras (``pip install -e
".[torchrl]"``, ``".[rllib]"``): without them these tests skip, naming the extra.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gan_prune_env  # noqa: F401  (registers the ids)
from gan_prune_env.envs import make_parallel_env

SMALL = {"eval_size": 4, "pool_size": 6, "k": 2, "rounds": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _skip_without(module: str, extra: str):
    return pytest.importorskip(module, reason=f"the [{extra}] extra is not installed "
                                              f"(pip install -e '.[{extra}]')")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray of 2 CPUs for all the Ray tests of this module: a start costs tens of
    seconds on a loaded 2-core machine."""
    ray = _skip_without("ray", "rllib")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# -- TorchRL -------------------------------------------------------------------------------------


def torchrl_parallel_env():
    from torchrl.envs import PettingZooWrapper
    from torchrl.envs.utils import MarlGroupMapType

    # one group per agent: genG and genD have different observation and action sizes
    return PettingZooWrapper(
        env=make_parallel_env("Pix2PixPrune-v0", info_format="numeric", **SMALL),
        group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT, categorical_actions=False,
        use_mask=False, seed=0)


def gaussian_actor(env, group: str):
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torchrl.modules import ProbabilisticActor, TanhNormal

    n_obs = env.observation_spec[group, "observation"].shape[-1]
    n_act = env.full_action_spec[group, "action"].shape[-1]
    net = nn.Sequential(nn.Linear(n_obs, 32), nn.Tanh(), nn.Linear(32, 2 * n_act),
                        NormalParamExtractor())
    module = TensorDictModule(net, in_keys=[(group, "observation")],
                              out_keys=[(group, "loc"), (group, "scale")])
    return ProbabilisticActor(module, in_keys=[(group, "loc"), (group, "scale")],
                              out_keys=[(group, "action")], distribution_class=TanhNormal,
                              distribution_kwargs={"low": -1.0, "high": 1.0},
                              spec=env.full_action_spec[group, "action"])


def test_torchrl_pettingzoo_wrapper_trains_both_agents():
    _skip_without("torchrl", "torchrl")
    from tensordict.nn import TensorDictSequential
    from torchrl.collectors import Collector
    from torchrl.envs.utils import check_env_specs

    env = torchrl_parallel_env()
    check_env_specs(env)  # specs (infos included, built from reset) match what steps return
    assert set(env.group_map) == {"generator", "discriminator"}
    actors = {group: gaussian_actor(env, group) for group in env.group_map}
    policy = TensorDictSequential(*actors.values())
    before = [p.detach().clone() for p in policy.parameters()]
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    collector = Collector(torchrl_parallel_env, policy, frames_per_batch=4, total_frames=12)
    batches = 0
    for batch in collector:  # REINFORCE with a batch-mean baseline, per agent
        loss = torch.zeros(())
        for group, actor in actors.items():
            reward = batch["next", group, "reward"].squeeze(-1)
            info = batch["next", group, "info"]
            assert torch.isfinite(reward).all() and not info["failed"].any()
            assert torch.allclose(reward.flatten(),
                                  (info["reward_loss"] + info["reward_compute"]).flatten())
            log_prob = actor.get_dist(batch).log_prob(batch[group, "action"])
            loss = loss - (log_prob * (reward - reward.mean())).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        batches += 1
    collector.shutdown()
    assert batches == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_torchrl_gym_env_of_the_single_agent_view():
    _skip_without("torchrl", "torchrl")
    from torchrl.envs import GymEnv
    from torchrl.envs.utils import check_env_specs

    env = GymEnv("Pix2PixPrune-v0", **SMALL)  # probes gymnasium.make with frameskip first
    check_env_specs(env)
    rollout = env.rollout(5, break_when_any_done=False)  # episodes of 2 rounds, reset between
    assert rollout["next", "reward"].shape == (5, 1)
    assert rollout["next", "done"].flatten().tolist() == [False, True, False, True, False]


# -- RLlib ---------------------------------------------------------------------------------------


def _rllib_env(config: dict):
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    return ParallelPettingZooEnv(make_parallel_env("Pix2PixPrune-v0", **config))


def test_rllib_multi_agent_ppo_trains_on_the_new_api_stack(ray_session):
    """Two policies (genG and genD, different spaces) through ``ParallelPettingZooEnv``."""
    _skip_without("ray.rllib", "rllib")
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    register_env("gan_prune_pix2pix", _rllib_env)
    config = (PPOConfig()
              .environment("gan_prune_pix2pix", env_config=SMALL)
              .multi_agent(policies={"generator", "discriminator"},
                           policy_mapping_fn=lambda agent_id, *args, **kwargs: agent_id)
              .env_runners(num_env_runners=0)
              .training(train_batch_size_per_learner=16, minibatch_size=8, num_epochs=1)
              .debugging(seed=0))
    assert config.enable_rl_module_and_learner  # the new API stack
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(2)]
    finally:
        algo.stop()
    learners = results[-1]["learners"]
    assert {"generator", "discriminator"} <= set(learners)
    for agent in ("generator", "discriminator"):
        assert np.isfinite(learners[agent]["policy_loss"])
    returns = results[-1]["env_runners"]["episode_return_mean"]
    assert np.isfinite(returns) and returns < 0  # rewards are <= 0 with the default budgets


def test_rllib_ppo_agent_records_exactly_its_rounds_and_saves(tmp_path, ray_session):
    """The leaderboard's RLlib row: our agent interface around RLlib PPO."""
    _skip_without("ray.rllib", "rllib")
    from agents import AGENT_CLASSES
    from agents.base import SearchTracker

    env = make_parallel_env("Pix2PixPrune-v0", **SMALL)
    agent = AGENT_CLASSES["rllib_ppo"]({"seed": 0, "train_batch_size": 16, "minibatch_size": 8,
                                        "num_epochs": 1})
    tracker = SearchTracker()
    try:
        agent.learn(env, 20, tracker)  # RLlib collects 32 steps; 20 are recorded
        assert len(tracker.history) == 20 and tracker.best is not None
        assert agent.rounds_by_runner == {0: 20}  # the local env runner, in this process
        observations, _ = env.reset(seed=0)
        actions = agent.act(observations, deterministic=True)
        for name in ("generator", "discriminator"):
            assert env.action_space(name).contains(actions[name])
        agent.save(tmp_path / "agent")
        again = AGENT_CLASSES["rllib_ppo"]()
        again.load(tmp_path / "agent")
        try:
            restored = again.act(observations, deterministic=True)
            for name in actions:
                np.testing.assert_allclose(restored[name], actions[name], atol=1e-6)
        finally:
            again.close()
    finally:
        agent.close()


def test_rllib_ppo_agent_plays_its_rounds_on_remote_env_runners(ray_session):
    """``num_env_runners: 2``: two Ray actors, each with its own env, play the rounds; the
    search records exactly its rounds, from both, as it does from the local runner."""
    _skip_without("ray.rllib", "rllib")
    from agents import AGENT_CLASSES
    from agents.base import SearchTracker

    env = make_parallel_env("Pix2PixPrune-v0", **SMALL)
    agent = AGENT_CLASSES["rllib_ppo"]({"seed": 0, "train_batch_size": 16, "minibatch_size": 8,
                                        "num_epochs": 1, "num_env_runners": 2})
    tracker = SearchTracker()
    try:
        agent.learn(env, 12, tracker)  # one iteration: 16 steps over the runners, 12 recorded
        assert len(tracker.history) == 12 and tracker.best is not None
        assert set(agent.rounds_by_runner) == {1, 2}  # both runners played recorded rounds
        assert [c.round for c in tracker.history] == list(range(12))
    finally:
        agent.close()


# -- Ray: parallel scoring -----------------------------------------------------------------------


def test_random_search_on_two_ray_actors_records_what_the_serial_search_records(ray_session):
    from agents import AGENT_CLASSES
    from agents.base import SearchTracker

    env = make_parallel_env("Pix2PixPrune-v0", cache_size=0, **SMALL)
    trackers = {}
    for workers in (None, 2):
        trackers[workers] = SearchTracker()
        agent = AGENT_CLASSES["random"]({"seed": 3, "workers": workers})
        agent.learn(env, 6, trackers[workers])  # in two calls: the actors are kept between
        scorer = agent._scorer
        agent.learn(env, 4, trackers[workers])
        assert agent._scorer is scorer
        agent.close()
    serial, parallel = (trackers[w].history for w in (None, 2))
    assert len(serial) == len(parallel) == 10
    for a, b in zip(serial, parallel):
        assert a.kept_channels == b.kept_channels and a.rewards == b.rewards
    assert len({tuple(c.kept_channels["generator"]) for c in serial}) > 1  # distinct samples
    with pytest.raises(ValueError, match="inner_steps"):
        AGENT_CLASSES["random"]({"workers": 2}).learn(
            make_parallel_env("Pix2PixPrune-v0", inner_steps=1, **SMALL), 2, SearchTracker())
