"""Weight-sharing supernets: the sandwich rule, what training does to sub-networks, BatchNorm
statistics, exact resumption, and the env's ``supernet`` option with its checks."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_prune_env.checkpoint import (
    CheckpointError, load_generator, make_checkpoint, read_checkpoint, save_checkpoint,
)
from gan_prune_env.config import ConfigError
from gan_prune_env.data import DataConfig, build_dataset
from gan_prune_env.envs import GANPruneParallelEnv, ratios_to_action
from gan_prune_env.losses import l1_loss
from gan_prune_env.models import DiscriminatorConfig, GeneratorConfig
from gan_prune_env.pruning import ChannelMasker
from gan_prune_env.supernet import (
    SUPERNET_FILE, SandwichSampler, SupernetConfig, frozen_norm_statistics, space_rankings,
    train_supernet, weights_digest,
)
from gan_prune_env.supernet.__main__ import main as supernet_main
from gan_prune_env.tasks import TaskConfig, get_task, teacher_path
from gan_prune_env.teacher.base import build_networks
from gan_prune_env.teacher.config import TeacherTrainConfig

SIZE = 32
SMALL_ENV = {"eval_size": 4, "pool_size": 6, "k": 2, "rounds": 2}


def tiny_task(teacher: Path | None = None, d_norm: str = "batch") -> TaskConfig:
    """32x32 procedural images, a U-Net of ngf 4 (a step takes milliseconds)."""
    data = DataConfig(crop_size=SIZE, load_size=SIZE, procedural_size=16, max_items=16)
    return TaskConfig(name="tiny", family="pix2pix", data=data,
                      generator=GeneratorConfig(arch="unet_auto", ngf=4, image_size=SIZE),
                      discriminator=DiscriminatorConfig(input_nc=6, ndf=4, norm=d_norm),
                      image_size=SIZE, teacher_checkpoint=None if teacher is None else str(teacher))


def _save_tiny_teacher(folder: Path, d_norm: str = "batch") -> Path:
    """An untrained pair of the tiny task's architecture, saved as its teacher."""
    task = tiny_task(d_norm=d_norm)
    config = TeacherTrainConfig(data=task.data, generator=task.generator,
                                discriminator=task.discriminator, seed=3)
    path = folder / "teacher.pt"
    save_checkpoint(path, make_checkpoint("teacher", "pix2pix", build_networks(config),
                                          task.generator, task.discriminator))
    return path


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    return _save_tiny_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def plain_d_task(tmp_path_factory) -> TaskConfig:
    """The tiny task with a discriminator without normalisation: its logits on a batch of
    teacher outputs and on one of sub-network outputs can be compared (a BatchNorm D would
    normalise each batch into looking like the other)."""
    return tiny_task(_save_tiny_teacher(tmp_path_factory.mktemp("plain_d"), "none"), "none")


def quick(**overrides) -> SupernetConfig:
    settings = dict(steps=6, batch_size=2, lr_decay_steps=2, save_every=3, log_every=1,
                    image_every=0, min_keep=0.25)
    return SupernetConfig(**{**settings, **overrides})


def teacher_and_space(task: TaskConfig):
    from gan_prune_env.supernet import _space
    from gan_prune_env.tasks import load_teacher

    teacher, _ = load_teacher(task)
    return teacher, _space(teacher, task.generator.input_nc, task, "l1", 1, "cpu")


def fixed_inputs(task: TaskConfig, count: int = 4) -> torch.Tensor:
    dataset = build_dataset(task.data, "train")
    return torch.stack([dataset[i]["A"] for i in range(count)])


# --- the sandwich rule ------------------------------------------------------------------------


