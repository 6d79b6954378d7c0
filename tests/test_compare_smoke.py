"""Smoke test of benchmarks/compare_methods.py: run, report, resume (finished cells skipped)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import yaml
from conftest import BENCHMARKS, benchmark_script

@pytest.fixture(scope="module")
def compare():
    with benchmark_script("compare_methods") as module:
        yield module


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_report_and_resume(compare, tmp_path, capsys, monkeypatch):
    results = tmp_path / "cells.jsonl"
    argv = ["run", "--quick", "--methods", "uniform", "scratch", "mggc", "uniform_teacher_targets",
            "separable_teacher_targets", "factorised_teacher_targets", "--seeds", "0", "--rounds", "4",
            "--finetune-steps", "2", "--eval-images", "8", "--latency-runs", "3",
            "--out", str(tmp_path), "--results", str(results), "--no-report"]
    assert compare.main(argv) == 0
    records = _lines(results)
    assert sorted(r["key"] for r in records) == sorted(
        f"default|0.25|{m}|0" for m in ("factorised_teacher_targets", "mggc", "scratch",
                                         "separable_teacher_targets", "uniform",
                                         "uniform_teacher_targets"))
    for r in records:  # each method fine-tunes on its own targets
        assert r["config"]["finetune"]["targets"] == (
            "teacher" if r["method"].endswith("_teacher_targets") else "data")
        assert r["commit"] and len(r["teacher_sha1"]) == 40 and r["recipe"] == {}
        assert r["host"]["cpu"] and r["host"]["torch"]  # CPU numerics differ between models
        assert {"fid", "fid_std", "kid"} <= set(r["quality"]) and "fid" in r["teacher_quality"]
        assert r["rounds"] == 4 and r["finetune_steps"] == 2
        assert len(r["dynamics"]["g_loss"]) == 4 and len(r["dynamics"]["d_loss"]) == 4
        assert set(r["compute"]) == {"generator/teacher", "generator/pruned",
                                     "discriminator/teacher", "discriminator/pruned"}
        assert r["compute"]["generator/pruned"]["macs"] < r["compute"]["generator/teacher"]["macs"]
        for key in ("psnr", "psnr_teacher", "ssim", "proxy_fd"):
            assert key in r["quality"]
        assert r["latency_ms"]["pruned"]["median_ms"] > 0
    uniform = next(r for r in records if r["method"] == "uniform")
    scratch = next(r for r in records if r["method"] == "scratch")
    assert uniform["best"]["within_budget"]
    # the thin student: the same architecture, not the same weights
    assert scratch["compute"] == uniform["compute"]
    assert scratch["quality"]["psnr_teacher"] != uniform["quality"]["psnr_teacher"]
    assert uniform["compute"]["generator/pruned"]["macs"] <= \
        0.25 * uniform["compute"]["generator/teacher"]["macs"] * 1.001
    # the separable students: the same network within the budget, from scratch or factorised
    separable, factorised = (next(r for r in records if r["method"] == f"{kind}_teacher_targets")
                             for kind in ("separable", "factorised"))
    # at 25% the separable U-Net as wide as the teacher (ngf 16, 12.8% of its MACs) fits: the
    # student is never wider than the teacher it may be factorised from
    assert separable["config"]["student"] == {"kind": "separable", "ngf": 16}
    assert factorised["config"]["student"] == {"kind": "factorised", "ngf": 16}
    assert separable["compute"]["generator/pruned"] == factorised["compute"]["generator/pruned"]
    assert separable["compute"]["generator/pruned"]["macs"] <= \
        0.25 * separable["compute"]["generator/teacher"]["macs"]
    assert separable["quality"]["psnr_teacher"] != factorised["quality"]["psnr_teacher"]

    assert compare.main(["report", "--out", str(tmp_path), "--results", str(results)]) == 0
    for name in ("compare_methods.md", "compare_quality_vs_macs.png", "compare_dynamics.png"):
        assert (tmp_path / name).stat().st_size > 0
    report = (tmp_path / "compare_methods.md").read_text()
    assert "| uniform" in report and "| mggc" in report and "### Winners" in report
    assert "### Search rewards" in report

    # a method run at one budget only (as the facades ablations are) still reports
    extra = {**next(r for r in records if r["method"] == "uniform"), "budget": 0.1,
             "key": "default|0.1|uniform|0"}
    ablations = tmp_path / "partial.jsonl"
    ablations.write_text(results.read_text() + json.dumps(extra) + "\n")
    assert compare.main(["report", "--out", str(tmp_path / "partial"),
                         "--results", str(ablations)]) == 0
    assert "Budget 10%, second half" in (tmp_path / "partial" / "compare_methods.md").read_text()

    capsys.readouterr()
    assert compare.main(argv) == 0  # resume: every cell finished, nothing runs
    assert "6 already in" in capsys.readouterr().out
    assert len(_lines(results)) == 6

    with pytest.raises(SystemExit, match="rounds=4"):  # same cells, another protocol
        compare.main([*argv[:-1], "--rounds", "5", "--no-report"])
    with pytest.raises(SystemExit, match="recipe"):  # another fine-tuning recipe, too
        compare.main([*argv, "--recipe", "ema_decay:0.9"])
    with pytest.raises(SystemExit, match="ema_decy"):  # a misspelt recipe key, before any work
        compare.main([*argv, "--recipe", "ema_decy:0.9"])
    with pytest.raises(SystemExit, match="env"):  # another env, too
        compare.main([*argv, "--env", "budget_d:0.3"])
    for bad, named in (("budget_dd:0.3", "budget_dd"), ("budget_d:2", "budget_d"),
                       ("budget_g:0.3", "budget_g")):  # misspelt, out of range, the cell's own
        with pytest.raises(SystemExit, match=named):
            compare.main([*argv, "--env", bad])
    with pytest.raises(SystemExit, match="uniform_full_d sets"):  # a method's own setting
        compare.main([*argv, "--methods", "uniform_full_d", "--env", "budget_d:0.3"])
    retrained = tmp_path / "retrained.jsonl"  # the same cells of another (retrained) teacher
    retrained.write_text("".join(json.dumps({**r, "teacher_sha1": "f" * 40}) + "\n"
                                 for r in records))
    with pytest.raises(SystemExit, match="another teacher .SHA-1 ffffffffffff"):
        compare.main([*argv[:-3], "--results", str(retrained), "--no-report"])
    # ... unless the teacher file now makes the images those cells recorded, to the last bit:
    # then an alias records it and the cells resume (a retrain on the same kind of CPU)
    from compare import store

    aliases = tmp_path / "aliases.json"
    monkeypatch.setattr(store, "TEACHER_ALIASES", aliases)
    same = ["same-teacher", "--task", "default", "--results", str(retrained)]
    assert compare.main([*same, "--aliases", str(aliases)]) == 0
    [alias] = json.loads(aliases.read_text())
    assert (alias["teacher_sha1"], alias["same_as"]) == (records[0]["teacher_sha1"], "f" * 40)
    assert alias["evidence"]["psnr"] == records[0]["teacher_quality"]["psnr"]
    assert compare.main([*argv[:-3], "--results", str(retrained), "--no-report"]) == 0
    other = tmp_path / "other.jsonl"  # a teacher whose images differ: no alias
    other.write_text(json.dumps({**records[0], "teacher_sha1": "e" * 40, "teacher_quality": {
        **records[0]["teacher_quality"], "psnr": 1.0}}) + "\n")
    with pytest.raises(SystemExit, match="another teacher than .*'psnr': .1.0"):
        compare.main(["same-teacher", "--task", "default", "--results", str(other),
                      "--aliases", str(aliases)])
    assert len(json.loads(aliases.read_text())) == 1
    from compare.cells import env_kwargs

    cell = {"task": "default", "budget": 0.1, "method": "uniform", "env": {"budget_d": 0.3}}
    assert env_kwargs(cell)["budget_d"] == 0.3 and env_kwargs(cell)["budget_g"] == 0.1

    # the frontier report reads the same records: table, teacher level, margins over scratch
    frontier = _script("frontier")
    (tmp_path / "frontier_default.jsonl").write_text(results.read_text())
    text = frontier.make_report(tmp_path).read_text()
    assert "| scratch | 1 | 23.7% | 4.2 |" in text and "| uniform | 1 | 23.7% |" in text
    assert "- uniform: never at teacher level" in text or "- uniform: teacher-level FID" in text
    diff = uniform["quality"]["fid"] - scratch["quality"]["fid"]
    assert f"- 25.0%, uniform: FID {diff:+.1f} ± 0.0 (lower in {int(diff < 0)} of 1 seeds)" in text
    # cells trained on other targets are not paired, and each row says which recipe it ran
    assert "- 25.0%, uniform_teacher_targets:" not in text
    assert "- generator_inherit 1.0, input_mix none, targets data: scratch, uniform, mggc" in text
    assert "- today's recipe: uniform_teacher_targets" in text
    # equal MACs only: the 25% separable students (12.8% of the teacher's MACs) are paired with
    # each other, not with pruning at 25%
    against_separable = text.split("**Against the separable U-Net")[1]
    assert "- 25.0%, factorised_teacher_targets: FID" in against_separable
    assert "- 25.0%, separable_teacher_targets:" not in text.split("**Against the separable")[0]
    assert (tmp_path / "frontier_default.png").stat().st_size > 0
    # another recipe variant's file gives rows of its own, each paired only within its variant
    # and with cells of the same teacher (a retrained teacher has other weights)
    before = _lines(results)
    for record in before:
        if record["method"] == "uniform":
            record["teacher_sha1"] = "a retrained teacher"
    frontier.results_file(tmp_path, "default", "before_cutmix").write_text(
        "".join(json.dumps(r) + "\n" for r in before))
    text = frontier.make_report(tmp_path).read_text()
    assert "| uniform (before_cutmix) | 1 | 23.7% |" in text and "| uniform | 1 | 23.7% |" in text
    assert f"- 25.0%, uniform: FID {diff:+.1f} ± 0.0" in text
    assert "- 25.0%, mggc (before_cutmix): FID" in text
    assert "- 25.0%, uniform (before_cutmix):" not in text


def test_a_saved_separable_student_is_narrowed_with_its_weights(compare, tmp_path):
    """GAN Compression's order: the separable cell keeps its G (--save-generator), and
    pruned_separable_teacher_targets narrows that G to a smaller budget; without the file the
    run stops before any work and names the command that makes it."""
    student = tmp_path / "separable" / "generator.pt"
    common = ["--quick", "--seeds", "0", "--rounds", "2", "--finetune-steps", "2",
              "--eval-images", "8", "--latency-runs", "3", "--out", str(tmp_path), "--no-report"]
    with pytest.raises(SystemExit, match="separable student not found.*--save-generator"):
        compare.main(["run", "--methods", "pruned_separable_teacher_targets", "--budgets", "0.05",
                      "--separable-student", f"default={student}", *common])
    with pytest.raises(SystemExit, match="one cell"):
        compare.main(["run", "--methods", "separable_teacher_targets", "--budgets", "0.25", "0.1",
                      "--save-generator", str(student), *common])
    assert compare.main(["run", "--methods", "separable_teacher_targets", "--budgets", "0.25",
                         "--save-generator", str(student), "--results",
                         str(tmp_path / "wide.jsonl"), *common]) == 0
    assert compare.main(["run", "--methods", "pruned_separable_teacher_targets", "--budgets",
                         "0.05", "0.1", "--separable-student", f"default={student}", "--results",
                         str(tmp_path / "pruned.jsonl"), *common]) == 0
    # narrowed by its norm scales instead of its filters' L1: other channels, another model
    assert compare.main(["run", "--methods", "pruned_separable_slim_teacher_targets", "--budgets",
                         "0.05", "--separable-student", f"default={student}", "--results",
                         str(tmp_path / "slim.jsonl"), *common]) == 0
    (slim,) = _lines(tmp_path / "slim.jsonl")
    fresh = tmp_path / "fresh.jsonl"
    assert compare.main(["run", "--methods", "separable_teacher_targets", "--budgets", "0.05",
                         "--results", str(fresh), *common]) == 0
    pruned = {r["budget"]: r for r in _lines(tmp_path / "pruned.jsonl")}
    for budget, ngf in ((0.05, 8), (0.1, 13)):
        config = pruned[budget]["config"]["student"]
        assert config["kind"] == "pruned_separable" and config["ngf"] == ngf
        assert config["source"]["ngf"] == 16 and len(config["source"]["sha1"]) == 40
        assert config["importance"] == "l1"
    assert slim["config"]["student"]["importance"] == "norm_scale"
    assert slim["quality"]["psnr_teacher"] != pruned[0.05]["quality"]["psnr_teacher"]
    # the same network as the fresh separable student of the budget, other weights
    (scratch,) = _lines(fresh)
    assert scratch["compute"]["generator/pruned"] == pruned[0.05]["compute"]["generator/pruned"]
    assert scratch["quality"]["psnr_teacher"] != pruned[0.05]["quality"]["psnr_teacher"]


def _script(name: str):
    """Another benchmarks/ script (the ``compare`` fixture has put their folder on the path)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_teacher_level_is_the_largest_cut_that_reaches_it_and_names_the_budgets_between(
        compare):
    """The headline rule: the largest MACs cut (smallest kept share) whose mean FID is at
    teacher level, and the wider budgets that missed it; a row that never reaches it says so."""
    frontier = _script("frontier")

    def cell(kept: float, fid: float) -> dict:
        return {"quality": {"fid": fid}, "compute": {"generator/pruned": {"macs": kept * 100},
                                                     "generator/teacher": {"macs": 100}}}

    row, budgets = ("uniform", ""), [0.25, 0.1, 0.05, 0.025]
    cells = {(row, 0.25): {0: cell(0.25, 170.0), 1: cell(0.25, 172.0)},
             (row, 0.1): {0: cell(0.1, 180.0), 1: cell(0.1, 182.0)},  # mean 181 > 177.7
             (row, 0.05): {0: cell(0.05, 176.0), 1: cell(0.05, 178.0)},  # mean 177 <= 177.7
             (row, 0.025): {0: cell(0.025, 200.0)}}
    assert frontier._teacher_level_line(row, cells, budgets, 177.7) == (
        "- uniform: teacher-level FID down to 5.0% of the teacher's G MACs (20.0x fewer); "
        "not at 10.0%")
    assert frontier._teacher_level_line(row, cells, budgets, 169.0) == (
        "- uniform: never at teacher level")


