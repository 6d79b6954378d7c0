"""Teacher training (Pix2Pix and CycleGAN), resumption, tasks and the shipped default teacher."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import Subset

from gan_prune_env import tasks
from gan_prune_env.checkpoint import CheckpointError, read_checkpoint
from gan_prune_env.config import ConfigError, to_dict
from gan_prune_env.data import DataConfig, build_dataset
from gan_prune_env.losses import GANLoss, gan_loss
from gan_prune_env.families import network_names
from gan_prune_env.models import DiscriminatorConfig, GeneratorConfig, build_generator
from gan_prune_env.models.factory import reinitialize
from gan_prune_env.tasks import TaskConfig, get_task, load_teacher, teacher_train_config
from gan_prune_env.teacher import ImagePool, TeacherTrainConfig, mean_l1, train_teacher
from gan_prune_env.teacher.loop import build_trainer
from gan_prune_env.train_teacher import main


def tiny_config(family: str = "pix2pix", **overrides) -> TeacherTrainConfig:
    """32x32 procedural images, ngf/ndf 4: a run of a few steps takes about a second."""
    if family == "pix2pix":
        generator = GeneratorConfig(arch="unet_auto", ngf=4, image_size=32)
        discriminator = DiscriminatorConfig(input_nc=6, ndf=4)
    else:
        generator = GeneratorConfig(arch="resnet_6blocks", ngf=4, norm="instance", image_size=32)
        discriminator = DiscriminatorConfig(input_nc=3, ndf=4, norm="instance")
    settings = dict(
        family=family, generator=generator, discriminator=discriminator,
        data=DataConfig(crop_size=32, load_size=32, procedural_size=16, max_items=16,
                        mode="aligned" if family == "pix2pix" else "unaligned"),
        n_steps=4, batch_size=2, log_every=1, image_every=2, save_every=2, preview_images=2,
        pool_size=2, progress=False,
    )
    return TeacherTrainConfig(**{**settings, **overrides})


def weights(path: Path) -> dict[str, torch.Tensor]:
    payload = read_checkpoint(path)
    names = [n for n in ("generator", "discriminator", "generator_AB", "generator_BA",
                         "discriminator_A", "discriminator_B") if n in payload]
    return {f"{n}.{k}": v for n in names for k, v in payload[n].items()}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def event_tags(log_dir: Path) -> dict[str, list[str]]:
    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return accumulator.Tags()


# --- losses and image pool ----------------------------------------------------------------------


def test_gan_loss_modes_and_sample_weights():
    pred = torch.tensor([[[[0.5, -1.0]]], [[[2.0, 0.0]]]])  # [N=2, 1, 1, 2]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(pred, torch.ones_like(pred))
    torch.testing.assert_close(gan_loss(pred, True, "vanilla"), bce)
    torch.testing.assert_close(gan_loss(pred, False, "lsgan"), (pred**2).mean())
    torch.testing.assert_close(GANLoss("lsgan")(pred, True), ((pred - 1) ** 2).mean())
    # weights are normalised; a one-hot weight selects one sample's patch mean
    torch.testing.assert_close(gan_loss(pred, False, "lsgan", torch.tensor([3.0, 3.0])),
                               gan_loss(pred, False, "lsgan"))
    torch.testing.assert_close(gan_loss(pred, False, "lsgan", torch.tensor([0.0, 2.0])),
                               (pred[1] ** 2).mean())
    with pytest.raises(ValueError, match="2 sample weights"):
        gan_loss(pred, True, weights=torch.ones(3))
    with pytest.raises(ValueError, match="not one of"):
        gan_loss(pred, True, "wgan")


def test_image_pool_fills_then_mixes_and_resumes_exactly():
    pool = ImagePool(size=2, seed=0)
    first = torch.arange(2.0).reshape(2, 1)
    assert torch.equal(pool.query(first), first)  # filling: images pass through
    saved = pool.state_dict()
    later = [pool.query(torch.full((2, 1), float(i))) for i in range(10, 20)]
    assert any(not torch.equal(out, torch.full((2, 1), float(i)))
               for i, out in zip(range(10, 20), later))  # some stored images come back
    resumed = ImagePool(size=2, seed=123)
    resumed.load_state_dict(saved)
    again = [resumed.query(torch.full((2, 1), float(i))) for i in range(10, 20)]
    assert all(torch.equal(a, b) for a, b in zip(later, again))
    assert torch.equal(ImagePool(size=0).query(first), first)


# --- training runs ----------------------------------------------------------------------------


def test_pix2pix_cli_run_writes_tensorboard_and_teacher(tmp_path):
    config_file = tmp_path / "teacher.yaml"
    config_file.write_text(yaml.safe_dump(to_dict(tiny_config())))
    out = tmp_path / "run"
    assert main(["--config", str(config_file), "--out", str(out)]) == 0

    payload = read_checkpoint(out / "teacher.pt")
    assert payload["kind"] == "teacher" and payload["family"] == "pix2pix"
    assert payload["generator_config"]["arch"] == "unet_auto"
    assert 0 < payload["metadata"]["test_l1"] < 2
    tags = event_tags(out / "tensorboard")
    assert {"loss/G_GAN", "loss/G_L1", "loss/D_real", "loss/D_fake"} <= set(tags["scalars"])
    assert "preview" in tags["images"]
    # a second run into the same folder must resume, not silently start over
    assert main(["--config", str(config_file), "--out", str(out)]) == 2
    assert main(["--config", str(config_file), "--out", str(out), "--resume"]) == 0


def test_teacher_cli_checks_out_and_device_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["--task", "default", "--out", str(a_file / "run")]) == 2
    assert main(["--task", "default", "--out", str(tmp_path / "run"), "--set", "device:tpu"]) == 2
    err = capsys.readouterr().err
    assert "is a file; give a folder" in err and "device 'tpu' is not a device" in err
    assert not (tmp_path / "run").exists()


def test_cyclegan_run_writes_all_four_networks(tmp_path):
    path = train_teacher(tiny_config("cyclegan"), tmp_path)
    payload = read_checkpoint(path)
    assert {"generator_AB", "generator_BA", "discriminator_A", "discriminator_B"} <= set(payload)
    tags = event_tags(tmp_path / "tensorboard")
    assert {"loss/G_AB", "loss/cycle_A", "loss/idt_AB", "loss/D_B"} <= set(tags["scalars"])
    assert "preview" in tags["images"]


@pytest.mark.parametrize("family, overrides", [
    # dropout in the ResNet blocks draws from the global RNG: its state must be restored
    ("pix2pix", {"generator": GeneratorConfig(arch="resnet_6blocks", ngf=4, use_dropout=True)}),
    ("cyclegan", {}),  # the image pools' contents and RNG must be restored
])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, family, overrides):
    config = tiny_config(family, n_steps=6, lr_decay_steps=3, save_every=2, **overrides)
    straight = train_teacher(config, tmp_path / "straight")
    partial = train_teacher(config, tmp_path / "resumed", until_step=3)
    assert partial.name == "train_state_00000003.pt"
    resumed = train_teacher(config, tmp_path / "resumed", resume=True)
    assert_same_weights(straight, resumed)


def test_a_truncated_newest_train_state_falls_back_to_the_older_one(tmp_path, caplog):
    """A save cut short (a full disk, a copy) costs the steps since the previous save, not the
    run: resume warns, sets the file aside and continues bit-identically from the older save."""
    config = tiny_config(n_steps=6, lr_decay_steps=3, save_every=2)
    straight = train_teacher(config, tmp_path / "straight")
    newest = train_teacher(config, tmp_path / "resumed", until_step=4)
    assert (tmp_path / "resumed" / "checkpoints" / "train_state_00000002.pt").exists()
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        resumed = train_teacher(config, tmp_path / "resumed", resume=True)
    assert "train_state_00000004.pt" in caplog.text and "older train_state_00000002" in caplog.text
    assert newest.with_suffix(".unreadable").exists()
    assert_same_weights(straight, resumed)


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a = train_teacher(tiny_config(n_steps=2), tmp_path / "a")
    b = train_teacher(tiny_config(n_steps=2), tmp_path / "b")
    c = train_teacher(tiny_config(n_steps=2, seed=1), tmp_path / "c")
    assert_same_weights(a, b)
    # the same bytes, not only the same weights: benchmark results name their teacher by the
    # file's SHA-1, so a retrain must be recognisable (no training time or path in the file)
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(AssertionError):
        assert_same_weights(a, c)


def _generators_after_first_step(config: TeacherTrainConfig, out: Path,
                                 discriminator_seed: int) -> dict[str, torch.Tensor]:
    """The generators' weights after one training step of ``config`` against discriminators
    re-initialised from ``discriminator_seed`` (the generators start as ``config`` builds them)."""
    trainer = build_trainer(config)
    for offset, name in enumerate(network_names(config.family, "discriminator")):
        reinitialize(trainer.networks[name], seed=discriminator_seed + offset)
    train_teacher(config, out, trainer=trainer)
    return {k: v for k, v in weights(out / "teacher.pt").items() if k.startswith("generator")}


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan"])
def test_adversarial_warmup_starts_the_generators_deaf_to_the_discriminators(tmp_path, family):
    """With a warm-up, the generators' first update ignores which discriminator they face (the
    GAN terms weigh 0 at step 0); without one it does not. Then the weight ramps to 1."""
    warm = tiny_config(family, n_steps=1, adversarial_warmup_steps=4, image_every=0)
    assert [warm.adversarial_weight_at(s) for s in (0, 2, 4, 9)] == [0.0, 0.5, 1.0, 1.0]
    assert tiny_config(family).adversarial_weight_at(0) == 1.0
    for config, same in ((warm, True), (replace(warm, adversarial_warmup_steps=0), False)):
        runs = [_generators_after_first_step(config, tmp_path / f"{same}_{seed}", seed)
                for seed in (100, 200)]
        assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0]) is same


def test_resume_refuses_a_changed_recipe(tmp_path):
    train_teacher(tiny_config(), tmp_path, until_step=2)
    with pytest.raises(ConfigError, match="lambda_l1"):
        train_teacher(tiny_config(lambda_l1=10.0), tmp_path)
    with pytest.raises(FileExistsError):
        train_teacher(tiny_config(), tmp_path, resume=False)


# --- tasks and teachers -------------------------------------------------------------------------


def test_builtin_tasks_and_their_errors(monkeypatch, tmp_path):
    assert get_task("default").generator.arch == "unet_auto"
    cycle = get_task("default_cyclegan")
    assert cycle.family == "cyclegan" and cycle.discriminator.input_nc == 3
    monkeypatch.delenv("GAN_PRUNE_DATA", raising=False)
    with pytest.raises(ConfigError, match="GAN_PRUNE_DATA"):
        get_task("facades")
    facades = get_task({"name": "facades", "generator": {"ngf": 64}}, data_root=str(tmp_path))
    assert facades.data.root == str(tmp_path / "facades") and facades.generator.ngf == 64
    assert facades.data.direction == "BtoA" and facades.image_size == 128
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("nope")
    with pytest.raises(ConfigError, match="teacher_checkpoint"):
        load_teacher({"name": "mine", "data": {"crop_size": 256}})
    with pytest.raises(ConfigError, match="must not set"):
        get_task({"name": "default", "teacher_train": {"family": "cyclegan"}})


def test_wide_task_is_the_default_at_reference_width_and_names_its_teacher_command():
    default, wide = get_task("default"), get_task("default_wide")
    assert (wide.generator.ngf, wide.discriminator.ndf) == (64, 64)
    assert wide.data == default.data and wide.generator.arch == default.generator.arch
    assert teacher_train_config(wide).n_steps == tasks.WIDE_TEACHER_STEPS
    with pytest.raises(ConfigError, match="train_teacher --task default_wide --out DIR"):
        tasks.teacher_path(wide)


def test_teacher_of_another_architecture_is_refused(tmp_path):
    tiny_teacher = train_teacher(tiny_config(n_steps=1), tmp_path / "tiny")
    with pytest.raises(CheckpointError, match="expects GeneratorConfig\\(arch='unet_auto'"):
        load_teacher(TaskConfig(**{**get_task("default").__dict__,
                                   "teacher_checkpoint": str(tiny_teacher)}))
    with pytest.raises(CheckpointError, match="pix2pix checkpoint"):
        load_teacher(TaskConfig(**{**get_task("default_cyclegan").__dict__,
                                   "teacher_checkpoint": str(tiny_teacher)}))


def test_builtin_teacher_is_trained_on_first_use_then_cached(monkeypatch, tmp_path):
    config = tiny_config(n_steps=2)

    def tiny_task(data_root):
        return TaskConfig(name="tiny", data=config.data, generator=config.generator,
                          discriminator=config.discriminator, image_size=32,
                          teacher_train={"n_steps": 2, "batch_size": 2, "progress": False})

    monkeypatch.setitem(tasks.BUILTIN_TASKS, "tiny", tiny_task)
    monkeypatch.setattr(tasks, "FIRST_USE_TEACHERS", {"tiny"})
    monkeypatch.setenv("GAN_PRUNE_CACHE", str(tmp_path))
    generator, discriminator = load_teacher("tiny")
    assert generator(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert len(list(tmp_path.glob("teachers/tiny-*/teacher.pt"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached teacher should be reused")

    monkeypatch.setattr(tasks, "train_teacher", no_training)
    load_teacher("tiny")
    # a variant of the built-in task (e.g. another evaluation resolution) reuses that teacher
    variant = get_task({"name": "tiny", "image_size": 64,
                       "data": {"crop_size": 64, "load_size": 64}})
    assert tasks.teacher_path(variant) == tasks.teacher_path(get_task("tiny"))


def test_processes_that_need_the_same_first_use_teacher_train_it_once(monkeypatch, tmp_path):
    """Two runs started together on a machine without the cached teacher: one trains it, the
    other waits for the lock and finds it built (threads stand in for processes: flock locks
    are per open file, so they exclude each other too)."""
    trained = []

    def slow_training(config, run_dir, resume):
        trained.append(run_dir)
        time.sleep(0.5)
        (Path(run_dir) / tasks.TEACHER_FILE).write_bytes(b"built")

    monkeypatch.setitem(tasks.BUILTIN_TASKS, "tiny", lambda _root: TaskConfig(name="tiny"))
    monkeypatch.setattr(tasks, "FIRST_USE_TEACHERS", {"tiny"})
    monkeypatch.setattr(tasks, "train_teacher", slow_training)
    monkeypatch.setenv("GAN_PRUNE_CACHE", str(tmp_path))
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: tasks.teacher_path(get_task("tiny")), range(2)))
    assert len(trained) == 1 and paths[0] == paths[1] and paths[0].read_bytes() == b"built"


@pytest.mark.parametrize("name", ["default", "default_long"])
def test_shipped_default_teacher_beats_an_untrained_generator(name):
    asset = tasks.SHIPPED_TEACHERS[name]
    assert asset.stat().st_size <= 10 * 2**20
    record = json.loads(asset.with_suffix(".json").read_text())
    assert record["sha256"] == hashlib.sha256(asset.read_bytes()).hexdigest()

    task = get_task(name)
    assert tasks.teacher_path(task, train_if_missing=False) == asset
    generator, discriminator = load_teacher(task)
    assert not generator.training and discriminator.model[0].in_channels == 6
    test_items = Subset(build_dataset(task.data, "test"), range(32))
    teacher_l1 = mean_l1(generator, test_items)
    untrained_l1 = mean_l1(build_generator(task.generator, seed=0), test_items)
    assert teacher_l1 < 0.5 * untrained_l1, (teacher_l1, untrained_l1)


def test_default_long_is_the_default_task_with_its_teacher_trained_four_times_as_long():
    """The JSON beside the shipped file gives ``--task default_long`` as its command: that
    recipe must be the default's with the steps (and what scales with them) changed, or the
    command would not reproduce the file."""
    default, long = (to_dict(teacher_train_config(get_task(n))) for n in ("default",
                                                                          "default_long"))
    changed = {k: (default[k], long[k]) for k in default if default[k] != long[k]}
    assert changed == {"n_steps": (1200, 4800), "lr_decay_steps": (400, 2400),
                       "save_every": (200, 600), "keep_train_states": (default[
                           "keep_train_states"], 100)}
    record = json.loads(tasks.SHIPPED_TEACHERS["default_long"].with_suffix(".json").read_text())
    assert "--task default_long" in record["command"] and record["steps"] == 4800


def test_shipped_cyclegan_teacher_loads_at_once_and_beats_an_untrained_generator():
    """CycleGANPrune-v0 makes in seconds on a fresh install: its teacher ships too. Unpaired,
    it is judged by the CycleGAN protocol's distribution distance, not pixel L1."""
    from gan_prune_env.evaluation import evaluate_generator

    asset = tasks.SHIPPED_TEACHERS["default_cyclegan"]
    record = json.loads(asset.with_suffix(".json").read_text())
    assert record["sha256"] == hashlib.sha256(asset.read_bytes()).hexdigest()
    assert asset.stat().st_size <= 10 * 2**20
    task = get_task("default_cyclegan")
    assert tasks.teacher_path(task, train_if_missing=False) == asset
    generator, _ = load_teacher(task)
    distance = {name: evaluate_generator(net.eval(), task.data, "cyclegan", max_images=50,
                                         progress=False)["proxy_fd"]
                for name, net in (("teacher", generator),
                                  ("untrained", build_generator(task.generator, seed=0)))}
    assert distance["teacher"] < 0.5 * distance["untrained"], distance