def test_sandwich_has_the_largest_the_smallest_and_random_subnetworks(tiny_teacher):
    task = tiny_task(tiny_teacher)
    _, space = teacher_and_space(task)
    sampler = SandwichSampler(space, quick(random_subnets=3, min_keep=0.25), "digest")
    names, counts = zip(*sampler.step_architectures())
    assert names == ("largest", "smallest", "random", "random", "random")
    assert np.array_equal(counts[0], space.num_channels)
    assert np.array_equal(counts[1], space.counts_for_ratios(np.full(space.num_groups, 0.25)))
    draws = [sampler.random() for _ in range(200)]
    for c in draws:
        assert np.all(c >= counts[1]) and np.all(c <= space.num_channels)
    ratios = [space.macs_ratio(c) for c in draws]
    # log-uniform global widths: both ends of the compute range are visited
    assert min(ratios) < 0.15 and max(ratios) > 0.6
    # non-uniform shapes: groups of one draw differ in keep ratio
    kept = [c / space.num_channels for c in draws]
    assert np.mean([np.ptp(k) for k in kept]) > 0.1
    again = SandwichSampler(space, quick(random_subnets=3, min_keep=0.25), "digest")
    again.step_architectures()
    assert all(np.array_equal(a, b) for a, b in zip(draws, [again.random() for _ in range(200)]))


def test_random_widths_narrow_the_random_subnetworks_to_a_budget(tiny_teacher):
    """``random_widths`` bounds the random sub-networks' global keep ratio (the largest and
    the smallest stay); unset, the draws are those of ``[min_keep, 1]``; bad ranges refused."""
    task = tiny_task(tiny_teacher)
    _, space = teacher_and_space(task)
    narrow = SandwichSampler(space, quick(min_keep=0.25, width_jitter=0.0,
                                          random_widths=[0.4, 0.5]), "digest")
    draws = [narrow.random() / space.num_channels for _ in range(100)]
    assert min(d.min() for d in draws) > 0.3 and max(d.max() for d in draws) < 0.6
    assert np.ptp([d.mean() for d in draws]) > 0.03  # still a range, not one width
    names, counts = zip(*narrow.step_architectures())
    assert np.array_equal(counts[0], space.num_channels)
    every = SandwichSampler(space, quick(min_keep=0.25, random_widths=[0.25, 1.0]), "digest")
    unset = SandwichSampler(space, quick(min_keep=0.25), "digest")
    assert all(np.array_equal(every.random(), unset.random()) for _ in range(20))
    assert "random_widths" not in unset.state_dict()  # older train states still resume
    for bad in ([0.1, 0.5], [0.5, 0.4], [0.3, 1.2], [0.3]):
        with pytest.raises(ValueError, match="random_widths"):
            quick(min_keep=0.25, random_widths=bad)


def test_frozen_norm_statistics_keep_running_statistics(tiny_teacher):
    teacher, _ = teacher_and_space(tiny_task(tiny_teacher))
    net = copy.deepcopy(teacher).train()
    x = torch.randn(2, 3, SIZE, SIZE)
    before = copy.deepcopy(net.state_dict())
    with frozen_norm_statistics(net):
        net(x)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()
               if "running" in k)
    net(x)
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items()
               if "running" in k)


# --- training -------------------------------------------------------------------------------


def test_training_pulls_the_smallest_subnetwork_to_the_teacher(tiny_teacher, tmp_path):
    """Before training the supernet is the teacher; its smallest sub-network (the teacher's
    weights, masked) is far from the teacher's outputs. Sandwich training must bring it about as
    close as the full network."""
    task = tiny_task(tiny_teacher)
    teacher, space = teacher_and_space(task)
    inputs = fixed_inputs(task)
    with torch.no_grad():
        target = teacher.eval()(inputs)

    def distance(generator, counts) -> float:
        net = copy.deepcopy(generator).train()
        with ChannelMasker(net, space) as masker, torch.no_grad(), frozen_norm_statistics(net):
            masker.set_counts(counts)
            return float(l1_loss(net(inputs), target))

    path = train_supernet(task, quick(steps=40, lr=2e-3, lr_decay_steps=0, save_every=40),
                          tmp_path, progress=False)
    assert path.name == SUPERNET_FILE
    supernet = read_checkpoint(path)
    trained = load_generator(supernet)
    smallest = space.counts_for_ratios(np.full(space.num_groups, 0.25))
    before, after = distance(teacher, smallest), distance(trained, smallest)
    assert after < 0.5 * before, (before, after)
    # trained as a sub-network, the smallest gets about as close as the full network (trained
    # as the full network alone, it stays about four times further away)
    assert after < 2 * distance(trained, space.num_channels)
    info = supernet["metadata"]["supernet"]
    assert info["teacher"] == weights_digest(teacher)
    assert info["rankings"] == space_rankings(space)


