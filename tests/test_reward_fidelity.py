"""benchmarks/reward_fidelity.py: its rank correlations on hand-made data, its architectures
(within budget, deterministic under the seed), and a tiny run: records, resume, report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import benchmark_script


@pytest.fixture(scope="module")
def rf():
    with benchmark_script("reward_fidelity") as module:
        yield module


@pytest.fixture(scope="module")
def env():
    from gan_prune_env.envs import make_parallel_env

    return make_parallel_env("Pix2PixPrune-v0", budget_g=0.1, seed=0, device="cpu")


# -- rank correlations -----------------------------------------------------------------------------
def test_average_ranks(rf):
    assert rf.rank_average([3.0, 1.0, 2.0, 2.0]).tolist() == [4.0, 1.0, 2.5, 2.5]
    assert rf.rank_average([5.0, 5.0, 5.0]).tolist() == [2.0, 2.0, 2.0]


def test_rank_correlations_on_hand_made_data(rf):
    up, down = [1.0, 2.0, 3.0, 4.0, 5.0], [50.0, 40.0, 30.0, 20.0, 10.0]
    for fn in (rf.spearman, rf.kendall):
        assert fn(up, [10.0, 20.0, 35.0, 41.0, 99.0]) == pytest.approx(1.0)  # perfect
        assert fn(up, down) == pytest.approx(-1.0)  # reversed
        assert math.isnan(fn(up, [7.0] * 5))  # a constant side: undefined
    # a tie: x ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    x, y = [1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]
    assert rf.spearman(x, y) == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))  # 0.9487
    # tau-b: 5 concordant, 0 discordant, 1 pair tied in x only: 5 / sqrt(5 * 6)
    assert rf.kendall(x, y) == pytest.approx(5.0 / math.sqrt(30.0))  # 0.9129
    # one swap among five: rho = 1 - 6 * 2 / (5 * 24) = 0.9, tau = (9 - 1) / 10 = 0.8
    assert rf.spearman(up, [1.0, 2.0, 4.0, 3.0, 5.0]) == pytest.approx(0.9)
    assert rf.kendall(up, [1.0, 2.0, 4.0, 3.0, 5.0]) == pytest.approx(0.8)


def test_rank_correlations_match_torchmetrics_with_ties(rf):
    import torch
    from torchmetrics.functional import kendall_rank_corrcoef, spearman_corrcoef

    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, 30).astype(float), rng.integers(0, 4, 30).astype(float)
    tx, ty = torch.tensor(x), torch.tensor(y)
    assert rf.spearman(x, y) == pytest.approx(float(spearman_corrcoef(tx, ty)), abs=1e-6)
    assert rf.kendall(x, y) == pytest.approx(float(kendall_rank_corrcoef(tx, ty, variant="b")),
                                             abs=1e-6)


def test_fidelity_is_signed_so_that_positive_means_ranked_right(rf):
    rewards = [-3.0, -2.0, -1.0, 0.0]
    good = rf.fidelity(rewards, [200.0, 190.0, 180.0, 170.0], higher_is_better=False)  # FID
    assert good["spearman"] == pytest.approx(1.0) and good["kendall"] == pytest.approx(1.0)
    assert good["spearman_ci"] == [pytest.approx(1.0)] * 2 and good["n"] == 4
    bad = rf.fidelity(rewards, [17.0, 18.0, 19.0, 20.0][::-1], higher_is_better=True)  # PSNR
    assert bad["spearman"] == pytest.approx(-1.0) and bad["kendall"] == pytest.approx(-1.0)
    # NaN metrics (e.g. an architecture without FID) are left out, not ranked
    assert rf.fidelity(rewards, [1.0, math.nan, 3.0, 4.0], True)["n"] == 3


def test_paired_difference_is_signed_and_paired(rf):
    fid = [200.0, 190.0, 180.0, 170.0, 160.0, 150.0]  # lower is better
    right = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # higher reward with lower FID: fidelity +1
    wrong = right[::-1]  # fidelity -1
    d = rf.paired_difference(right, wrong, fid, higher_is_better=False, resamples=200)
    assert d["n"] == 6 and d["diff"] == pytest.approx(2.0)
    assert d["ci"][0] > 0  # every resample ranks A above B
    back = rf.paired_difference(wrong, right, fid, higher_is_better=False, resamples=200)
    assert back["diff"] == pytest.approx(-2.0) and back["ci"][1] < 0
    same = rf.paired_difference(right, right, fid, higher_is_better=False, resamples=200)
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0]  # paired: identical resamples


def test_seed_agreement_is_the_noise_ceiling(rf):
    def record(i: int, seed: int, fid: float) -> dict:
        quality = {"fid": fid, "kid": fid / 1000, "psnr": 30 - fid / 10, "psnr_teacher": 1.0 * i}
        return {"key": f"k{i}", "seed": seed, "arch": {"kept_channels": {"generator": [i]}},
                "finals": {"2": {"quality": quality}}}

    archs = [record(i, 0, 200.0 + i) for i in range(5)]
    same = {r["key"]: r for r in (record(i, 1, 190.0 + 2 * i) for i in range(5))}
    ceiling = rf.seed_agreement(archs, same, 2)
    assert ceiling["seeds"] == [0, 1] and ceiling["by_metric"]["fid"]["spearman"] == 1.0
    reversed_ = {r["key"]: r for r in (record(i, 1, 300.0 - i) for i in range(5))}
    assert rf.seed_agreement(archs, reversed_, 2)["by_metric"]["fid"]["spearman"] == -1.0
    assert rf.seed_agreement(archs, {k: same[k] for k in ("k0", "k1")}, 2) is None
    other = dict(same, k3={**same["k3"], "arch": {"kept_channels": {"generator": [9]}}})
    with pytest.raises(SystemExit, match="another architecture"):
        rf.seed_agreement(archs, other, 2)
    lines = "\n".join(rf._ceiling_lines([ceiling], 2))
    assert "**Noise ceiling**" in lines and "| 0 vs 1 | FID | 5 | +1.00" in lines
    assert "| 1.00 / 1.00 |" in lines  # seeds that agree exactly: an exact predictor reaches 1


def test_fidelity_against_the_seeds_mean(rf):
    """A reward that ranks architectures by their expected quality (the mean over fine-tuning
    seeds) is exact against that mean, though each seed alone reorders two pairs."""
    def record(i: int, seed: int, fid: float) -> dict:
        quality = {"fid": fid, "kid": fid / 1000, "psnr": 30 - fid / 10, "psnr_teacher": -fid}
        return {"key": f"k{i}", "seed": seed, "arch": {"kept_channels": {"generator": [i]}},
                "scores": {"frozen": {"reward": -float(i)}}, "finals": {"2": {"quality": quality}}}

    noise = [0.0, 3.0, 0.0, 3.0, 0.0]
    archs = [record(i, 0, 200.0 + 2 * i + noise[i]) for i in range(5)]
    replica = {f"k{i}": record(i, 1, 200.0 + 2 * i - noise[i]) for i in range(5)}
    against_mean = rf.seed_mean_fidelity(archs, [replica], 2)
    assert against_mean["seeds"] == [0, 1]
    assert against_mean["by_mode"]["frozen"]["fid"]["spearman"] == 1.0
    assert against_mean["by_mode"]["frozen"]["psnr_teacher"]["spearman"] == 1.0
    one_seed = rf.fidelity([r["scores"]["frozen"]["reward"] for r in archs],
                           [r["finals"]["2"]["quality"]["fid"] for r in archs], False)
    assert one_seed["spearman"] < 0.9
    assert rf.seed_mean_fidelity(archs, [], 2) is None
    assert rf.seed_mean_fidelity(archs, [{"k0": replica["k0"]}], 2) is None
    lines = "\n".join(rf._seed_mean_lines(against_mean))
    assert "seeds 0, 1" in lines and "| frozen | +1.00" in lines


def test_bootstrap_interval_is_seeded_and_covers_the_estimate(rf):
    rng = np.random.default_rng(0)
    x = rng.normal(size=16)
    y = x + rng.normal(size=16)
    first = rf.bootstrap_ci(x, y, rf.spearman)
    assert first == rf.bootstrap_ci(x, y, rf.spearman)
    assert first[0] < rf.spearman(x, y) < first[1] and first[1] - first[0] > 0.1
    assert all(math.isnan(v) for v in rf.bootstrap_ci(x[:2], y[:2], rf.spearman))


# -- architectures -------------------------------------------------------------------------------
def test_architectures_are_within_budget_distinct_and_seeded(rf, env):
    from agents.budget import achieved_compute, uniform_actions

    archs = rf.plan_architectures(env, 5, seed=0)
    assert archs == rf.plan_architectures(env, 5, seed=0)  # deterministic
    assert archs[:3] == rf.plan_architectures(env, 3, seed=0)  # a longer plan extends a shorter
    other = rf.plan_architectures(env, 5, seed=1)
    assert other[0] == archs[0] and other[1:] != archs[1:]
    assert [a["origin"] for a in archs] == ["uniform"] + ["random"] * 4
    uniform = uniform_actions(env.game)
    assert all(np.array_equal(np.float32(archs[0]["actions"][a]), uniform[a]) for a in uniform)
    signatures = {json.dumps(a["kept_channels"]) for a in archs}
    assert len(signatures) == 5
    for arch in archs:
        for agent, budget in (("generator", 0.1), ("discriminator", 0.5)):
            ratio = achieved_compute(env.game, agent, np.float32(arch["actions"][agent]))
            assert ratio == pytest.approx(arch["compute_ratio"][agent]) and ratio <= budget
        # the env agrees: same counts, within both budgets
        env.reset(seed=0)
        _, _, _, _, infos = env.step({a: np.float32(v) for a, v in arch["actions"].items()})
        for agent in ("generator", "discriminator"):
            assert infos[agent]["kept_channels"] == arch["kept_channels"][agent]
            assert infos[agent]["within_budget"]
    # random pairs are not the uniform one in disguise: their keep ratios vary across groups
    assert np.std(archs[1]["actions"]["generator"]) > 0.05


# -- the benchmark end to end --------------------------------------------------------------------
def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_resume_and_report(rf, env, tmp_path, capsys):
    from agents.budget import uniform_actions

    argv = ["run", "--budgets", "0.1", "--archs", "3", "--finetune-steps", "2",
            "--distill-steps", "2", "--eval-images", "4", "--check-steps", "1",
            "--check-archs", "2", "--workers", "1", "--out", str(tmp_path)]
    assert rf.main(argv) == 0
    out = capsys.readouterr().out
    results = tmp_path / "reward_fidelity.jsonl"
    records = _lines(results)
    keys = [f"default|0.1|0|{i}" for i in range(3)]
    assert sorted(r["key"] for r in records) == keys
    for key in keys:  # progress per architecture
        assert f" {key} (" in out
    for r in sorted(records, key=lambda r: r["index"]):
        assert r["commit"] and len(r["teacher_sha1"]) == 40
        assert r["arch"]["within_budget"] and r["arch"]["compute_ratio"]["generator"] <= 0.1
        frozen, distill = r["scores"]["frozen"], r["scores"]["distill_k"]
        assert {"g_loss", "g_adv", "g_kde", "g_rec", "reward_loss", "d_loss"} <= set(frozen)
        assert frozen["reward"] == pytest.approx(frozen["reward_loss"] + frozen["reward_compute"])
        assert distill["options"]["k"] == 2 and distill["reward"] == -distill["l1_teacher"]
        assert frozen["wall_s"] > 0 and distill["wall_s"] > 0
        lengths = {"2", "1"} if r["index"] < 2 else {"2"}
        assert set(r["finals"]) == lengths
        for final in r["finals"].values():
            assert {"fid", "kid", "psnr", "psnr_teacher"} <= set(final["quality"])
            assert final["eval_images"] == 4 and "fid" in final["teacher_quality"]
    # the frozen reward is what an agent gets from the env for that architecture
    uniform = next(r for r in records if r["index"] == 0)
    env.reset(seed=0)
    _, rewards, _, _, _ = env.step(uniform_actions(env.game))
    assert uniform["scores"]["frozen"]["reward"] == pytest.approx(rewards["generator"])

    report = (tmp_path / "reward_fidelity.md").read_text()
    assert "| mode | metric | n | Spearman fidelity [95% CI] | Kendall fidelity [95% CI] |" \
        in report
    assert "positive = the reward ranks architectures as fine-tuning does" in report
    assert "| frozen | FID | 3 |" in report and "| distill_k | PSNR-T | 3 |" in report
    assert "**Length check**" in report and "| 1 | 2 | FID | 2 |" in report
    assert (tmp_path / "reward_fidelity.png").stat().st_size > 0
    summary = json.loads((tmp_path / "reward_fidelity.json").read_text())["default|0.1"]
    fid = [r["finals"]["2"]["quality"]["fid"] for r in sorted(records, key=lambda r: r["index"])]
    reward = [r["scores"]["frozen"]["reward"]
              for r in sorted(records, key=lambda r: r["index"])]
    assert summary["fidelity"]["frozen"]["fid"]["spearman"] == pytest.approx(
        rf.spearman(reward, [-v for v in fid]))

    assert rf.main(argv) == 0  # resume: nothing left to run
    assert "3 finished" in capsys.readouterr().out and len(_lines(results)) == 3
    assert rf.main([*argv, "--modes", "frozen", "--no-report"]) == 0  # a subset: done too
    assert len(_lines(results)) == 3
    for change, message in ((["--distill-steps", "3"], "mode distill_k options"),
                            (["--eval-images", "5"], "eval_images"),
                            (["--seed", "1"], "fine-tuning seed"),
                            (["--recipe", "autocast:bfloat16"], "mode distill_k options"),
                            (["--modes", "frozen", "--recipe", "autocast:bfloat16"],
                             "the fine-tuning recipe"),
                            (["--recipe", "autocats:bfloat16"], "autocats")):
        with pytest.raises(SystemExit, match=message):  # same key, another protocol
            rf.main([*argv, *change])
    # another recipe (--recipe) runs the final fine-tunes and distill_k with its changes
    bf16 = tmp_path / "bf16.jsonl"
    assert rf.main([*argv, "--only", "1", "--recipe", "autocast:bfloat16", "--results",
                    str(bf16), "--no-report"]) == 0
    [changed] = _lines(bf16)
    assert changed["scores"]["distill_k"]["options"]["recipe"] == {"autocast": "bfloat16"}
    plain = next(r for r in records if r["index"] == 1)  # same architecture and seed, float32
    assert changed["scores"]["distill_k"]["reward"] != plain["scores"]["distill_k"]["reward"]
    assert {final["finetune"]["autocast"] for final in changed["finals"].values()} == \
        {"bfloat16"}
    assert {final["finetune"]["autocast"] for r in records for final in r["finals"].values()} \
        == {None}
    # more fine-tuning seeds for a chosen few: only those, the same architectures
    only = tmp_path / "seed1.jsonl"
    assert rf.main([*argv, "--only", "2", "--seed", "1", "--results", str(only),
                    "--no-report"]) == 0
    [again] = _lines(only)
    assert again["key"] == "default|0.1|0|2" and again["seed"] == 1
    assert again["arch"] == next(r for r in records if r["index"] == 2)["arch"]
    with pytest.raises(SystemExit, match="--only"):
        rf.main([*argv, "--only", "3"])
    retrained = tmp_path / "retrained.jsonl"  # a new architecture of another teacher: refused
    retrained.write_text(json.dumps({**records[0], "key": "default|0.1|0|9",
                                     "teacher_sha1": "f" * 40}) + "\n")
    with pytest.raises(SystemExit, match="another teacher"):
        rf.main([*argv, "--results", str(retrained)])
    assert rf.main(["report", "--out", str(tmp_path / "again"), "--results", str(results)]) == 0
    # a pooled report: two results files (the uniform pair in both, counted once) and one
    # fine-tuning seed's replica spread over two files, which form ONE replica (by their seed)
    by_index = {r["index"]: r for r in records}
    first, second = tmp_path / "pool_a.jsonl", tmp_path / "pool_b.jsonl"
    first.write_text("".join(json.dumps(by_index[i]) + "\n" for i in (0, 1)))
    again_uniform = {**by_index[0], "key": "default|0.1|1|0", "arch_seed": 1}
    second.write_text("".join(json.dumps(r) + "\n" for r in (by_index[2], again_uniform)))
    rest = tmp_path / "seed1_rest.jsonl"
    rest.write_text("".join(json.dumps({**by_index[i], "seed": 1}) + "\n" for i in (0, 1)))
    assert rf.main(["report", "--out", str(tmp_path / "pooled"), "--results", str(first),
                    str(second), "--replica", str(only), "--replica", str(rest)]) == 0
    pooled = (tmp_path / "pooled" / "reward_fidelity.md").read_text()
    assert "| frozen | FID | 3 |" in pooled and "| 0 vs 1 | FID | 3 |" in pooled
    assert "pool_a.jsonl`, `" in pooled
    assert (tmp_path / "again" / "reward_fidelity.md").read_text() == report

    # a new mode on finished architectures scores only that mode: the supernet's reward
    with pytest.raises(SystemExit, match="needs --supernet default=PATH"):
        rf.main([*argv, "--modes", "supernet"])
    from gan_prune_env.envs import GANPruneParallelEnv
    from gan_prune_env.supernet import SupernetConfig, train_supernet
    from gan_prune_env.tasks import get_task

    supernet = train_supernet(get_task("default"), SupernetConfig(steps=2, batch_size=2),
                              tmp_path / "supernet", progress=False)
    assert rf.main([*argv, "--modes", "supernet", "--supernet", f"default={supernet}",
                    "--no-report"]) == 0
    merged = rf.merge_records(_lines(results))
    assert len(_lines(results)) == 6 and all("supernet" in r["scores"] for r in merged.values())
    scored = merged["default|0.1|0|0"]["scores"]["supernet"]
    shared = GANPruneParallelEnv(budget_g=0.1, seed=0, device="cpu", supernet=str(supernet))
    shared.reset(seed=0)
    _, rewards, _, _, _ = shared.step(uniform_actions(shared.game))
    assert scored["reward"] == pytest.approx(rewards["generator"])
    assert scored["reward"] != merged["default|0.1|0|0"]["scores"]["frozen"]["reward"]
    assert len(scored["options"]["sha1"]) == 40

    # the density term alone (with the supernet's weights, and the teacher's), and G judged
    # by the whole D: each the env's own reward under that option or action
    assert rf.main([*argv, "--modes", "supernet_kde", "frozen_kde", "supernet_full_d",
                    "--supernet", f"default={supernet}", "--no-report"]) == 0
    scores = rf.merge_records(_lines(results))["default|0.1|0|0"]["scores"]
    from compare.spec import DENSITY_ALONE

    uniform = uniform_actions(shared.game)
    whole_d = {**uniform, "discriminator": np.ones_like(uniform["discriminator"])}
    for mode, env_options, actions in (
            ("supernet_kde", {"supernet": str(supernet), "objective": DENSITY_ALONE}, uniform),
            ("frozen_kde", {"objective": DENSITY_ALONE}, uniform),
            ("supernet_full_d", {"supernet": str(supernet)}, whole_d)):
        judge = GANPruneParallelEnv(budget_g=0.1, seed=0, device="cpu", **env_options)
        judge.reset(seed=0)
        _, rewards, _, _, _ = judge.step(actions)
        assert scores[mode]["reward"] == pytest.approx(rewards["generator"]), mode
    for mode in ("supernet_kde", "frozen_kde"):  # L_G is the KL and nothing else
        assert scores[mode]["g_loss"] == pytest.approx(10 * scores[mode]["g_kde"])
    assert scores["frozen_kde"]["reward"] == pytest.approx(-1.0)  # scaled by the uniform pair
    assert scores["supernet_full_d"]["g_adv"] != scores["supernet"]["g_adv"]

    # another length of distill_k, beside the default one: its own name, its own k
    assert rf.main([*argv, "--modes", "distill_k@3", "--no-report"]) == 0
    merged = rf.merge_records(_lines(results))
    assert len(_lines(results)) == 12
    for record in merged.values():
        longer, default = record["scores"]["distill_k@3"], record["scores"]["distill_k"]
        assert longer["options"]["k"] == 3 and default["options"]["k"] == 2
        assert longer["reward"] == -longer["l1_teacher"] != default["reward"]
    stats = rf.group_stats(rf._distinct(list(merged.values())))
    assert {"distill_k", "distill_k@3"} <= set(stats["fidelity"])
    assert rf.mode_label("distill_k@3").endswith("(k = 3)")

    # the frozen reward on more neighbourhoods: the env's reward with that eval_size
    assert rf.main([*argv, "--modes", "frozen_pool", "--pool-eval-size", "20",
                    "--no-report"]) == 0
    pooled = rf.merge_records(_lines(results))["default|0.1|0|0"]["scores"]["frozen_pool"]
    wider = GANPruneParallelEnv(budget_g=0.1, seed=0, device="cpu", eval_size=20)
    wider.reset(seed=0)
    _, rewards, _, _, _ = wider.step(uniform_actions(wider.game))
    assert pooled["options"]["eval_size"] == 20
    assert pooled["reward"] == pytest.approx(rewards["generator"])
    assert pooled["reward"] != merged["default|0.1|0|0"]["scores"]["frozen"]["reward"]

    # GAN Compression's metric: -FID, on training images, of the slice from the supernet (and,
    # for comparison, from the teacher), BatchNorm re-estimated as the env does, no fine-tune
    assert rf.main([*argv, "--modes", "supernet_fid", "frozen_fid", "--supernet",
                    f"default={supernet}", "--slice-fid-images", "4", "--no-report"]) == 0
    scores = rf.merge_records(_lines(results))["default|0.1|0|0"]["scores"]
    from agents.base import Candidate
    from agents.run.artifacts import MAIN, recalibrated_generator, slice_pair
    from compare.cells import fid_inception
    from gan_prune_env.evaluation import evaluate_generator

    for mode, env_options, source in (("supernet_fid", {"supernet": str(supernet)}, "supernet"),
                                      ("frozen_fid", {}, "teacher")):
        scored = scores[mode]
        assert scored["options"]["split"] == "train" and scored["options"]["images"] == 4
        judge = GANPruneParallelEnv(budget_g=0.1, seed=0, device="cpu", **env_options)
        judge.reset(seed=0)
        _, rewards, _, _, infos = judge.step(uniform_actions(judge.game))
        pair = slice_pair(judge, Candidate.from_infos(0, infos, rewards), "cpu", source)
        task = judge.game.task
        quality = evaluate_generator(recalibrated_generator(pair, judge), task.data, task.family,
                                     "train", teacher=pair.teacher[MAIN[task.family][0]],
                                     max_images=4, progress=False, fid_weights=fid_inception())
        assert scored["reward"] == pytest.approx(-quality["fid"], rel=1e-4)
        assert scored["fid"] == pytest.approx(quality["fid"], rel=1e-4)
    assert scores["supernet_fid"]["reward"] != scores["frozen_fid"]["reward"]

    # the first k steps of the recipe, then -FID on training images of the fine-tuned G (its
    # own BatchNorm statistics, as the final model is evaluated)
    assert rf.main([*argv, "--modes", "distill_fid@2", "--slice-fid-images", "4",
                    "--no-report"]) == 0
    scored = rf.merge_records(_lines(results))["default|0.1|0|0"]["scores"]["distill_fid@2"]
    assert scored["options"]["k"] == 2 and scored["options"]["images"] == 4
    from agents.run.finetune_ranks import finetune_sliced_pair

    judge = GANPruneParallelEnv(budget_g=0.1, seed=0, device="cpu")
    judge.reset(seed=0)
    _, rewards, _, _, infos = judge.step(uniform_actions(judge.game))
    pair = slice_pair(judge, Candidate.from_infos(0, infos, rewards), "cpu")
    finetune_sliced_pair(pair, judge, rf.recipe_config(2), tmp_path / "independent", 0, "cpu",
                         progress=False)
    task = judge.game.task
    quality = evaluate_generator(pair.networks[MAIN[task.family][0]], task.data, task.family,
                                 "train", teacher=pair.teacher[MAIN[task.family][0]],
                                 max_images=4, progress=False, fid_weights=fid_inception())
    assert scored["reward"] == pytest.approx(-quality["fid"], rel=1e-4)
    assert scored["reward"] != scores["frozen_fid"]["reward"]  # the steps changed the slice


def test_a_length_only_for_modes_that_take_one(rf):
    """``NAME@STEPS`` names distill_k at another k; anything else stops with what to write."""
    assert rf.reward_mode("distill_k") == (rf.REWARD_MODES["distill_k"], None)
    assert rf.reward_mode("distill_k@300") == (rf.REWARD_MODES["distill_k"], 300)
    for name, message in (("frozen@3", "take a length"), ("distill_k@0", "whole number"),
                          ("distill_k@x", "whole number"), ("distil_k", "unknown mode")):
        with pytest.raises(SystemExit, match=message):
            rf.reward_mode(name)


def test_an_option_added_after_a_record_counts_as_its_default(rf):
    """Records written before the env grew ``evaluation`` (or the recipe ``input_mix``) still
    match a run that leaves them at their defaults, and no other difference passes."""
    recorded = {"budget_g": 0.1, "objective": {"k": 4}}
    defaults = {"budget_g": 0.25, "evaluation": "masked", "objective": {"k": 4}}
    assert rf.same_protocol(recorded, {**recorded, "evaluation": "masked"}, defaults)
    assert not rf.same_protocol(recorded, {**recorded, "evaluation": "sliced"}, defaults)
    assert not rf.same_protocol(recorded, {**recorded, "budget_g": 0.2}, defaults)
    assert not rf.same_protocol({**recorded, "gone": 1}, recorded, defaults)
    assert not rf.same_protocol(recorded, {**recorded, "new": 1}, defaults)  # no default known


def test_balance_is_zero_for_the_uniform_architecture_and_falls_with_lopsidedness(rf, env):
    """The ``balance`` predictor: -log(max/min kept fraction) of G's groups."""
    from types import SimpleNamespace

    full = env.game.spaces["generator"].num_channels
    lopsided = full // 2
    lopsided[0] = max(1, full[0] // 8)

    def balance(kept) -> float:
        arch = SimpleNamespace(env=env, candidate=SimpleNamespace(
            kept_channels={"generator": [int(k) for k in kept]}))
        return rf.score_balance(arch, {})["reward"]

    assert balance(full // 2) == pytest.approx(0.0)
    assert balance(lopsided) == pytest.approx(-math.log((full[1] // 2 / full[1])
                                                        / (lopsided[0] / full[0])))
    assert balance(lopsided) < balance(full // 2)


# -- the learned predictor (benchmarks/reward_predictor.py) -------------------------------------
def _synthetic_records(path: Path, arch_seed: int, count: int, fid_of, seed: int) -> None:
    """Reward-fidelity records of ``count`` architectures (index 0 uniform) whose final FID is
    ``fid_of(log kept fractions relative to uniform)``."""
    rng = np.random.default_rng(seed)
    uniform = np.array([4, 9, 18, 36, 36, 18, 9, 4])
    lines = []
    for index in range(count):
        kept = uniform if index == 0 else rng.integers(1, 2 * uniform + 1)
        lines.append(json.dumps({
            "key": f"default|0.1|{arch_seed}|{index}", "task": "default", "budget": 0.1,
            "arch_seed": arch_seed, "index": index,
            "arch": {"origin": "uniform" if index == 0 else "random",
                     "kept_channels": {"generator": [int(k) for k in kept]}},
            "scores": {"frozen": {"reward": float(rng.normal())}},
            "finals": {"3000": {"quality": {"fid": float(fid_of(np.log(kept / uniform)))}}},
            "commit": "c" * 40, "teacher_sha1": "t" * 40}))
    path.write_text("\n".join(lines) + "\n")


def test_the_learned_predictor_ranks_fresh_architectures_it_can_learn(tmp_path):
    """FID made a linear function of the kept fractions: a fit on one arch seed must rank
    another's at nearly +1 (a flipped sign scores -1), the uniform architecture both sets share
    is left out of the test set, and a mode missing from the records is an error."""
    def fid_of(log_fractions):  # narrow outer layers and a narrow bottleneck hurt
        return 180 - 6 * log_fractions[0] - 6 * log_fractions[-1] - 4 * log_fractions[3]

    _synthetic_records(tmp_path / "train.jsonl", 0, 16, fid_of, seed=0)
    _synthetic_records(tmp_path / "test.jsonl", 1, 10, fid_of, seed=1)
    with benchmark_script("reward_predictor") as predictor:
        argv = ["--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl"),
                "--out", str(tmp_path / "out")]
        assert predictor.main(argv) == 0
        result = json.loads((tmp_path / "out" / "reward_predictor.json").read_text())
        assert result["test"]["n"] == 9  # the uniform architecture is not fresh
        assert result["test"]["spearman"] > 0.9 and result["train"]["spearman"] > 0.9
        assert "| fresh architectures (test set) | 9 |" in (
            tmp_path / "out" / "reward_predictor.md").read_text()
        with pytest.raises(SystemExit, match="distill_k"):
            predictor.main([*argv, "--modes", "distill_k"])
        with pytest.raises(SystemExit, match="another --arch-seed"):
            predictor.main(["--train", str(tmp_path / "train.jsonl"), "--test",
                            str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "out")])
