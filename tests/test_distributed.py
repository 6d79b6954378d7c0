"""Data-parallel training with torchrun: 2 CPU processes (gloo) train what 1 process trains.

Each run is a real ``torchrun --nproc_per_node N -m gan_prune_env.train_teacher`` (or ``-m
gan_prune_env.supernet``) on a tiny Pix2Pix task whose networks treat samples independently
(InstanceNorm, no dropout), so the 2-process run must end with the single process's weights up
to float rounding.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gan_prune_env.checkpoint import load_discriminator, load_generator, read_checkpoint
from gan_prune_env.distributed import Distributed

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "family": "pix2pix",
    "generator": {"arch": "unet_auto", "ngf": 4, "image_size": 32, "norm": "instance"},
    "discriminator": {"input_nc": 6, "ndf": 4, "norm": "instance"},
    "data": {"crop_size": 32, "load_size": 32, "procedural_size": 16, "max_items": 16},
    "n_steps": 6, "batch_size": 4, "log_every": 1, "image_every": 3, "save_every": 3,
    "preview_images": 2, "progress": False, "num_threads": 1,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(processes: int, *target: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node processes target`` on gloo, one thread a rank; it must
    succeed."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *target]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def torchrun(processes: int, module: str, *args: str) -> None:
    """``torchrun --nproc_per_node processes -m module args``."""
    run_ranks(processes, "-m", module, *args)


RANK_EXIT = """
import atexit, os, torch.distributed as dist
from gan_prune_env.distributed import current
# one write() a rank: lines shorter than PIPE_BUF reach the shared pipe whole
atexit.register(lambda: os.write(1, f"group alive at exit: {dist.is_initialized()}\\n".encode()))
current("cpu").barrier()
"""


def test_a_rank_leaves_its_process_group_before_the_interpreter_ends(tmp_path):
    """The group is destroyed at exit (atexit handlers run last-registered first, so the
    script's handler, registered before the group exists, sees what is left): an undestroyed
    gloo group can abort a rank whose work was done while the interpreter tears it down."""
    script = tmp_path / "rank_exit.py"
    script.write_text(RANK_EXIT)
    result = run_ranks(2, str(script))
    assert result.stdout.count("group alive at exit: False") == 2, result.stdout


def settings(overrides: tuple[str, ...]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def train(tmp_path: Path, name: str, processes: int, *overrides: str) -> Path:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / name
    torchrun(processes, "gan_prune_env.train_teacher", "--config", str(config), "--out",
             str(out), "--resume", *settings(overrides))
    return out


def assert_same_networks(a: Path, b: Path) -> None:
    """Same weights and the same functions, up to float rounding.

    Biases of convolutions that feed an InstanceNorm are left out of the weight comparison: the
    norm subtracts them, so their gradient is float noise around 0, which Adam's normalisation
    turns into steps of ``lr`` in either direction (they differ by ~1e-3 between any two
    summation orders, and change nothing the networks compute). The outputs check that."""
    left, right = read_checkpoint(a), read_checkpoint(b)
    for name in ("generator", "discriminator"):
        for key, tensor in left[name].items():
            if not key.endswith(".bias"):
                torch.testing.assert_close(tensor, right[name][key], atol=2e-5, rtol=1e-4,
                                           msg=f"{name}.{key}")
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = [load_generator(path).eval()(images) for path in (a, b)]
        verdicts = [load_discriminator(path).eval()(torch.cat([images, out], 1))
                    for path, out in zip((a, b), outputs)]
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(verdicts[0], verdicts[1], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_two_gloo_processes_train_what_one_process_trains(tmp_path):
    single = train(tmp_path, "single", 1)
    double = train(tmp_path, "double", 2)
    assert_same_networks(single / "teacher.pt", double / "teacher.pt")
    # rank 0 alone wrote: one TensorBoard event file, the kept train states, the teacher
    assert len(list((double / "tensorboard").glob("events.*"))) == 1
    assert sorted(p.name for p in (double / "checkpoints").iterdir()) == [
        "train_state_00000003.pt", "train_state_00000006.pt"]
    # the 2-process run is not the 1-process run at the per-rank batch: the global batch counts
    half = train(tmp_path, "half_batch", 1, "batch_size:2")
    with pytest.raises(AssertionError):
        assert_same_networks(half / "teacher.pt", double / "teacher.pt")


@pytest.mark.slow
def test_a_stopped_two_process_run_resumes_to_the_same_weights(tmp_path):
    """Stopped after its step-3 train state (what a killed rank leaves at worst: states are
    written atomically), restarted, it ends where an uninterrupted run ends."""
    straight = train(tmp_path, "straight", 2, "lr_decay_steps:0")
    stopped = train(tmp_path, "stopped", 2, "lr_decay_steps:0", "n_steps:3")
    train(tmp_path, "stopped", 2, "lr_decay_steps:0")
    assert_same_networks(straight / "teacher.pt", stopped / "teacher.pt")


@pytest.mark.slow
def test_two_gloo_processes_train_the_supernet_one_process_trains(tmp_path):
    """The supernet trains through the same loop: every rank draws the same sandwich of
    sub-networks and trains on its rows, so 2 processes end where 1 ends, sub-networks too."""
    from gan_prune_env.pruning import ChannelMasker
    from gan_prune_env.supernet import SandwichSampler, SupernetConfig, _space
    from gan_prune_env.tasks import get_task

    teacher = train(tmp_path, "teacher", 1, "n_steps:2") / "teacher.pt"
    task_file = tmp_path / "task.yaml"
    task_file.write_text(yaml.safe_dump({
        "name": "tiny", "family": "pix2pix", "image_size": 32, "teacher_checkpoint": str(teacher),
        **{key: TINY[key] for key in ("data", "generator", "discriminator")}}))
    recipe = ("steps:6", "batch_size:4", "lr_decay_steps:2", "save_every:3", "image_every:0",
              "min_keep:0.25")
    files = []
    for processes in (1, 2):
        out = tmp_path / f"supernet_{processes}"
        torchrun(processes, "gan_prune_env.supernet", "--task", str(task_file), "--out",
                 str(out), "--resume", *settings(recipe))
        files.append(out / "supernet.pt")
    assert len(list((tmp_path / "supernet_2" / "tensorboard").glob("events.*"))) == 1
    task = get_task(task_file)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    outputs = []
    for path in files:
        supernet = load_generator(path).eval()
        space = _space(supernet, task.generator.input_nc, task, "l1", 1, "cpu")
        smallest = SandwichSampler(space, SupernetConfig(min_keep=0.25), "").smallest()
        with torch.no_grad(), ChannelMasker(supernet, space) as masker:
            full = supernet(images)
            masker.set_counts(smallest)
            outputs.append((full, supernet(images)))
    with torch.no_grad():
        moved = (outputs[0][0] - load_generator(teacher).eval()(images)).abs().max()
    assert moved > 1e-3  # the supernet did train
    for one, two in zip(*outputs):
        torch.testing.assert_close(one, two, atol=1e-4, rtol=1e-4)


def test_a_global_batch_must_divide_by_the_processes():
    ranks = Distributed(rank=1, world_size=2, local_rank=1)
    assert ranks.check_batch(8) == 4
    with pytest.raises(ValueError, match="multiple of 2"):
        ranks.check_batch(5)
    batch = {"A": torch.arange(8).view(4, 2), "path": ["a", "b", "c", "d"]}
    assert ranks.shard(batch)["A"].tolist() == [[4, 5], [6, 7]]
    assert ranks.device("cuda") == "cuda:1" and ranks.device("cpu") == "cpu"


class _Rank1Of2(Distributed):
    """Rank 1 of 2 with the collectives switched off: what one rank does on its own."""

    def barrier(self) -> None:
        pass

    def mean(self, values):
        return values

    def broadcast_from_main(self, networks) -> None:
        pass

    def average_gradients_before_steps(self, optimizers):
        return []


def test_a_rank_trains_on_its_rows_of_the_global_batch_and_writes_nothing(tmp_path,
                                                                           monkeypatch):
    from gan_prune_env.config import from_dict
    from gan_prune_env.teacher import loop
    from gan_prune_env.teacher.config import TeacherTrainConfig
    from gan_prune_env.teacher.pix2pix import Pix2PixTrainer

    config = from_dict(TeacherTrainConfig, {**TINY, "n_steps": 2})
    seen: list[torch.Tensor] = []
    original = Pix2PixTrainer.train_step
    monkeypatch.setattr(Pix2PixTrainer, "train_step",
                        lambda self, batch: seen.append(batch["A"]) or original(self, batch))
    loop.train_teacher(config, tmp_path / "single")
    full = list(seen)
    seen.clear()
    monkeypatch.setattr(loop, "current", lambda device: _Rank1Of2(1, 2, 1))
    out = tmp_path / "rank1"
    loop.train_teacher(config, out)
    assert [batch.shape[0] for batch in seen] == [2, 2]
    for mine, whole in zip(seen, full):
        assert torch.equal(mine, whole[2:4])
    assert not out.exists() or not any(out.rglob("*.pt")) and not any(out.rglob("events.*"))


def _average_on_rank(rank: int, init_file: str, results: str) -> None:
    """Rank ``rank`` of 2: its gradient is rank + 1; one SGD step of lr 1 after the hook."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        weight = torch.nn.Parameter(torch.zeros(3))
        optimizer = torch.optim.SGD([weight], lr=1.0)
        Distributed(rank=rank, world_size=2).average_gradients_before_steps([optimizer])
        weight.grad = torch.full((3,), float(rank + 1))
        optimizer.step()
        Path(results, f"rank{rank}.txt").write_text(str(weight.tolist()))
        dist.barrier()  # neither rank tears gloo down while the other still talks (SIGABRT)
    finally:
        dist.destroy_process_group()


def test_gradients_are_averaged_over_the_ranks_before_the_step(tmp_path):
    """With SGD (unlike Adam, which is blind to a constant gradient scale) a sum instead of a
    mean, or no all-reduce at all, would move the weights elsewhere."""
    torch.multiprocessing.spawn(_average_on_rank, args=(str(tmp_path / "init"), str(tmp_path)),
                                nprocs=2, join=True)
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == str([-1.5] * 3)


def _batchnorm_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1),
                                                   torch.nn.BatchNorm2d(4)))


