"""The registered ids and what each starts from: ``Pix2PixPruneDensity-v0`` is ``Pix2PixPrune-v0``
with the shipped supernet's weights, the objective's density term alone and a 10% G budget (a
preset of the same env, as CompilerGym registers one id per reward), and the shipped supernet is
the measured file.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env

import gan_prune_env
from gan_prune_env.config import ConfigError
from gan_prune_env.envs import AGENTS, make_parallel_env
from gan_prune_env.tasks import SHIPPED_SUPERNETS

V0, DENSITY = "Pix2PixPrune-v0", "Pix2PixPruneDensity-v0"
SMALL = {"eval_size": 4, "pool_size": 6, "k": 2, "rounds": 2}
# the L1 supernet every fidelity record of docs/RESULTS.md with supernet_sha1 e94107ed used
MEASURED_SUPERNET_SHA1 = "e94107ed7e05e4503fdaadc59af95827791aba8e"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_every_id_is_registered_with_a_vector_entry_point():
    for env_id in gan_prune_env.ENV_ENTRY_POINTS:
        spec = gym.spec(env_id)
        assert spec.vector_entry_point == gan_prune_env.VECTOR_ENTRY_POINTS[env_id]


def test_the_shipped_supernet_is_the_measured_file():
    path = SHIPPED_SUPERNETS["default"]
    record = json.loads(path.with_suffix(".json").read_text())
    data = path.read_bytes()
    assert hashlib.sha1(data).hexdigest() == record["sha1"] == MEASURED_SUPERNET_SHA1
    assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert len(data) == record["size_bytes"] and record["file"] == path.name


def test_the_density_id_checks_as_a_gymnasium_env():
    env = gym.make(DENSITY, **SMALL).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env)


def test_the_density_id_is_v0_with_the_shipped_supernet_the_density_term_alone_and_a_10_percent_budget():
    explicit = {"supernet": str(SHIPPED_SUPERNETS["default"]), "budget_g": 0.1,
                "objective": {"lambda_adv": 0.0, "lambda_rec": 0.0}}
    envs = {"density": make_parallel_env(DENSITY, **SMALL), "v0": make_parallel_env(V0, **SMALL),
            "v0 as density": make_parallel_env(V0, **SMALL, **explicit)}
    rng = np.random.default_rng(0)
    actions = [{a: rng.uniform(-1, 1, envs["v0"].game.num_groups(a)).astype(np.float32)
                for a in AGENTS} for _ in range(2)]
    rewards = {}
    for name, env in envs.items():
        env.reset(seed=0)
        rewards[name] = [env.step(a)[1] for a in actions]
    assert rewards["density"] == rewards["v0 as density"]
    assert rewards["density"] != rewards["v0"]
    config = envs["density"].config
    assert config.budget_g == 0.1 and config.budget_d == envs["v0"].config.budget_d
    # G's loss is the density term alone
    env = envs["density"]
    env.reset(seed=0)
    terms = env.step(actions[0])[4]["generator"]["loss_terms"]
    assert terms["g_loss"] == pytest.approx(config.objective.lambda_kde * terms["g_kde"])


def test_a_callers_objective_is_merged_into_the_ids_key_by_key():
    config = make_parallel_env(DENSITY, objective={"k": 3}, **{**SMALL, "k": None}).config
    assert (config.objective.k, config.objective.lambda_adv, config.objective.lambda_rec) == (
        3, 0.0, 0.0)
    config = make_parallel_env(DENSITY, objective={"lambda_adv": 1.0}, **SMALL).config
    assert (config.objective.lambda_adv, config.objective.lambda_rec) == (1.0, 0.0)


def test_the_density_id_runs_vectorised():
    vector = gym.make_vec(DENSITY, num_envs=2, **SMALL)
    observations, _ = vector.reset(seed=0)
    actions = np.zeros((2, *vector.single_action_space.shape), np.float32)
    assert vector.step(actions)[1].shape == (2,) and observations.shape[0] == 2


def test_a_shipped_supernet_on_a_task_without_one_names_the_fix():
    with pytest.raises(ConfigError, match=r"ships no supernet.*python -m gan_prune_env.supernet"):
        gym.make(DENSITY, task="default_long", **SMALL)
    with pytest.raises(ValueError, match="needs pix2pix"):
        gym.make(DENSITY, task="default_cyclegan", **SMALL)