def test_torn_last_line_is_ignored(compare, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"key": "a"}) + "\n" + '{"key": "b", "tr')
    assert [r["key"] for r in compare.read_records(path)] == ["a"]


def test_a_results_file_keeps_one_teacher_per_task(compare, tmp_path):
    from compare.store import check_one_teacher

    path = tmp_path / "r.jsonl"
    records = [{"task": "default_wide", "teacher_sha1": "a" * 40},
               {"task": "default", "teacher_sha1": "b" * 40}, {"task": "default_wide"}]
    check_one_teacher(path, "default_wide", "a" * 40, records)  # its own teacher
    check_one_teacher(path, "facades", "c" * 40, records)  # a task the file does not hold
    with pytest.raises(SystemExit, match=f"default_wide results of another teacher .SHA-1 "
                                         f"{'a' * 12}.*this run would use .{'b' * 12}"):
        check_one_teacher(path, "default_wide", "b" * 40, records, aliases={})
    # a file shown to hold the recorded weights (an alias) is that teacher
    check_one_teacher(path, "default_wide", "b" * 40, records, aliases={"b" * 40: "a" * 40})


def test_append_after_torn_line(compare, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b", "tr')
    compare.append_record(path, {"key": "c"})
    assert [r["key"] for r in compare.read_records(path)] == ["a", "c"]


def test_recipe_curve_runs_reports_and_resumes(compare, tmp_path, capsys):
    curve = _script("recipe_curve")
    argv = ["run", "--steps", "2", "--seeds", "0", "--variants", "output", "feature",
            "--eval-images", "4", "--workers", "1", "--out", str(tmp_path)]
    assert curve.main(argv) == 0
    records = _lines(tmp_path / "recipe_curve.jsonl")
    assert sorted(r["key"] for r in records) == sorted(
        f"default|0.1|{start}|{variant}|2|0" for start in ("uniform", "scratch")
        for variant in ("output", "feature"))
    feature = next(r for r in records if r["key"] == "default|0.1|uniform|feature|2|0")
    assert feature["recipe"] == {"feature_layers": "auto", "ema_decay": 0.0,
                                 "targets": "data", "lr_decay_steps": 1}
    assert feature["config"]["finetune"]["feature_layers"] == "auto"
    report = (tmp_path / "recipe_curve.md").read_text()
    assert "- feature @ 2: FID" in report and (tmp_path / "recipe_curve.png").stat().st_size > 0
    capsys.readouterr()
    assert curve.main(argv) == 0  # resumed: nothing left to run
    assert "0 cells to run (4 done)" in capsys.readouterr().out


def test_task_teachers_are_checked_before_any_cell(compare, tmp_path):
    def teachers(*items, tasks=("default", "default_wide")):
        args = argparse.Namespace(teacher=list(items), tasks=list(tasks))
        return compare.task_teachers(args)

    assert teachers(tasks=("default",)) == {}
    with pytest.raises(SystemExit, match="train_teacher --task default_wide"):
        teachers("default_wide=" + str(tmp_path / "missing.pt"))
    with pytest.raises(SystemExit, match="TASK=PATH"):
        teachers("nope=" + str(tmp_path))
    # a shipped teacher can be replaced (e.g. by one trained longer), and must then exist
    with pytest.raises(SystemExit, match="train_teacher --task default --out DIR"):
        teachers("default=" + str(tmp_path))
    given = tmp_path / "wide.pt"
    given.write_bytes(b"")
    assert teachers(f"default_wide={given}") == {"default_wide": str(given.resolve())}
    assert teachers(f"default={given}", tasks=("default",)) == {"default": str(given.resolve())}


def test_task_supernets_are_checked_only_when_a_method_uses_one(compare, tmp_path):
    def supernets(*items, methods=("uniform_supernet",)):
        args = argparse.Namespace(supernet=list(items), tasks=["default"], methods=list(methods))
        return compare.task_supernets(args)

    assert supernets(str(tmp_path / "ignored"), methods=("uniform", "scratch")) == {}
    with pytest.raises(SystemExit, match="gan_prune_env.supernet --task default"):
        supernets("default=" + str(tmp_path / "missing.pt"))
    with pytest.raises(SystemExit, match="TASK=PATH"):
        supernets("nope=" + str(tmp_path))
    given = tmp_path / "supernet.pt"
    given.write_bytes(b"")
    assert supernets(f"default={given}") == {"default": str(given.resolve())}


def test_each_pruned_separable_method_narrows_the_start_its_method_names(compare, tmp_path,
                                                                           monkeypatch):
    """The plain and the slimming start live apart, each made by its own method's 25% cell
    (a missing one names that command); every cell gets its method's start (one shared file
    would narrow the wrong network for one method)."""
    import compare.spec as spec

    monkeypatch.setattr(spec, "ROOT", tmp_path)
    monkeypatch.setattr(compare, "default_separable_student", spec.default_separable_student)
    methods = ["pruned_separable_teacher_targets", "pruned_separable_slim_teacher_targets"]
    args = argparse.Namespace(separable_student=None, tasks=["default"], methods=methods)
    with pytest.raises(SystemExit, match="--methods separable_slim_teacher_targets .*"
                                         "runs/separable/default_separable_slim_teacher_targets"):
        plain = spec.default_separable_student("default")
        plain.parent.mkdir(parents=True)
        plain.write_bytes(b"")
        compare.task_separable_students(args)
    slim = spec.default_separable_student("default", "separable_slim_teacher_targets")
    slim.parent.mkdir(parents=True)
    slim.write_bytes(b"")
    files = compare.task_separable_students(args)
    assert files == {("default", "separable_teacher_targets"): str(plain.resolve()),
                     ("default", "separable_slim_teacher_targets"): str(slim.resolve())}
    plan = argparse.Namespace(seeds=[0], tasks=["default"], budgets=[0.05], methods=methods,
                              rounds=1, finetune_steps=1, eval_images=1, latency_runs=1,
                              teachers={}, supernets={}, separable_students=files,
                              save_generator=None, recipe=None, env=None, work_dir=tmp_path)
    assert [cell["separable_student"] for cell in compare.plan_cells(plan)] == [
        str(plain.resolve()), str(slim.resolve())]


def test_teacher_curve_scores_every_kept_state(tmp_path, capsys):
    from test_teacher import tiny_config

    from gan_prune_env.config import to_dict
    from gan_prune_env.teacher.loop import train_teacher

    config = tiny_config(n_steps=4, save_every=2, keep_train_states=10)
    train_teacher(config, tmp_path / "run")
    task = tmp_path / "tiny.yaml"
    task.write_text(yaml.safe_dump({"name": "tiny", "image_size": 32, **{
        k: to_dict(config)[k] for k in ("family", "data", "generator", "discriminator")}}))
    with benchmark_script("teacher_curve") as curve:
        argv = [str(tmp_path / "run"), "--task", str(task), "--eval-images", "8",
                "--out", str(tmp_path)]
        assert curve.main(argv) == 0
    record = json.loads((tmp_path / "teacher_curve_run.json").read_text())
    assert list(record["steps"]) == ["2", "4"] and len(record["teacher_sha1"]) == 40
    assert all(v["fid"] > 0 and "psnr" in v for v in record["steps"].values())
    assert (tmp_path / "teacher_curve_run.png").stat().st_size > 0
    assert "| 4 |" in (tmp_path / "teacher_curve_run.md").read_text()


def test_supernet_slices_scores_both_slices_and_rebuilds_its_report(tmp_path, capsys):
    from gan_prune_env.supernet import SupernetConfig, train_supernet
    from gan_prune_env.tasks import get_task

    supernet = train_supernet(get_task("default"), SupernetConfig(steps=2, batch_size=2),
                              tmp_path / "supernet", progress=False)
    with benchmark_script("supernet_slices") as slices:
        argv = ["--supernet", str(supernet), "--budgets", "0.25", "--eval-images", "4",
                "--out", str(tmp_path)]
        assert slices.main(argv) == 0
        data = json.loads((tmp_path / "supernet_slices_default.json").read_text())
        teacher, shared = data["slices"]["0.25|teacher"], data["slices"]["0.25|supernet"]
        assert teacher["macs_ratio"] == shared["macs_ratio"] <= 0.25
        assert teacher["psnr_teacher"] != shared["psnr_teacher"]  # other weights, same arch
        assert len(data["supernet_sha1"]) == 40 and len(data["teacher_sha1"]) == 40
        report = (tmp_path / "supernet_slices_default.md").read_text()
        assert "| 25% | teacher | no |" in report and "| 25% | supernet | no |" in report
        assert (tmp_path / "supernet_slices_default.png").stat().st_size > 0
        (tmp_path / "supernet_slices_default.md").unlink()
        assert slices.main([*argv, "--report"]) == 0  # from the JSON, no scoring
        assert (tmp_path / "supernet_slices_default.md").read_text() == report


def test_a_finished_run_leaves_the_scratch_of_a_concurrent_run_alone(compare, tmp_path):
    """Two runs sharing one output folder share its scratch folder: the first to finish must
    not delete the fine-tuning folder the other is writing (a wide-teacher cell was lost so)."""
    from compare.cells import run_pending

    work = tmp_path / ".compare_work"
    (work / "ft_other_run").mkdir(parents=True)
    assert run_pending([], 1, None, print, str, work)
    assert (work / "ft_other_run").is_dir()
    (work / "ft_other_run").rmdir()
    assert run_pending([], 1, None, print, str, work)
    assert not work.exists()  # an empty scratch folder is tidied away


def describe_worker(cell: dict) -> dict:
    """A cell function for the Ray test: says where and how it ran, or fails when asked to."""
    import torch

    if cell["fail"]:
        raise RuntimeError("this cell fails")
    return {"key": cell["key"], "pid": os.getpid(), "threads": torch.get_num_threads(),
            "data": os.environ.get("GAN_PRUNE_DATA")}


def test_cells_run_as_ray_tasks_and_a_failing_one_is_reported(compare, tmp_path):
    """``--ray``: each cell a Ray task set up as a pool worker (one torch thread, the data
    root), records handed over as tasks finish, a failing task reported and the rest kept."""
    pytest.importorskip("ray", reason="the [rllib] extra is not installed")
    import ray

    from compare.cells import run_cells

    assert compare.parse_args(["run", "--ray"]).ray == "local"
    assert compare.parse_args(["run", "--ray", "auto"]).ray == "auto"
    assert compare.parse_args(["run"]).ray is None
    cells = [{"key": f"c{i}", "fail": i == 1} for i in range(3)]
    records: list[dict] = []
    failed = run_cells(cells, 2, str(tmp_path), records.append, lambda c: c["key"],
                       describe_worker, ray_address="local")
    assert failed == ["c1"]
    assert sorted(r["key"] for r in records) == ["c0", "c2"]
    for record in records:
        assert record["pid"] != os.getpid()  # in a Ray worker, not here
        assert record["threads"] == 1 and record["data"] == str(tmp_path)
    assert not ray.is_initialized()  # Ray started for the run is shut down after it


ORPHAN_SCRIPT = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {benchmarks!r})
from compare.cells import run_cells