def density_inputs(task: TaskConfig) -> dict:
    """A local-density objective and training pool for ``task``, built as the env builds its
    own (the objective's defaults; the teacher's D as feature map)."""
    from gan_prune_env.objective import ObjectiveConfig, build_objective
    from gan_prune_env.tasks import load_teacher

    teacher, discriminator = load_teacher(task)
    teacher.eval().requires_grad_(False)
    discriminator.eval().requires_grad_(False)
    inputs = fixed_inputs(task, 6)
    with torch.no_grad():
        outputs = teacher(inputs)
    objective = build_objective(ObjectiveConfig(k=2), discriminator, True, inputs, outputs)
    return {"objective": objective, "pool": objective.build_pool(inputs, outputs)}


@pytest.mark.parametrize("settings", [{}, {"gan_weight": 0.5}, {"density_weight": 1.0},
                                      {"critic": True}])
def test_resumed_supernet_training_is_exact(tiny_teacher, tmp_path, settings):
    task = tiny_task(tiny_teacher)
    config = quick(**settings)
    inputs = density_inputs(task) if {"density_weight", "critic"} & set(settings) else {}
    whole = read_checkpoint(train_supernet(task, config, tmp_path / "whole", progress=False,
                                           **inputs))
    train_supernet(task, config, tmp_path / "resumed", until_step=3, progress=False, **inputs)
    resumed = read_checkpoint(train_supernet(task, config, tmp_path / "resumed",
                                             progress=False, **inputs))
    gan_weight = settings.get("gan_weight", 0.0)
    with_d = gan_weight or settings.get("critic", False)
    trained = ["generator", "discriminator"] if with_d else ["generator"]
    for name in trained:
        assert all(torch.equal(whole[name][k], resumed[name][k]) for k in whole[name])
    if with_d:  # the adversarial term's D (or the critic) is trained from the teacher's, kept
        teacher_d = read_checkpoint(tiny_teacher)["discriminator"]
        assert any(not torch.equal(whole["discriminator"][k], teacher_d[k]) for k in teacher_d)
    else:
        assert "discriminator" not in whole
    with pytest.raises(ConfigError, match="random_subnets"):
        train_supernet(task, quick(**settings, random_subnets=1), tmp_path / "resumed",
                       progress=False, **inputs)
    if not settings.get("critic"):
        with pytest.raises(ConfigError, match="gan_weight"):
            train_supernet(task, quick(**{**settings, "gan_weight": 0.25}),
                           tmp_path / "resumed", progress=False, **inputs)
    if "density_weight" in settings:
        with pytest.raises(ConfigError, match="density_pool_size"):
            train_supernet(task, quick(**settings, density_pool_size=5), tmp_path / "resumed",
                           progress=False, **inputs)


# --- the local-density term ---------------------------------------------------------------------


class KnownDensity:
    """A stand-in density term whose gradient is known: ``weight * sum(p)`` of the supernet's
    first parameter ``p`` has gradient ``weight`` on each of its entries, whatever the masks."""

    def __init__(self, student: torch.nn.Module, weight: float) -> None:
        self.student, self.weight = student, weight

    def loss(self):
        return self.weight * next(self.student.parameters()).sum(), {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state) -> None:
        pass


