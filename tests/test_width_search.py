"""Learned widths (``gan_prune_env.width_search`` and the ``widths`` agent): the compute term's
direction, the gates' attachment, which way training moves the fractions, and the agent's
contract (within budget, deterministic, persistent, strict config)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from agents import AGENT_CLASSES, LearnedWidthsAgent, SearchTracker
from gan_prune_env.config import ConfigError
from gan_prune_env.envs import GANPruneParallelEnv
from gan_prune_env.pruning import ChannelMasker
from gan_prune_env.tasks import get_task
from gan_prune_env.width_search import LearnedWidths, WidthSearchConfig, search_widths

TINY = {"eval_size": 3, "pool_size": 8, "k": 2, "rounds": 2}
FAST = {"steps": 6, "progress": False}


@pytest.fixture(scope="module")
def env(one_torch_thread) -> GANPruneParallelEnv:
    return GANPruneParallelEnv(budget_g=0.1, **TINY)


def widths_on(env, init_fraction: float, **config) -> LearnedWidths:
    """Learned widths on a copy of the env's generator (the copy carries the env masker's hooks,
    which act on the original only)."""
    game = env.game
    return LearnedWidths(copy.deepcopy(game.generator), game.spaces["generator"],
                         game.budget("generator"), game.config.min_keep, init_fraction,
                         WidthSearchConfig(**config))


def test_budget_term_pushes_down_above_budget_and_its_multiplier_follows_the_excess(env):
    game = env.game
    budget = game.budget("generator")
    above = widths_on(env, 0.6, dual_lr=0.5)
    above.multiplier = 3.0
    loss, terms = above(None, None)
    ratio = float(terms["W_macs_ratio"])
    assert ratio > budget
    assert float(loss.detach()) == pytest.approx(3.0 * (ratio / budget - 1), rel=1e-5)
    loss.backward()
    # descending the term must lower every group's fraction (a flipped sign raises them)
    assert (above.logits.grad > 0).all()
    # the multiplier's step: up by dual_lr * excess above budget ...
    assert above.multiplier == pytest.approx(3.0 + 0.5 * (ratio / budget - 1), rel=1e-6)

    below = widths_on(env, 0.5 * game.uniform_ratio_for_budget("generator"), dual_lr=0.5)
    below.multiplier = 0.1
    loss, terms = below(None, None)
    assert float(terms["W_macs_ratio"]) < budget
    assert float(loss.detach()) < 0  # under budget the term pays for spending more
    assert below.multiplier == 0.0  # ... down below it, never under zero
    for widths in (above, below):
        widths.remove()


def test_gates_act_on_every_forward_and_leave_with_remove(env):
    game = env.game
    generator = copy.deepcopy(game.generator).eval()
    x = game.calibration_inputs[:2]
    with torch.no_grad():
        full = generator(x)
    widths = LearnedWidths(generator, game.spaces["generator"], game.budget("generator"),
                           game.config.min_keep, 0.3, WidthSearchConfig())
    with torch.no_grad():
        gated = generator(x)
        expected_masker = ChannelMasker(copy.deepcopy(game.generator).eval(),
                                        game.spaces["generator"])
        expected_masker.set_gates(game.spaces["generator"].soft_gates(widths.fractions(), 0.5))
        expected = expected_masker.model(x)
    torch.testing.assert_close(gated, expected)
    assert (gated - full).abs().max() > 1e-3
    widths.remove()
    with torch.no_grad():
        torch.testing.assert_close(generator(x), full)


def run_phase(env, init_fraction: float, **config) -> dict:
    game = env.game
    return search_widths({"generator": game.generator, "discriminator": game.discriminator},
                         game.spaces["generator"], game.task, budget=game.budget("generator"),
                         min_keep=game.config.min_keep, init_fraction=init_fraction,
                         config=WidthSearchConfig(**config), progress=False)


def test_training_moves_the_fractions_the_way_the_losses_ask(env):
    """Without the compute term the recipe's losses widen G (more channels, closer to the
    teacher); with it, a start far above budget is pulled down towards it."""
    game = env.game
    start = game.uniform_ratio_for_budget("generator")
    free = run_phase(env, start, steps=8, dual_lr=0.0)
    assert np.mean(free["fractions"]) > start
    assert free["multiplier"] == 0.0
    squeezed = run_phase(env, 0.6, steps=8, dual_lr=20.0)
    assert squeezed["multiplier"] > 0
    assert squeezed["ratios"][-1] < squeezed["ratios"][0]
    assert np.mean(squeezed["fractions"]) < 0.6


def test_teacher_networks_are_not_modified(env):
    game = env.game
    before = {k: v.clone() for k, v in game.generator.state_dict().items()}
    run_phase(env, 0.3, steps=2)
    for key, value in game.generator.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_agent_is_within_budget_deterministic_and_persistent(env, tmp_path):
    agent = AGENT_CLASSES["widths"]({"seed": 1, **FAST})
    logged = []
    agent.logger = lambda name, value, step: logged.append((name, step))
    tracker = SearchTracker()
    agent.learn(env, 2, tracker)
    assert logged == [("agent/generator/width_search_macs_ratio", s) for s in range(FAST["steps"])]
    best = tracker.best
    assert best.within_budget and best.compute_ratio["generator"] <= 0.1
    assert best.compute_ratio["generator"] > 0.09  # projected onto the budget, not below it
    again = LearnedWidthsAgent(seed=1, **FAST)
    again.learn(env, 1, SearchTracker())
    assert again.fractions == agent.fractions
    agent.save(tmp_path / "widths.pt")
    loaded = LearnedWidthsAgent()
    loaded.load(tmp_path / "widths.pt")
    observations, _ = env.reset(seed=0)
    for key, value in agent.act(observations).items():
        np.testing.assert_array_equal(loaded.act(observations)[key], value)
    assert loaded.fractions == agent.fractions


def test_bad_configs_and_families_are_refused(env):
    with pytest.raises(ConfigError, match="stepz"):
        LearnedWidthsAgent(stepz=3)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        LearnedWidthsAgent(steps=0)
    with pytest.raises(RuntimeError, match="no widths yet"):
        LearnedWidthsAgent().act({})
    game = env.game
    with pytest.raises(ValueError, match="Pix2Pix tasks only"):
        search_widths({}, game.spaces["generator"], get_task("default_cyclegan"), budget=0.1,
                      min_keep=0.05, init_fraction=0.3, progress=False)
