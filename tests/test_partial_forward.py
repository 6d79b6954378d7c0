"""Passes cut after the last layer they need: the same values, bit for bit, for less work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gan_prune_env.envs.config import EnvConfig
from gan_prune_env.envs.game import PruningGame
from gan_prune_env.models.partial_forward import ForwardCut


class _Counted(nn.Module):
    """Identity that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x + 1


def test_a_cut_pass_stops_after_the_last_needed_layer_and_keeps_its_side_effects():
    first, needed, after = _Counted(), _Counted(), _Counted()
    net = nn.Sequential(first, needed, after)
    seen: list[torch.Tensor] = []
    needed.register_forward_hook(lambda _m, _i, out: seen.append(out))
    cut = ForwardCut([first, needed])
    cut(lambda: net(torch.zeros(1)))  # learns: runs whole
    assert cut.last is needed and after.calls == 1
    cut(lambda: net(torch.zeros(1)))
    assert (first.calls, needed.calls, after.calls) == (2, 2, 1)
    assert [float(s) for s in seen] == [2.0, 2.0]  # the hook registered before the cut still ran


def test_a_layer_run_twice_is_no_cut_point():
    """Cut after its first call, its second would never run."""
    shared, after = _Counted(), _Counted()
    net = nn.Sequential(shared, shared, after)
    cut = ForwardCut([shared])
    for _ in range(2):
        cut(lambda: net(torch.zeros(1)))
    assert cut.last is None and (shared.calls, after.calls) == (4, 2)


@pytest.mark.parametrize("evaluation", ["masked", "sliced"])
def test_recalibration_skips_the_layers_after_gs_last_norm_and_measures_the_same(evaluation):
    """The game's adaptive BN stops after G's last norm (the outermost up-convolution never
    runs), and its statistics are those of a whole pass: a cut at an earlier norm, or none at
    all, turns this red."""
    torch.set_num_threads(1)
    game = PruningGame(EnvConfig(evaluation=evaluation))
    outermost = game.generator.model.model[3]
    assert isinstance(outermost, nn.ConvTranspose2d)
    calls = []
    outermost.register_forward_hook(lambda *_: calls.append(1))
    counts = game.spaces["generator"].counts_for_ratios(np.full(game.num_groups("generator"), 0.5))
    game.generator_outputs(counts, 1)  # learns the cut: whole recalibration, then the output
    calls.clear()
    cut_outputs = game.generator_outputs(counts, 4)
    assert len(calls) == 1  # the evaluation's pass, not the recalibration's
    norms = [m for m in game.generator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert game._calibration_pass.last is norms[-1]
    game._calibration_pass = ForwardCut([])  # every pass whole
    assert torch.equal(game.generator_outputs(counts, 4), cut_outputs)


def test_the_discriminator_features_skip_ds_verdict_and_pool_the_same():
    game = PruningGame(EnvConfig())
    features = game.objective.feature_map.base
    last_conv = [m for m in features.net.modules() if isinstance(m, nn.Conv2d)][-1]
    calls = []
    last_conv.register_forward_hook(lambda *_: calls.append(1))
    images, inputs = game.eval_batch.outputs[:3], game.eval_batch.inputs[:3]
    with torch.no_grad():
        cut = features(images, inputs)  # the game's pool taught it the cut
        assert not calls and features._pass.last is features._taps[-1]
        features._pass = ForwardCut([])  # every pass whole
        whole = features(images, inputs)
    assert len(calls) == 1 and torch.equal(whole, cut)