def _first_parameter_after_a_step(task: TaskConfig, density_weight: float | None
                                  ) -> torch.Tensor:
    """The supernet's first parameter after one plain gradient step (lr 1) of the sandwich
    loss, with a :class:`KnownDensity` of ``density_weight`` (None: no density term)."""
    from gan_prune_env.supernet import SupernetTrainer

    teacher, space = teacher_and_space(task)
    supernet = copy.deepcopy(teacher).train()
    density = None if density_weight is None else KnownDensity(supernet, density_weight)
    trainer = SupernetTrainer("pix2pix", supernet, teacher, space,
                              SandwichSampler(space, quick(), "digest"), lr=1e-3,
                              density=density)
    trainer.optimizers["generator"] = torch.optim.SGD(supernet.parameters(), lr=1.0)
    losses = trainer.train_step({"A": fixed_inputs(task)})
    if density is not None:
        assert losses["G_density_smallest"] == pytest.approx(
            density_weight * next(teacher.parameters()).sum().item(), rel=1e-5)
    return next(supernet.parameters()).detach().clone()


def test_the_density_term_is_added_to_every_subnetworks_loss(tiny_teacher):
    """Every sub-network's loss is its L1 plus the density term (averaged over the step's
    sub-networks): with a term of known gradient ``w`` on one parameter, one step of plain
    gradient descent moves that parameter by exactly ``-w`` more than the L1 alone does (a
    subtracted term moves it by ``+w``, a dropped one not at all)."""
    task = tiny_task(tiny_teacher)
    without = _first_parameter_after_a_step(task, None)
    with_term = _first_parameter_after_a_step(task, 0.125)
    assert torch.allclose(with_term - without, torch.full_like(without, -0.125), atol=1e-6)