def test_sync_batchnorm_swaps_in_layers_sharing_the_weights_and_swaps_them_back():
    """Inside, SyncBatchNorm layers holding the very parameters and buffers of the BatchNorms
    (the optimiser and the checkpoints keep seeing them); outside, the original layers."""
    net = _batchnorm_net()
    originals = [net[1], net[2][1]]
    images = torch.randn(4, 3, 8, 8)
    expected = net(images)  # train mode: batch statistics, running ones updated
    with Distributed(rank=0, world_size=2).synchronised_batchnorm([net], "cuda"):
        inside = [net[1], net[2][1]]
        assert all(isinstance(m, torch.nn.SyncBatchNorm) for m in inside)
        for sync, bn in zip(inside, originals):
            assert sync.weight is bn.weight and sync.bias is bn.bias
            assert sync.running_mean is bn.running_mean and sync.running_var is bn.running_var
        # no process group here: a SyncBatchNorm then normalises as a BatchNorm does
        torch.testing.assert_close(net(images), expected)
    assert [net[1], net[2][1]] == originals
    assert int(originals[0].num_batches_tracked) == 2  # both passes counted on the one buffer
    with Distributed().synchronised_batchnorm([net], "cpu"):  # one process: nothing to swap
        assert [net[1], net[2][1]] == originals


