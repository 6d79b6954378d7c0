"""The pipeline's screen: which candidates it scores, which one it keeps, and resumption."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from agents.base import Candidate
from agents.run import screen
from agents.run.cli import main
from agents.run.config import RunConfig, ScreenConfig
from agents.run.search import read_best, run_search
from gan_prune_env.config import from_dict, load_yaml
from gan_prune_env.envs import make_parallel_env
from tests.test_cli import run_dir_of, tiny_config


def candidate(round_: int, g: list[int], reward: float, within: bool = True,
              error: str = "") -> Candidate:
    return Candidate(round=round_, kept_channels={"generator": g, "discriminator": [4, 4]},
                     keep_ratios={"generator": [], "discriminator": []},
                     compute_ratio={"generator": 0.1, "discriminator": 0.5},
                     rewards={"generator": reward, "discriminator": 0.0}, loss_terms={},
                     within_budget=within, error=error)


def test_the_uniform_pair_then_the_best_distinct_feasible_rewards_are_screened() -> None:
    uniform = candidate(screen.UNIFORM_ROUND, [2, 2], -1.0)
    history = [candidate(0, [1, 3], -0.5), candidate(1, [3, 1], -0.2),
               candidate(2, [2, 2], 0.9),             # the uniform pair again: not twice
               candidate(3, [1, 1], 5.0, within=False),  # over budget: never
               candidate(4, [3, 3], 9.0, error="nan"),   # failed round: never
               candidate(5, [3, 1], -0.2),            # the same pair as round 1: not twice
               candidate(6, [4, 1], -0.2)]            # ties round 1's reward: after it
    picked = screen.candidates_to_screen(history, uniform, count=4)
    assert [c.round for c in picked] == [screen.UNIFORM_ROUND, 1, 6, 0]
    assert [c.round for c in screen.candidates_to_screen(history, uniform, 2)] == [-1, 1]
    assert len(screen.candidates_to_screen(history, uniform, 10)) == 4  # all there is


@pytest.fixture
def searched(tmp_path: Path):
    """A finished 4-round random search of a tiny run, screened over 3 candidates."""
    config = from_dict(RunConfig, load_yaml(tiny_config(tmp_path, "random", rounds=4)))
    config.screen = ScreenConfig(candidates=3, distill_steps=2)
    env = make_parallel_env(config.env, **config.env_kwargs)
    run = tmp_path / "run"
    writer = SummaryWriter(str(tmp_path / "tb"))
    search_best = run_search(config, env, run, writer)
    yield config, env, run, writer, search_best
    writer.close()


def rigged_scores(run: Path, env, config: RunConfig, search_best: Candidate, worst: float,
                  best: float) -> tuple[list[Candidate], Candidate, dict[str, float]]:
    """The 3 candidates the screen scores, one of them (not the search's pick) rigged to score
    ``best``, the others from ``worst`` up: (candidates, that one, score by :func:`kept_key`)."""
    todo = screen.candidates_to_screen(screen.read_history(run),
                                       screen.uniform_candidate(env, config.search.seed), 3)
    wanted = next(c for c in todo[1:] if c.kept_channels != search_best.kept_channels)
    scores = {json.dumps(c.kept_channels): worst + i for i, c in enumerate(todo)}
    scores[json.dumps(wanted.kept_channels)] = best
    return todo, wanted, scores


def kept_key(pair) -> str:
    """A sliced pair's kept channel counts, as :func:`rigged_scores` keys them."""
    return json.dumps({a: [len(i) for i in pair.kept[a].values()]
                       for a in ("generator", "discriminator")})


def test_the_pair_with_the_lowest_distilled_l1_is_kept_and_scores_resume(searched, monkeypatch
                                                                          ) -> None:
    """The screen keeps the lowest L1 to the teacher whatever the env's reward said, writes it
    as the run's found pair, and a second call scores nothing again."""
    config, env, run, writer, search_best = searched
    todo, wanted, l1 = rigged_scores(run, env, config, search_best, worst=0.5, best=0.1)
    assert len(todo) == 3 and todo[0].round == screen.UNIFORM_ROUND
    calls = []

    def fake_agreement(pair, env_, recipe, seed, work_dir, device):
        calls.append(recipe.steps)
        return {"l1_teacher": l1[kept_key(pair)], "psnr_teacher": 20.0}

    monkeypatch.setattr(screen, "distilled_agreement", fake_agreement)
    pick = screen.run_screen(config, env, run, writer)
    assert pick.kept_channels == wanted.kept_channels
    assert read_best(run).kept_channels == wanted.kept_channels
    assert calls == [2, 2, 2]  # the screen's steps, once per candidate
    assert screen.run_screen(config, env, run, writer).kept_channels == wanted.kept_channels
    assert len(calls) == 3  # resumed: nothing scored twice
    config.screen = ScreenConfig(candidates=3, distill_steps=3)  # another protocol: afresh
    screen.run_screen(config, env, run, writer)
    assert calls[3:] == [3, 3, 3]


def test_the_distilled_score_moves_with_the_steps_and_matches_the_teacher_at_zero(searched
                                                                                   ) -> None:
    """The score is the pair's G against the teacher after the recipe: the unpruned pair
    agrees exactly without training, and training a pruned one changes its score."""
    from agents.run.artifacts import slice_pair

    config, env, run, _, search_best = searched
    spaces = env.game.spaces
    full = candidate(0, spaces["generator"].num_channels.tolist(), 0.0)
    full.kept_channels["discriminator"] = spaces["discriminator"].num_channels.tolist()
    teacher_pair = slice_pair(env, full, "cpu")
    same = screen.teacher_agreement(teacher_pair.networks["generator"], env)
    assert same["l1_teacher"] < 1e-6
    before = screen.teacher_agreement(slice_pair(env, search_best, "cpu").networks["generator"],
                                      env)
    after = screen.distilled_agreement(slice_pair(env, search_best, "cpu"), env,
                                       screen.screen_recipe(config.finetune, 2),
                                       config.search.seed, run / "screen", "cpu")
    assert after["l1_teacher"] != pytest.approx(before["l1_teacher"], abs=1e-6)
    assert not any((run / "screen").iterdir())  # the scratch fine-tune is removed


def test_the_distill_fid_screen_keeps_the_lowest_fid_after_the_screen_steps(searched,
                                                                            monkeypatch) -> None:
    """``score: distill_fid`` fine-tunes each candidate for the screen's steps, keeps the lowest
    FID whatever its L1 to the teacher or the env's reward said, and keeps its scores apart
    from an L1 screen's."""
    config, env, run, writer, search_best = searched
    config.screen = ScreenConfig(candidates=3, distill_steps=2, score="distill_fid",
                                 fid_images=4)
    _, wanted, fids = rigged_scores(run, env, config, search_best, worst=200.0, best=150.0)
    calls = []

    def fake_quality(pair, env_, recipe, seed, work_dir, device, images, fid_weights):
        calls.append((recipe.steps, images, fid_weights is not None))
        fid = fids[kept_key(pair)]
        return {"fid": fid, "kid": 0.0, "psnr": 0.0, "psnr_teacher": 0.0,
                "l1_teacher": 1000.0 - fid}  # the L1 ranks the other way round: not used

    monkeypatch.setattr(screen, "distilled_quality", fake_quality)
    pick = screen.run_screen(config, env, run, writer)
    assert pick.kept_channels == wanted.kept_channels == read_best(run).kept_channels
    assert calls == [(2, 4, True)] * 3
    assert screen.screen_file(run, config) != screen.screen_file(
        run, dataclasses.replace(config, screen=ScreenConfig(candidates=3, distill_steps=2)))


def test_a_run_with_a_screen_fine_tunes_the_pick_and_reports_the_scores(tmp_path: Path,
                                                                        capsys) -> None:
    """End to end: the screened pick is the run's found pair, and ``validate`` replays it
    (the uniform pair's reward too, played from the run's seed)."""
    from agents.run.validate import main as validate

    conf = tiny_config(tmp_path, "random", rounds=4)
    assert main(["-conf", str(conf), "-f", str(tmp_path / "logs"), "--screen", "2",
                 "--screen-steps", "2"]) == 0
    run = run_dir_of(tmp_path / "logs", "random")
    results = json.loads((run / "results.json").read_text())
    scores = results["screen"]["scores"]
    assert len(scores) == 2 and scores[0]["round"] == screen.UNIFORM_ROUND
    best = min(scores, key=lambda s: s["l1_teacher"])
    assert results["screen"]["pick_round"] == best["round"]
    assert read_best(run).kept_channels == best["kept_channels"]
    capsys.readouterr()
    assert validate([str(run)]) == 0
    assert "1 of 1 pairs validated" in capsys.readouterr().out


@pytest.mark.parametrize("fields, message", [
    ({"candidates": 1}, "0 \\(off\\) or >= 2"), ({"candidates": -2}, "0 \\(off\\) or >= 2"),
    ({"candidates": 4, "distill_steps": 0}, "distill_steps must be >= 1"),
    ({"candidates": 4, "score": "fid"}, "score must be one of"),
    ({"candidates": 4, "fid_images": 1}, "fid_images must be >= 2")])
def test_bad_screen_settings_are_refused(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        ScreenConfig(**fields)


def test_the_supernet_fid_screen_keeps_the_lowest_fid_of_the_supernet_slices(
        tmp_path: Path, monkeypatch) -> None:
    """``score: supernet_fid`` scores each candidate sliced from the env's supernet (not the
    teacher), keeps the lowest FID whatever the env's reward said, and keeps its scores apart
    from a distillation screen's."""
    import torch

    from agents.run.artifacts import slice_pair
    from gan_prune_env.supernet import SupernetConfig, train_supernet
    from gan_prune_env.tasks import get_task

    supernet = train_supernet(get_task("default"), SupernetConfig(steps=2, batch_size=2),
                              tmp_path / "supernet", progress=False)
    config = from_dict(RunConfig, load_yaml(tiny_config(tmp_path, "random", rounds=4)))
    config.env_kwargs = {**config.env_kwargs, "supernet": str(supernet)}
    config.screen = ScreenConfig(candidates=3, score="supernet_fid", fid_images=4)
    env = make_parallel_env(config.env, **config.env_kwargs)
    run = tmp_path / "run"
    with SummaryWriter(str(tmp_path / "tb")) as writer:
        search_best = run_search(config, env, run, writer)
        todo, wanted, fids = rigged_scores(run, env, config, search_best, worst=200.0,
                                           best=150.0)
        seen = []

        def fake_quality(pair, env_, images, fid_weights, device):
            chosen = next(c for c in todo if json.dumps(c.kept_channels) == kept_key(pair))
            expected = slice_pair(env_, chosen, "cpu", "supernet").networks["generator"]
            seen.append(all(torch.equal(a, b) for a, b in zip(
                pair.networks["generator"].state_dict().values(),
                expected.state_dict().values())))
            assert images == 4 and fid_weights is not None
            return {"fid": fids[kept_key(pair)], "kid": 0.0, "psnr": 0.0, "psnr_teacher": 0.0}

        monkeypatch.setattr(screen, "sliced_quality", fake_quality)
        pick = screen.run_screen(config, env, run, writer)
    assert pick.kept_channels == wanted.kept_channels == read_best(run).kept_channels
    assert seen == [True, True, True]  # every candidate sliced from the supernet
    distilled = ScreenConfig(candidates=3)
    assert screen.screen_file(run, config) != screen.screen_file(
        run, from_dict(RunConfig, {**load_yaml(tiny_config(tmp_path, "random", rounds=4)),
                                   "env_kwargs": config.env_kwargs,
                                   "screen": {"candidates": distilled.candidates}}))


def test_a_supernet_fid_screen_needs_a_supernet(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="set env_kwargs.supernet"):
        from_dict(RunConfig, {"screen": {"candidates": 4, "score": "supernet_fid"}})
    assert main(["-conf", str(tiny_config(tmp_path, "random")), "-f", str(tmp_path / "logs"),
                 "--screen", "2", "--screen-score", "supernet_fid"]) != 0
    assert "set env_kwargs.supernet" in capsys.readouterr().err
    # the density preset brings its own (shipped) supernet
    preset = from_dict(RunConfig, {"env": "Pix2PixPruneDensity-v0", "slice_from": "supernet",
                                   "screen": {"candidates": 4, "score": "supernet_fid"}})
    assert preset.env_supernet == "shipped"


def test_a_screen_needs_the_pruned_student() -> None:
    with pytest.raises(ValueError, match="screen scores pairs sliced from the teacher"):
        from_dict(RunConfig, {"screen": {"candidates": 4}, "student": "separable"})
    with pytest.raises(Exception, match="candidats"):
        from_dict(RunConfig, {"screen": {"candidats": 4}})


def test_scores_of_other_candidates_stop_the_screen_and_name_the_file(searched) -> None:
    """A scores file whose candidates are not this search's (edited, or another search under
    the same protocol) is an error naming the file, not a silent mix of two screens."""
    config, env, run, writer, _ = searched
    path = screen.screen_file(run, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"protocol": screen.protocol(config), "scores": [
        {"round": 0, "kept_channels": {"generator": [1], "discriminator": [1]},
         "l1_teacher": 0.1, "psnr_teacher": 20.0, "seconds": 1.0}]}))
    with pytest.raises(RuntimeError, match="remove it to screen again"):
        screen.run_screen(config, env, run, writer)