def test_a_density_term_needs_the_objective_and_runs_the_supernet(tiny_teacher, tmp_path):
    from gan_prune_env.supernet import SupernetTrainer

    task = tiny_task(tiny_teacher)
    with pytest.raises(ValueError, match="both the objective and its pool"):
        train_supernet(task, quick(density_weight=1.0), tmp_path, progress=False,
                       objective=density_inputs(task)["objective"])
    with pytest.raises(ValueError, match="fewer than density_pool_size=64; lower it"):
        train_supernet(task, quick(density_weight=1.0), tmp_path, progress=False)
    built = train_supernet(task, quick(density_weight=1.0, density_pool_size=6, steps=2),
                           tmp_path / "built", progress=False)  # its own objective and pool
    assert read_checkpoint(built)["metadata"]["supernet"]["config"]["density_pool_size"] == 6
    teacher, space = teacher_and_space(task)
    with pytest.raises(ValueError, match="must run the supernet itself"):
        SupernetTrainer("pix2pix", copy.deepcopy(teacher), teacher, space,
                        SandwichSampler(space, quick(), "digest"), lr=1e-3,
                        density=KnownDensity(teacher, 1.0))
    for bad in ({"density_weight": -1.0}, {"density_weight": float("inf")},
                {"density_centers": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            quick(**bad)


def test_the_density_term_without_an_env_uses_the_envs_objective_and_pool():
    """The command line's density term (no env) is the env's at its defaults: the same 64
    training images, teacher outputs, features and neighbourhoods."""
    from gan_prune_env.envs.config import EnvConfig
    from gan_prune_env.envs.preparation import prepare_task
    from gan_prune_env.supernet import density_objective
    from gan_prune_env.tasks import load_teacher

    env_config = EnvConfig()
    prepared = prepare_task(env_config)
    teacher, discriminator = load_teacher(prepared.task)
    objective, pool = density_objective(prepared.task, teacher, discriminator,
                                        env_config.pool_size, env_config.seed, "cpu")
    expected = prepared.train_pool
    for name in ("inputs", "outputs", "features"):
        assert torch.allclose(getattr(pool, name), getattr(expected, name), atol=1e-6), name
    assert torch.equal(pool.neighbourhoods.neighbours, expected.neighbourhoods.neighbours)
    assert objective.gan_mode == prepared.objective.gan_mode == "vanilla"


def test_supernet_command_trains_with_the_density_term(tmp_path):
    """``--set density_weight:W`` on the command line: the objective at its defaults."""
    out = tmp_path / "density"
    assert supernet_main(["--task", "default", "--out", str(out), "--set", "steps:2",
                          "--set", "batch_size:2", "--set", "density_weight:0.5",
                          "--set", "image_every:0"]) == 0
    config = read_checkpoint(out / "supernet.pt")["metadata"]["supernet"]["config"]
    assert config["density_weight"] == 0.5


# --- the critic supernet -----------------------------------------------------------------------


def _state_without_counters(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_the_critic_trains_the_discriminator_and_leaves_the_generator_alone(tiny_teacher,
                                                                            tmp_path):
    """With a critic the file's discriminator is the teacher's D trained (weights moved, its
    norms' running statistics the teacher's: it trains in eval mode, as the env judges), and the
    generator supernet is exactly the one trained without a critic."""
    task = tiny_task(tiny_teacher)
    inputs = density_inputs(task)
    with_critic = read_checkpoint(train_supernet(task, quick(critic=True), tmp_path / "critic",
                                                 progress=False, **inputs))
    alone = read_checkpoint(train_supernet(task, quick(), tmp_path / "alone", progress=False))
    g_critic, g_alone = (_state_without_counters(p["generator"]) for p in (with_critic, alone))
    assert all(torch.equal(g_critic[k], g_alone[k]) for k in g_alone)
    teacher_d = read_checkpoint(tiny_teacher)["discriminator"]
    critic = with_critic["discriminator"]
    statistics = [k for k in teacher_d if "running" in k]
    assert statistics and all(torch.equal(critic[k], teacher_d[k]) for k in statistics)
    assert any(not torch.equal(critic[k], teacher_d[k]) for k in teacher_d if "weight" in k)
    info = with_critic["metadata"]["supernet"]
    assert info["config"]["critic"] and info["critic_rankings"]


def test_the_critic_minimises_the_objectives_discriminator_loss(tiny_teacher):
    """A few gradient steps of the critic on fixed outputs lower the objective's
    discriminator loss of the sub-networks it trains (a flipped sign raises it)."""
    from gan_prune_env.pruning import ChannelSpace, make_importance
    from gan_prune_env.supernet.critic import CriticSandwich
    from gan_prune_env.tasks import load_teacher

    task = tiny_task(tiny_teacher)
    teacher, discriminator = load_teacher(task)
    inputs = density_inputs(task)
    objective, pool = inputs["objective"], inputs["pool"]
    critic = copy.deepcopy(discriminator).requires_grad_(True)
    space = ChannelSpace(critic, torch.zeros(1, 6, SIZE, SIZE), importance=make_importance("l1"))
    sandwich = CriticSandwich(critic, space, SandwichSampler(space, quick(random_subnets=0),
                                                             "digest"), objective, pool, 3, 0)
    batch = sandwich.draw()
    with torch.no_grad():
        outputs = teacher(batch.inputs) + 0.5 * torch.randn(batch.inputs.shape,
                                                           generator=torch.Generator().manual_seed(0))
    judged = [(batch, outputs), (batch, outputs)]  # the largest's, the smallest's
    def discriminator_loss() -> float:  # the objective's own, summed over the sub-networks
        return sum(v[0] for v in sandwich.loss(judged)[1].values())

    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    first = discriminator_loss()
    for _ in range(10):
        optimizer.zero_grad()
        loss, losses = sandwich.loss(judged)
        loss.backward()
        optimizer.step()
    assert set(losses) == {"D_density_largest", "D_density_smallest"}
    assert discriminator_loss() < first - 0.05
    with pytest.raises(ValueError, match="1 generator outputs for 2"):
        sandwich.loss(judged[:1])


def test_env_judges_with_the_critic_it_is_given(tmp_path):
    from gan_prune_env.checkpoint import load_discriminator

    path = train_supernet(get_task("default"), quick(steps=2, critic=True, lr=2e-3),
                          tmp_path / "critic", progress=False)
    env = GANPruneParallelEnv(**SMALL_ENV, supernet=str(path))
    frozen = GANPruneParallelEnv(**SMALL_ENV)
    critic = load_discriminator(path).state_dict()
    judging = env.game.discriminator.state_dict()
    assert all(torch.equal(judging[k], critic[k].to(judging[k].dtype)) for k in critic)
    teacher = frozen.game.discriminator.state_dict()
    assert any(not torch.equal(judging[k], teacher[k]) for k in teacher)
    payload = read_checkpoint(path)
    payload["metadata"]["supernet"]["critic_rankings"]["model.0"] = [0]
    tampered = save_checkpoint(tmp_path / "tampered.pt", {k: v for k, v in payload.items()
                                                          if k != "path"})
    with pytest.raises(CheckpointError, match="discriminator channel rankings differ"):
        GANPruneParallelEnv(**SMALL_ENV, supernet=str(tampered))


def test_a_critic_is_refused_where_it_cannot_be_the_envs_discriminator(tmp_path):
    with pytest.raises(ValueError, match="critic and gan_weight"):
        quick(critic=True, gan_weight=0.01)
    with pytest.raises(ValueError, match="for Pix2Pix tasks"):
        train_supernet(get_task("default_cyclegan"), quick(critic=True), tmp_path,
                       progress=False)


# --- the adversarial term -----------------------------------------------------------------------


def _adversarial_trainer(task, gan_weight: float):
    from gan_prune_env.supernet import SupernetTrainer
    from gan_prune_env.tasks import load_teacher

    teacher, space = teacher_and_space(task)
    _, discriminator = load_teacher(task)
    trainer = SupernetTrainer("pix2pix", copy.deepcopy(teacher).train(), teacher, space,
                              SandwichSampler(space, quick(random_subnets=0), "digest"),
                              lr=1e-3, discriminator=discriminator.train(),
                              gan_weight=gan_weight)
    return trainer, space


def _train(trainer, inputs: torch.Tensor, steps: int, lr_g: float, lr_d: float) -> dict:
    """``steps`` updates at these rates (0 holds a network still); the last step's losses."""
    for name, lr in (("generator", lr_g), ("discriminator", lr_d)):
        for group in trainer.optimizers[name].param_groups:
            group["lr"] = lr
    losses = {}
    for _ in range(steps):
        losses = trainer.train_step({"A": inputs})
    return losses


def _judge(trainer, space, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator's logits on the teacher's outputs and on the smallest sub-network's
    (no gradient)."""
    supernet, discriminator = trainer.networks["generator"], trainer.networks["discriminator"]
    with torch.no_grad(), frozen_norm_statistics(supernet), \
            ChannelMasker(supernet, space) as masker:
        masker.set_counts(space.counts_for_ratios(np.full(space.num_groups, 0.25)))
        fake = supernet(inputs)
        real = trainer.teacher(inputs)
        return tuple(discriminator(torch.cat([inputs, image], 1)) for image in (real, fake))


def _d_loss(trainer, space, inputs: torch.Tensor) -> float:
    """D's loss of telling the teacher's outputs (real) from a sub-network's (fake), computed
    apart from the trainer."""
    from gan_prune_env.losses import gan_loss

    real, fake = _judge(trainer, space, inputs)
    return (gan_loss(real, True) + gan_loss(fake, False)).item()


def test_the_discriminator_learns_the_teacher_from_the_subnetworks(plain_d_task):
    """With the generator held still, D's updates lower its loss of telling the teacher's
    outputs from a sub-network's (swapped labels raise it)."""
    trainer, space = _adversarial_trainer(plain_d_task, gan_weight=1.0)
    inputs = fixed_inputs(plain_d_task)
    before = _d_loss(trainer, space, inputs)
    losses = _train(trainer, inputs, steps=30, lr_g=0.0, lr_d=1e-2)
    assert _d_loss(trainer, space, inputs) < before - 0.05, (before, _d_loss(trainer, space,
                                                                             inputs))
    assert {"D_real", "D_fake", "G_GAN_largest", "G_GAN_smallest", "L1_smallest"} <= set(losses)


def test_the_adversarial_term_moves_subnetworks_towards_what_d_calls_real(plain_d_task):
    """Once D tells them apart, generator updates with the adversarial term dominant (D held
    still) raise D's logit on a sub-network's outputs (a flipped target lowers it)."""
    trainer, space = _adversarial_trainer(plain_d_task, gan_weight=1e3)
    inputs = fixed_inputs(plain_d_task)
    _train(trainer, inputs, steps=30, lr_g=0.0, lr_d=1e-2)
    before = _judge(trainer, space, inputs)[1].mean().item()
    _train(trainer, inputs, steps=3, lr_g=5e-3, lr_d=0.0)
    after = _judge(trainer, space, inputs)[1].mean().item()
    assert after > before + 0.1, (before, after)


def test_an_adversarial_term_needs_a_discriminator_and_a_weight(tiny_teacher):
    from gan_prune_env.supernet import SupernetTrainer

    task = tiny_task(tiny_teacher)
    teacher, space = teacher_and_space(task)
    sampler = SandwichSampler(space, quick(), "digest")
    with pytest.raises(ValueError, match="both a discriminator and gan_weight"):
        SupernetTrainer("pix2pix", copy.deepcopy(teacher), teacher, space, sampler, lr=1e-3,
                        gan_weight=0.01)
    for bad in ({"gan_weight": -0.1}, {"gan_weight": float("nan")}, {"gan_mode": "wgan"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            quick(**bad)


def test_supernet_command_rejects_a_misspelt_key(tmp_path, capsys):
    assert supernet_main(["--task", "default", "--out", str(tmp_path), "--set", "stepz:3"]) == 2
    assert "unknown key(s) ['stepz']" in capsys.readouterr().err


def test_supernet_command_refuses_an_out_folder_it_cannot_write_before_training(tmp_path,
                                                                               capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert supernet_main(["--task", "default", "--out", str(blocker / "run")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


# --- the env's supernet option ------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_supernet(tmp_path_factory) -> Path:
    """A supernet of the default task's shipped teacher after a few steps."""
    out = tmp_path_factory.mktemp("supernet")
    return train_supernet(get_task("default"), quick(steps=4, lr=2e-3), out, progress=False)


def test_env_scores_architectures_with_the_supernet_weights(default_supernet):
    frozen = GANPruneParallelEnv(**SMALL_ENV)
    shared = GANPruneParallelEnv(**SMALL_ENV, supernet=str(default_supernet))
    weights = read_checkpoint(default_supernet)["generator"]
    start = shared.game.generator.state_dict()
    assert all(torch.equal(start[k], weights[k].to(start[k].dtype)) for k in weights)
    # the teacher stays the objective's reference: same neighbourhoods, same teacher outputs
    assert torch.equal(frozen.game.eval_batch.outputs, shared.game.eval_batch.outputs)
    rewards = []
    for env in (frozen, shared):
        env.reset(seed=0)
        actions = {a: ratios_to_action(np.full(env.game.num_groups(a), 0.3), 0.05)
                   for a in env.possible_agents}
        rewards.append(env.step(actions)[1]["generator"])
    assert rewards[0] != rewards[1]


def test_env_refuses_a_file_that_is_not_a_matching_supernet(default_supernet, tmp_path):
    with pytest.raises(CheckpointError, match="not a supernet checkpoint"):
        GANPruneParallelEnv(**SMALL_ENV, supernet=str(teacher_path(get_task("default"))))
    with pytest.raises(CheckpointError, match="divisor"):
        GANPruneParallelEnv(**SMALL_ENV, supernet=str(default_supernet), divisor=2)
    # the same file claiming another teacher
    payload = read_checkpoint(default_supernet)
    payload["metadata"]["supernet"]["teacher"] = "0" * 40
    other = save_checkpoint(tmp_path / "other.pt", {k: v for k, v in payload.items()
                                                    if k != "path"})
    with pytest.raises(CheckpointError, match="another teacher"):
        GANPruneParallelEnv(**SMALL_ENV, supernet=str(other))


def test_norm_statistics_follow_the_largest_subnetwork_only(tiny_teacher):
    """One sandwich step leaves BatchNorm running statistics exactly where one training-mode
    forward of the full network on the batch puts them."""
    from gan_prune_env.supernet import SupernetTrainer

    task = tiny_task(tiny_teacher)
    teacher, space = teacher_and_space(task)
    supernet, reference = copy.deepcopy(teacher).train(), copy.deepcopy(teacher).train()
    trainer = SupernetTrainer("pix2pix", supernet, teacher, space,
                              SandwichSampler(space, quick(random_subnets=2), "digest"), lr=1e-3)
    inputs = fixed_inputs(task, 2)
    trainer.train_step({"A": inputs})
    with torch.no_grad():
        reference(inputs)
    stats = {k: v for k, v in reference.state_dict().items() if "running" in k}
    assert stats and all(torch.equal(supernet.state_dict()[k], v) for k, v in stats.items())


def test_slicing_from_the_supernet_or_the_teacher(default_supernet):
    """Sliced from the supernet, the found G computes what the env's masked supernet computes
    (not what the masked teacher computes); sliced from the teacher (the default), the
    reverse."""
    from agents.base import Candidate
    from agents.run.artifacts import slice_pair

    env = GANPruneParallelEnv(**SMALL_ENV, supernet=str(default_supernet),
                              recalibrate_norms=False)
    env.reset(seed=0)
    actions = {a: ratios_to_action(np.full(env.game.num_groups(a), 0.5), 0.05)
               for a in env.possible_agents}
    _, rewards, _, _, infos = env.step(actions)
    best = Candidate.from_infos(0, infos, rewards)
    pair = slice_pair(env, best, "cpu", "supernet")
    inputs = env.game.eval_batch.inputs
    with torch.no_grad():
        sliced = pair.networks["generator"].eval()(inputs)
    masked = env.game.student_outputs()
    assert torch.allclose(sliced, masked, atol=1e-5)
    teacher = GANPruneParallelEnv(**SMALL_ENV, recalibrate_norms=False)
    teacher.reset(seed=0)
    teacher.step(actions)
    assert not torch.allclose(sliced, teacher.game.student_outputs(), atol=1e-3)
    # the default source is the teacher, whatever the env scores with
    with torch.no_grad():
        default = slice_pair(env, best, "cpu").networks["generator"].eval()(inputs)
    assert torch.allclose(default, teacher.game.student_outputs(), atol=1e-5)
    with pytest.raises(ValueError, match="supernet=FILE"):
        slice_pair(teacher, best, "cpu", "supernet")


def test_cyclegan_supernet_scores_in_the_env(tmp_path):
    """CycleGAN: the supernet is of G_AB (InstanceNorm, no running statistics), stored alone in
    a teacher-format file, and the CycleGAN env scores with it."""
    from gan_prune_env.envs import make_parallel_env
    from gan_prune_env.families import build_network, network_config, network_names

    task = get_task("default_cyclegan")
    networks = {name: build_network(network_config("cyclegan", name, task.generator,
                                                   task.discriminator), seed=i)
                for i, name in enumerate(network_names("cyclegan"))}
    teacher = save_checkpoint(tmp_path / "teacher.pt", make_checkpoint(
        "teacher", "cyclegan", networks, task.generator, task.discriminator))
    task = dataclasses.replace(task, teacher_checkpoint=str(teacher))
    path = train_supernet(task, quick(steps=2), tmp_path / "supernet", progress=False)
    assert set(read_checkpoint(path)) >= {"generator_AB"}
    assert "generator_BA" not in read_checkpoint(path)
    kwargs = {**SMALL_ENV, "teacher": str(teacher)}
    rewards = []
    for extra in ({}, {"supernet": str(path)}):
        env = make_parallel_env("CycleGANPrune-v0", **kwargs, **extra)
        env.reset(seed=0)
        actions = {a: np.zeros(env.action_space(a).shape, np.float32)
                   for a in env.possible_agents}
        rewards.append(env.step(actions)[1]["generator"])
    assert np.isfinite(rewards).all() and rewards[0] != rewards[1]