def test_sync_batchnorm_is_refused_on_cpu_ranks_and_over_hooked_norms():
    net = _batchnorm_net()
    ranks = Distributed(rank=0, world_size=2)
    with pytest.raises(ValueError, match="CUDA devices"):
        with ranks.synchronised_batchnorm([net], "cpu"):
            pass
    net[1].register_forward_hook(lambda *args: None)
    with pytest.raises(ValueError, match=r"\['1'\] carry forward hooks"):
        with ranks.synchronised_batchnorm([net], "cuda"):
            pass
    assert isinstance(net[1], torch.nn.BatchNorm2d)


def test_training_with_sync_batchnorm_on_cpu_ranks_stops_before_the_first_step(tmp_path,
                                                                               monkeypatch):
    from gan_prune_env.config import from_dict
    from gan_prune_env.finetune import FinetuneConfig, train_config
    from gan_prune_env.tasks import get_task
    from gan_prune_env.teacher import loop
    from gan_prune_env.teacher.config import TeacherTrainConfig
    from gan_prune_env.teacher.pix2pix import Pix2PixTrainer

    assert train_config(get_task("default"), FinetuneConfig(sync_batchnorm=True), 0, "cpu",
                        False).sync_batchnorm
    config = from_dict(TeacherTrainConfig, {**TINY, "n_steps": 2, "sync_batchnorm": True})
    monkeypatch.setattr(loop, "current", lambda device: _Rank1Of2(1, 2, 1))
    monkeypatch.setattr(Pix2PixTrainer, "train_step", lambda self, batch: pytest.fail("trained"))
    with pytest.raises(ValueError, match="sync_batchnorm needs CUDA"):
        loop.train_teacher(config, tmp_path / "rank1")