def hold(cell):
    Path({out!r}, f"worker{{cell}}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return {{}}

if __name__ == "__main__":
    run_cells([0, 1], 2, None, lambda record: None, str, hold)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_pool_workers_exit_when_the_run_is_killed(tmp_path):
    """A run killed by a signal takes its pool workers with it: orphans would finish their cells
    (hours each) on the cores the resumed run needs."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "run.py"
    script.write_text(ORPHAN_SCRIPT.format(benchmarks=str(BENCHMARKS), out=str(tmp_path)))
    run = subprocess.Popen([sys.executable, str(script)])
    try:
        pid_files = [tmp_path / f"worker{i}.pid" for i in (0, 1)]
        deadline = time.monotonic() + 120
        while not all(f.exists() and f.read_text() for f in pid_files):
            assert time.monotonic() < deadline and run.poll() is None, "workers never started"
            time.sleep(0.2)
        workers = [int(f.read_text()) for f in pid_files]
        assert all(_alive(pid) for pid in workers)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # do not leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, "pool workers outlived the killed run"


PUBLISHED_VARIANTS = [("default", ""), ("default_long", ""), ("default_wide", "before_cutmix"),
                      ("default_wide", ""),
                      ("facades", "before_cutmix"), ("facades", "bfloat16"),
                      ("facades", "")]


def test_every_published_variant_is_checked_below(compare):
    """Each (task, recipe variant) of the published frontier has its two checks below."""
    assert sorted((t, v) for t, plan in _script("frontier").PUBLISHED.items()
                  for v in plan) == sorted(PUBLISHED_VARIANTS)


@pytest.mark.parametrize("task,variant", PUBLISHED_VARIANTS)
def test_published_plan_is_exactly_the_committed_frontier(compare, task, variant):
    """``frontier.py run --published`` regenerates the committed frontier: the cells of each
    recipe variant are its results file's (method, budget, seed) triples, no more and no
    fewer."""
    frontier = _script("frontier")
    records = frontier.read_records(frontier.results_file(BENCHMARKS / "results", task, variant))
    args = frontier.parse_args(["run", "--tasks", task, "--published"])[0]
    planned = {(m, b, s) for methods, budgets, seeds in frontier.plans(args, task)[variant]
               for m in methods for b in budgets for s in seeds}
    assert planned == {(r["method"], r["budget"], r["seed"]) for r in records}
    custom = frontier.parse_args(["run", "--methods", "uniform", "--budgets", "0.1"])[0]
    assert frontier.plans(custom, task) == {"": ((("uniform",), (0.1,), (0, 1, 2)),)}


@pytest.mark.parametrize("task,variant", PUBLISHED_VARIANTS)
def test_every_committed_frontier_cell_ran_the_recipe_its_published_run_asks_for(
        compare, task, variant):
    """Resuming the published frontier finds every committed cell finished under the recipe it
    would ask for (today's defaults, the method's changes, the variant's), so a change of the
    recipe's defaults cannot leave the frontier's cells silently of another recipe."""
    frontier = _script("frontier")
    records = frontier.read_records(frontier.results_file(BENCHMARKS / "results", task, variant))
    recipe = compare.recipe_overrides(frontier.variant_recipe(variant, [])[1:]) or None
    if recipe:  # another recipe on top of the variant's is refused, not merged
        with pytest.raises(SystemExit, match="as today's variant"):
            frontier.variant_recipe(variant, ["--recipe", "lr:0.0001"])
    for record in records:
        cell = {**{k: record[k] for k in ("task", "budget", "method", "seed", "rounds",
                                          "finetune_steps", "eval_images")},
                "env": record.get("env", {}), "recipe": recipe}
        assert compare._check_protocol({record["key"]: record}, cell), record["key"]
        screened = record.get("screen", {}).get("candidates", 0)
        assert screened == compare.METHODS[record["method"]].screen, record["key"]


def test_a_cell_is_finished_only_under_the_recipe_it_ran(compare):
    """The recipe check compares what a cell ran (fields added after its record at the values
    it ran with, "auto" resolved) with what the run asks for, not the ``--recipe`` words."""
    from compare.cells import method_recipe, recipe_config, recipe_dict

    def record(method: str, recipe: dict | None, drop: tuple[str, ...] = ()) -> dict:
        cell = {"recipe": recipe}
        ran = recipe_dict(recipe_config(3000, method_recipe(compare.METHODS[method], cell)))
        return {"key": f"default|0.1|{method}|0", "rounds": 200, "finetune_steps": 3000,
                "eval_images": 100, "env": {}, "recipe": recipe or {},
                "config": {"finetune": {k: v for k, v in ran.items() if k not in drop}}}

    def finished(done: dict, method: str, recipe: dict | None) -> bool:
        cell = {"task": "default", "budget": 0.1, "method": method, "seed": 0, "rounds": 200,
                "finetune_steps": 3000, "eval_images": 100, "env": {}, "recipe": recipe}
        return compare._check_protocol({done["key"]: done}, cell)

    mixed = {"input_mix": "cutmix"}  # what "auto" means with the teacher's targets
    assert finished(record("uniform_teacher_targets", mixed), "uniform_teacher_targets", None)
    assert finished(record("uniform_teacher_targets", None), "uniform_teacher_targets", mixed)
    before = {"input_mix": "none", "generator_inherit": 1.0}
    # a record from before input_mix and generator_inherit existed ran without them
    old = record("uniform_teacher_targets", before, drop=("input_mix", "generator_inherit"))
    assert finished(old, "uniform_teacher_targets", before)
    with pytest.raises(SystemExit, match="generator_inherit"):
        finished(old, "uniform_teacher_targets", None)
    with pytest.raises(SystemExit, match="input_mix"):
        finished(old, "uniform_teacher_targets", {"generator_inherit": 1.0})
    # ... and the dataset's targets: the data-target methods pin that recipe
    oldest = record("uniform", None, drop=("targets", "input_mix", "generator_inherit"))
    assert finished(oldest, "uniform", None)
    with pytest.raises(SystemExit, match="targets"):
        finished(oldest, "uniform", {"targets": "teacher", **before})


def _leaderboard_record(method: str, seed: int, reward: float, within: bool = True) -> dict:
    return {"key": f"default|0.1|{method}|{seed}", "method": method, "seed": seed,
            "rounds": 1000, "finetune_steps": 600, "commit": "c" * 40, "teacher_sha1": "t" * 40,
            "best": {"within_budget": within, "rewards": {"generator": reward}},
            "timing_s": {"search": 60.0 + seed}, "quality": {"fid": 180.0 + seed,
                                                             "psnr_teacher": 22.0}}


@pytest.fixture
def leaderboard(compare):
    """``benchmarks/leaderboard.py``, registered under its name (its dataclass needs that)."""
    pytest.importorskip("rliable", reason="the [bench] extra is not installed")
    with benchmark_script("leaderboard") as module:
        yield module


def test_leaderboard_ranks_by_the_interquartile_mean_of_the_best_feasible_reward(leaderboard,
                                                                                  tmp_path):
    # IQM of 8 runs: the mean of the middle 4, whatever the outliers
    iqm = leaderboard.interquartile_mean({"a": np.array([-9, -3, -2, -2, -1, -1, 0, 5.0])},
                                         reps=200)
    assert iqm["a"][0] == pytest.approx(np.mean([-2, -2, -1, -1]))
    assert iqm["a"][1] <= iqm["a"][0] <= iqm["a"][2]
    path = tmp_path / "leaderboard_1000.jsonl"
    records = [_leaderboard_record("uniform", s, -1.0) for s in range(5)]
    records += [_leaderboard_record("random", s, -0.5 - 0.01 * s) for s in range(5)]
    # mggc found higher rewards, but never a pair within budget: it ranks last
    records += [_leaderboard_record("mggc", s, 0.0, within=False) for s in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = leaderboard.make_report(tmp_path).read_text()
    order = [line.split("|")[1].strip() for line in report.splitlines()
             if line.startswith("| ") and "algorithm" not in line]
    assert order == ["random search", "uniform L1-norm", "MGGC (ours)"]
    assert "| 0/5 |" in report and (tmp_path / "leaderboard.png").stat().st_size > 0


def test_the_density_leaderboard_runs_each_row_on_the_density_reward_in_its_own_files(
        leaderboard, tmp_path):
    from compare.spec import DENSITY_ALONE, METHODS

    board = leaderboard.BOARDS["Pix2PixPruneDensity-v0"]
    for row in leaderboard.ROWS:
        method = METHODS[board.method(row)]
        assert method.supernet and method.env["objective"] == DENSITY_ALONE
        assert method.agent == METHODS[row].agent and method.params == METHODS[row].params
    supernet = board.extra[board.extra.index("--supernet") + 1]
    assert supernet.startswith("default=") and supernet.endswith("default_supernet.pt")
    # v0's records beside the density board's: each report reads its own files only
    v0 = [_leaderboard_record("uniform", s, -1.4) for s in range(5)]
    (tmp_path / "leaderboard_1000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in v0))
    density = [_leaderboard_record(board.method("random"), s, -2.0 - 0.1 * s) for s in range(5)]
    density += [_leaderboard_record(board.method("uniform"), s, -4.95) for s in range(5)]
    results = leaderboard.results_file(tmp_path, 1000, board)
    results.write_text("".join(json.dumps(r) + "\n" for r in density))
    report = leaderboard.make_report(tmp_path, board).read_text()
    assert report.startswith("# Leaderboard of Pix2PixPruneDensity-v0")
    rows = [line.split("|")[1].strip() for line in report.splitlines()
            if line.startswith("| ") and "algorithm" not in line]
    assert rows == [METHODS[board.method("random")].label, METHODS[board.method("uniform")].label]
    assert "-1.4" not in report and (tmp_path / "leaderboard_density.png").stat().st_size > 0
    assert "uniform L1-norm |" in leaderboard.make_report(tmp_path).read_text()


def _tradeoff_record(method: str, seed: int, fid: float, psnr_teacher: float,
                     recipe: dict | None = None) -> dict:
    """A comparison record of ``method`` that ran its recipe with the ``recipe`` changes."""
    from compare.cells import method_recipe, recipe_config, recipe_dict
    from compare.spec import METHODS

    ran = recipe_config(3000, method_recipe(METHODS[method], {"recipe": recipe}))
    return {"task": "default", "method": method, "budget": 0.05, "seed": seed,
            "finetune_steps": 3000, "teacher_sha1": "e9751b24ff" + "0" * 30,
            "recipe": recipe or {}, "config": {"finetune": recipe_dict(ran)},
            "quality": {"fid": fid, "psnr_teacher": psnr_teacher}}


def test_tradeoff_says_which_variants_beat_which_on_both_axes(tmp_path, capsys):
    with benchmark_script("tradeoff") as tradeoff:  # registered: it defines a dataclass
        _check_tradeoff_report(tradeoff, tmp_path)
    assert "unmixed.jsonl repeats cell (0.05, 'pruning', 'recipe') seed 0" in \
        capsys.readouterr().err


def _check_tradeoff_report(tradeoff, tmp_path: Path) -> None:
    frontier, variant = tmp_path / "frontier_default.jsonl", tmp_path / "unmixed.jsonl"
    records = [_tradeoff_record("uniform_teacher_targets", s, 187.0 + s, 20.6) for s in (0, 1)]
    records += [_tradeoff_record("scratch_teacher_targets", s, 210.0, 20.9 + s / 10)
                for s in (0, 1)]
    # the pruning recipe beats this one on both axes, but not every point
    records.append(_tradeoff_record("scratch_g_teacher_targets", 0, 215.0, 20.0))
    frontier.write_text("".join(json.dumps(r) + "\n" for r in records))
    # labelled by what the cells ran against their method's recipe of today, not by the run's
    # --recipe: a --recipe that restates a default is no variant
    unmixed = {"input_mix": "none"}
    variant.write_text("".join(json.dumps(r) + "\n" for r in [
        # lower FID and higher PSNR-T than the scratch recipe: better on both
        _tradeoff_record("uniform_teacher_targets", 0, 189.0, 21.2, unmixed),
        # a rerun of a frontier cell: the frontier's record is kept
        _tradeoff_record("uniform_teacher_targets", 0, 999.0, 0.0, {"input_mix": "auto"}),
        _tradeoff_record("scratch_teacher_targets", 0, 204.0, 21.0, unmixed),
        # a method of neither family is left out
        _tradeoff_record("mggc_teacher_targets", 0, 150.0, 30.0)]))
    report = tradeoff.make_report("default", [0.05], [frontier, variant], tmp_path).read_text()
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line.split("|")
            for line in report.splitlines() if line.startswith("| pruning")
            or line.startswith("| scratch")}
    assert set(rows) == {("pruning", "recipe"), ("pruning", "input_mix: none"),
                         ("scratch", "recipe"), ("scratch", "input_mix: none"),
                         ("scratch G, teacher's D", "recipe")}
    assert rows[("pruning", "recipe")][4].strip() == "187.5 ± 0.7"  # 999 rerun not averaged
    beats_cutmix_pruning = rows[("pruning", "input_mix: none")][6]
    assert "scratch (recipe)" in beats_cutmix_pruning
    assert "scratch (input_mix: none)" in beats_cutmix_pruning
    # the pruning recipe loses PSNR-T to both scratch points: it beats neither on both axes
    assert rows[("pruning", "recipe")][6].strip() == "scratch G, teacher's D (recipe)"
    assert rows[("scratch", "recipe")][7].strip() == "pruning (input_mix: none)"
    assert "better on both axes than every other point: input_mix: none. " in report
    assert "beat some pruning variant on both: 0 of 3." in report
    assert (tmp_path / "tradeoff_default.png").stat().st_size > 0


def test_the_reports_recipe_length_is_the_recipes():
    """The reports tell the recipe's cells from other lengths by ``RECIPE_STEPS`` (no torch
    import); it must follow ``FinetuneConfig``'s default."""
    from gan_prune_env.finetune import FinetuneConfig

    with benchmark_script("capacity") as capacity:
        assert capacity.RECIPE_STEPS == FinetuneConfig().steps


def _capacity_record(method: str, seed: int, fid: float, pruned_macs: int,
                     recipe: dict | None = None, steps: int = 3000) -> dict:
    """A comparison record with the fields the capacity report reads."""
    record = _tradeoff_record(method, seed, fid, 20.0, recipe)
    record.update(budget=0.1, finetune_steps=steps, teacher_quality={"fid": 150.0},
                  compute={"generator/teacher": {"macs": 1000},
                           "generator/pruned": {"macs": pruned_macs}})
    return record


def test_capacity_report_pools_the_recipe_cells_and_the_thin_runs_by_size(tmp_path):
    with benchmark_script("capacity") as capacity:
        cells = tmp_path / "cells.jsonl"
        cells.write_text("".join(json.dumps(r) + "\n" for r in [
            _capacity_record("uniform_teacher_targets", 0, 170.0, 90),
            _capacity_record("uniform_teacher_targets", 1, 174.0, 110),
            # a variant and another length are not the recipe's cells: left out
            _capacity_record("uniform_teacher_targets", 2, 999.0, 100, {"input_mix": "none"}),
            _capacity_record("uniform_teacher_targets", 3, 999.0, 100, steps=6000),
            _capacity_record("scratch_teacher_targets", 0, 999.0, 100)]))
        series = "pruned=cells.jsonl:uniform_teacher_targets"
        label, path, method = capacity.parse_series(series, tmp_path)
        assert (label, path, method) == ("pruned", cells, "uniform_teacher_targets")
        (point,) = capacity.series_points(label, path, method, "default")
        assert (point.fid.n, point.fid.mean, point.macs_ratio) == (2, 172.0, 0.1)
        assert point.teacher_fid == 150.0
        # thin runs of one width (the same MACs) pool their seeds; another width is its own point
        scores = {"a": {"macs": 250, "fid": 198.0}, "b": {"macs": 250, "fid": 202.0},
                  "c": {"macs": 100, "fid": 210.0}}
        thin = capacity.thin_points(scores, ["a", "b", "c"], teacher_macs=1000)
        assert [(p.macs_ratio, p.fid.n, p.fid.mean) for p in thin] == [(0.1, 1, 210.0),
                                                                         (0.25, 2, 200.0)]
        md = capacity.report([point, *thin], "t", "default", ["cells.jsonl"], tmp_path)
        assert "| pruned | 10.0% | 2 | 172.0 ± 2.8 | 150.0 |" in md.read_text()
        assert (tmp_path / "capacity_t.png").stat().st_size > 0
        with pytest.raises(SystemExit, match="LABEL=FILE:METHOD"):
            capacity.parse_series("no-method", tmp_path)
        with pytest.raises(SystemExit, match="no mggc cells"):
            capacity.series_points("x", cells, "mggc", "default")



class _EpisodesOfTwo(gym.Env):
    """A minimal env whose episodes end after two steps; counts the steps it evaluates."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def __init__(self) -> None:
        self.evaluated, self.t = 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.evaluated += 1
        self.t += 1
        return np.zeros(1, np.float32), 0.0, self.t == 2, False, {}


def test_env_speed_counts_the_vector_steps_that_evaluate_and_not_the_autoresets():
    with benchmark_script("env_speed") as env_speed:
        env = gym.vector.SyncVectorEnv([_EpisodesOfTwo] * 2,
                                       autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
        env.reset(seed=0)
        evaluated, seconds = env_speed.run_vector_steps(env, 6, np.random.default_rng(0))
    # per env: steps 1-2 evaluate, 3 only resets, 4-5 evaluate, 6 only resets
    assert evaluated == sum(e.evaluated for e in env.envs) == 8
    assert seconds > 0


def test_env_speed_times_the_chosen_settings_with_their_baselines_only():
    with benchmark_script("env_speed") as env_speed:
        settings = [env_speed.Setting(name, {"task": "default"}) for name in
                    ("default frozen", "default frozen, the env before", "default frozen, sliced",
                     "default frozen, bfloat16")]
        for setting in settings[2:]:
            setting.baseline = "default frozen, the env before"
        chosen = env_speed.chosen_settings(settings, ["default frozen, bfloat16"])
        with pytest.raises(SystemExit, match=r"\['default frozen, bf16'\] not among"):
            env_speed.chosen_settings(settings, ["default frozen, bf16"])
    assert [s.name for s in chosen] == ["default frozen, the env before",
                                        "default frozen, bfloat16"]


def test_env_speed_judges_the_target_on_todays_env_with_random_actions_only():
    """Neither the env before, nor a policy the cache answers, nor inner updates count."""
    with benchmark_script("env_speed") as env_speed:
        setting = env_speed.Setting
        counted = [setting("default frozen", {"task": "default", "inner_steps": 0}),
                   setting("2 processes", {"task": "default"}, workers=2)]
        ignored = [setting("before", {"task": "default"}, contiguous=True),
                   setting("repeated", {"task": "default"}, action_pool=8),
                   setting("inner", {"task": "default", "inner_steps": 1})]
        assert all(env_speed.is_new_random(s) for s in counted)
        assert not any(env_speed.is_new_random(s) for s in ignored)


def test_env_precision_measures_how_far_and_in_what_order_bfloat16_pays():
    with benchmark_script("env_precision") as env_precision:
        reference = np.array([-1.0, -0.6, -0.5, -0.2, -0.1, 0.0])
        shifted = env_precision.agreement(reference, reference + 1e-3)
        reversed_ = env_precision.agreement(reference, reference[::-1].copy())
        game = SimpleNamespace(config=SimpleNamespace(min_keep=0.3),
                               num_groups=lambda agent: 3 if agent == "generator" else 2)
        pairs = env_precision.random_pairs(game, 20, seed=0)
    assert shifted["max_abs_diff"] == pytest.approx(1e-3)
    assert shifted["max_diff_share_of_range"] == pytest.approx(1e-3)
    assert shifted["spearman"] == shifted["kendall"] == pytest.approx(1.0)
    assert reversed_["spearman"] == reversed_["kendall"] == pytest.approx(-1.0)
    assert reversed_["max_diff_share_of_range"] == pytest.approx(1.0)
    assert len(pairs) == 20 and all(len(p["generator"]) == 3 and len(p["discriminator"]) == 2
                                    for p in pairs)
    ratios = np.concatenate([np.concatenate(list(p.values())) for p in pairs])
    assert ratios.min() >= 0.3 and ratios.max() <= 1.0


def test_capacity_series_is_one_teachers_and_the_report_names_its_hash(tmp_path):
    with benchmark_script("capacity") as capacity:
        cells = tmp_path / "cells.jsonl"
        other = _capacity_record("uniform_teacher_targets", 1, 174.0, 100)
        other["teacher_sha1"] = "1f3b11a7aa" + "0" * 30
        cells.write_text("".join(json.dumps(r) + "\n" for r in [
            _capacity_record("uniform_teacher_targets", 0, 170.0, 100), other]))
        with pytest.raises(SystemExit, match="distil from 2 teachers"):
            capacity.series_points("mixed", cells, "uniform_teacher_targets", "default")
        cells.write_text(json.dumps(other) + "\n")
        points = capacity.series_points("one", cells, "uniform_teacher_targets", "default")
        md = capacity.report(points, "t", "default", ["cells.jsonl"], tmp_path).read_text()
        assert "teacher SHA-1 per series: one: 1f3b11a7aa" in md


def test_a_screened_search_fine_tunes_the_pair_its_screen_scored_best(compare, tmp_path,
                                                                      monkeypatch):
    """``random_screened_teacher_targets``: the pipeline's screen between the search and the
    fine-tune; the record keeps every score, and the fine-tuned pair is the lowest L1's."""
    import dataclasses

    name = "random_screened_teacher_targets"
    monkeypatch.setitem(compare.METHODS, name,
                        dataclasses.replace(compare.METHODS[name], screen=3, screen_steps=2))
    results = tmp_path / "cells.jsonl"
    assert compare.main(["run", "--quick", "--methods", name, "--seeds", "0", "--rounds", "4",
                         "--finetune-steps", "2", "--eval-images", "8", "--latency-runs", "2",
                         "--out", str(tmp_path), "--results", str(results), "--no-report"]) == 0
    record, = _lines(results)
    scores = record["screen"]["scores"]
    assert record["screen"]["steps"] == 2 and len(scores) == 3 and scores[0]["round"] == -1
    assert record["best"]["kept_channels"] == min(scores, key=lambda s: s["l1_teacher"])[
        "kept_channels"]
    assert record["timing_s"]["screen"] > 0


def test_a_screened_ablation_is_its_ablation_searched_then_screened_as_mggc_is(compare):
    """The paper's claims are tested under the screen only if each ``*_screened`` ablation
    changes exactly one thing against ``mggc_screened_teacher_targets``: its ablation's agent
    options and env, with the same screen and recipe."""
    from compare.spec import ABLATIONS, METHODS

    full = METHODS["mggc_screened_teacher_targets"]
    for name, ablation in ABLATIONS.items():
        screened = METHODS[f"{name}_screened_teacher_targets"]
        assert (screened.agent, screened.params, screened.env) == (
            ablation.agent, ablation.params, ablation.env)
        assert (screened.screen, screened.screen_steps, screened.recipe) == (
            full.screen, full.screen_steps, full.recipe)
    ppo = METHODS["ppo_screened_teacher_targets"]
    assert (ppo.agent, ppo.screen, ppo.recipe) == ("ppo", full.screen, full.recipe)


def test_the_g_alone_control_is_uniform_pruning_with_the_g_alone_ablations_discriminator(compare):
    """G alone fine-tunes against the whole teacher D; its control changes only that against
    uniform pruning, so the two separate the search's share of the difference from D's."""
    from compare.spec import METHODS

    control = METHODS["uniform_full_d_teacher_targets"]
    uniform = METHODS["uniform_teacher_targets"]
    g_alone = METHODS["mggc_g_alone_screened_teacher_targets"]
    assert control.env == g_alone.env == {"budget_d": 1.0}
    assert (control.agent, control.params, control.recipe, control.screen) == (
        uniform.agent, uniform.params, uniform.recipe, uniform.screen)
    assert control.recipe == g_alone.recipe


def test_the_supernet_reward_methods_change_only_the_reward_of_their_base_method(compare):
    """The density-reward searches and their ablations are compared to each other: each is its
    base method (agent, its options, its env) on the supernet's weights with the objective's
    change, today's recipe, no screen; the env they make has that objective and the supernet."""
    from compare.cells import env_kwargs
    from compare.spec import ABLATIONS, ANCHOR_ALONE, DENSITY_ALONE, METHODS, MGGC, PPO, RANDOM

    expected = {"mggc_sn_kde_teacher_targets": (MGGC, DENSITY_ALONE),
                "random_sn_kde_teacher_targets": (RANDOM, DENSITY_ALONE),
                "ppo_sn_kde_teacher_targets": (PPO, DENSITY_ALONE),
                "mggc_no_peer_sn_kde_teacher_targets": (ABLATIONS["mggc_no_peer"], DENSITY_ALONE),
                "mggc_sn_no_density_teacher_targets": (MGGC, ANCHOR_ALONE)}
    recipe = METHODS["mggc_screened_teacher_targets"].recipe
    for name, (base, objective) in expected.items():
        method = METHODS[name]
        assert (method.agent, method.params) == (base.agent, base.params), name
        assert method.env == {**base.env, "objective": objective}, name
        assert method.supernet and method.screen == 0 and method.recipe == recipe, name
        cell = {"task": "default", "budget": 0.1, "method": name, "supernet": "sn.pt"}
        assert env_kwargs(cell)["objective"] == objective
        assert env_kwargs(cell)["supernet"] == "sn.pt"
