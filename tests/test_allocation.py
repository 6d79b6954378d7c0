"""benchmarks/allocation.py: the designs are what their hypotheses say (within budget, shaped
as stated), the paired difference is signed and paired, and a tiny run records, resumes and
reports."""

from __future__ import annotations

import json
import numpy as np
import pytest
from conftest import benchmark_script


@pytest.fixture(scope="module")
def al():
    with benchmark_script("allocation") as module:
        yield module


@pytest.fixture(scope="module")
def game():
    from gan_prune_env.envs import make_parallel_env

    return make_parallel_env("Pix2PixPrune-v0", budget_g=0.1, seed=0, device="cpu").game


def _kept(game, actions) -> np.ndarray:
    from gan_prune_env.envs import action_to_ratios

    ratios = action_to_ratios(np.asarray(actions["generator"], np.float64), game.config.min_keep)
    return game.ratio_counts("generator", ratios)


def test_group_costs_rank_the_output_group_dearest_and_the_bottleneck_cheapest(al, game):
    costs = al.group_costs(game)
    assert costs.shape == (game.num_groups("generator"),) and (costs > 0).all()
    # full resolution (first and last groups) is dear, the 1x1 bottleneck next to free
    assert costs.argmax() == len(costs) - 1 and costs.argmin() == len(costs) // 2


def test_designs_are_within_budget_and_shaped_as_their_hypotheses(al, game):
    from agents.budget import achieved_compute, uniform_actions
    from gan_prune_env.envs import action_to_ratios

    kept = {}
    for design in al.DESIGNS:
        actions = al.design_actions(game, design)
        for agent in ("generator", "discriminator"):
            assert achieved_compute(game, agent, actions[agent]) <= game.budget(agent) + 1e-9
        kept[design] = _kept(game, actions)
    assert (kept["uniform"] == _kept(game, uniform_actions(game))).all()
    uniform, costs = kept["uniform"], al.group_costs(game)
    # the first group wider, paid for by the others
    assert kept["first_group_x2"][0] == 2 * uniform[0] < kept["first_group_x3"][0]
    assert (kept["first_group_x3"][1:] <= uniform[1:]).all()
    # cost-aware: the cheapest group wider than uniform, the dearest narrower, more so at 0.5
    cheap, dear = costs.argmin(), costs.argmax()
    for design in ("cost_aware_0.25", "cost_aware_0.5"):
        assert kept[design][cheap] > uniform[cheap] and kept[design][dear] <= uniform[dear]
    assert kept["cost_aware_0.5"][cheap] > kept["cost_aware_0.25"][cheap]
    assert kept["cost_aware_0.5"][dear] < uniform[dear]
    # a found pair is taken exactly as it is, both networks; its shape design is rescaled
    found = al.design_actions(game, "ppo_sn_kde_seed0")
    for agent, counts in al.PPO_SN_KDE_SEED0.items():
        ratios = action_to_ratios(np.asarray(found[agent], np.float64), game.config.min_keep)
        assert game.ratio_counts(agent, ratios).tolist() == list(counts)
    shape = kept["ppo_sn_kde_seed0_shape"]
    assert shape[5] == 128 and shape.sum() > sum(al.PPO_SN_KDE_SEED0["generator"])


def test_a_design_is_ratios_or_a_found_pair(al):
    with pytest.raises(ValueError, match="not both or neither"):
        al.Design("neither")
    with pytest.raises(ValueError, match="not both or neither"):
        al.Design("both", al.uniform_ratios, kept=al.PPO_SN_KDE_SEED0)


def _record(design: str, seed: int, fid: float) -> dict:
    return {"design": design, "seed": seed,
            "finals": {"3000": {"quality": {"fid": fid, "psnr_teacher": 20.0}}}}


def test_paired_difference_is_signed_and_paired(al):
    records = [_record("uniform", 0, 170.0), _record("uniform", 1, 180.0),
               _record("uniform", 2, 175.0), _record("x", 0, 168.0), _record("x", 1, 183.0),
               _record("x", 3, 100.0)]  # seed 3 has no uniform partner: not paired
    stats = al.paired(records, "x", "fid")
    assert stats["n"] == 2 and stats["lower"] == 1
    assert stats["mean"] == pytest.approx(0.5) and stats["std"] == pytest.approx(np.std([-2, 3],
                                                                                     ddof=1))
    assert al.paired(records, "y", "fid") is None


def test_run_resume_and_report(al, tmp_path, capsys):
    argv = ["run", "--designs", "uniform", "first_group_x2", "--seeds", "0",
            "--finetune-steps", "2", "--eval-images", "4", "--out", str(tmp_path)]
    assert al.main(argv) == 0
    lines = (tmp_path / "allocation.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["key"] for r in records) == ["default|0.1|first_group_x2|0",
                                                 "default|0.1|uniform|0"]
    for r in records:
        assert r["design"] == r["arch"]["origin"] and r["seed"] == 0
        assert r["commit"] and len(r["teacher_sha1"]) == 40 and r["arch"]["within_budget"]
        assert "fid" in r["finals"]["2"]["quality"] and "reward" in r["scores"]["frozen"]
    wide = next(r for r in records if r["design"] == "first_group_x2")
    assert wide["arch"]["kept_channels"]["generator"][0] == 8
    report = (tmp_path / "allocation.md").read_text()
    assert "| `uniform` | [4, 9, 18," in report and "| `first_group_x2` | [8, " in report
    assert "(lower on " in report and (tmp_path / "allocation.png").stat().st_size > 0
    capsys.readouterr()
    assert al.main(argv) == 0  # resume: nothing left
    assert "2 finished" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="must include uniform"):
        al.main([*argv[:2], *argv[3:]])
    retrained = tmp_path / "retrained.jsonl"  # another teacher's results: no mixing
    retrained.write_text("".join(json.dumps({**r, "teacher_sha1": "f" * 40}) + "\n"
                                 for r in records))
    with pytest.raises(SystemExit, match="another teacher"):
        al.main([*argv, "--results", str(retrained)])
    with pytest.raises(SystemExit, match="design"):
        al.main(["run", "--designs", "uniform", "no_such_design", "--out", str(tmp_path)])
