"""Fine-tuning recipe: feature distillation, weight EMA, exact resumption, config validation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from gan_prune_env.checkpoint import read_checkpoint
from gan_prune_env.config import ConfigError, from_dict
from gan_prune_env.data import DataConfig, build_dataset
from gan_prune_env.distillation import (
    ActivationRecorder,
    DiscriminatorFeatureMatching,
    Distillation,
    FeatureDistillation,
    GeneratorEMA,
    InputMix,
    TEACHER_OUTPUT,
    TeacherTargets,
    warmup_decay,
    auto_feature_layers,
)
from gan_prune_env.finetune import (
    FinetuneConfig,
    NormScaleShrink,
    NormScaleSparsity,
    SlimmableDistillation,
    give_norm_scales_their_lr,
    attach_distillation,
    build_finetune_trainer,
    _stage_configs,
    finetune_pair,
    train_config,
)
from gan_prune_env.models import DiscriminatorConfig, GeneratorConfig, build_generator
from gan_prune_env.pruning import (
    ChannelSpace, gradual_architectures, relative_indices, slice_by_indices,
)
from gan_prune_env.tasks import TaskConfig
from gan_prune_env.teacher.base import build_networks

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
MAIN = {"pix2pix": "generator", "cyclegan": "generator_AB"}


def tiny_task(family: str = "pix2pix") -> TaskConfig:
    """32x32 procedural images, ngf/ndf 4 (as the teacher tests): a step takes milliseconds."""
    if family == "pix2pix":
        generator = GeneratorConfig(arch="unet_auto", ngf=4, image_size=SIZE)
        discriminator = DiscriminatorConfig(input_nc=6, ndf=4)
    else:
        generator = GeneratorConfig(arch="resnet_6blocks", ngf=4, norm="instance",
                                    image_size=SIZE)
        discriminator = DiscriminatorConfig(input_nc=3, ndf=4, norm="instance")
    data = DataConfig(crop_size=SIZE, load_size=SIZE, procedural_size=16, max_items=16,
                      mode="aligned" if family == "pix2pix" else "unaligned")
    return TaskConfig(name="tiny", family=family, data=data, generator=generator,
                      discriminator=discriminator, image_size=SIZE)


def tiny_config(**overrides) -> FinetuneConfig:
    settings = dict(steps=4, batch_size=2, lr_decay_steps=2, save_every=2, log_every=1,
                    image_every=2, lambda_distill=1.0, feature_layers=(), ema_decay=0.0)
    return FinetuneConfig(**{**settings, **overrides})


def sliced_pair(family: str = "pix2pix") -> dict:
    """An untrained teacher and a copy whose main generator keeps half its channels."""
    task = tiny_task(family)
    teacher = build_networks(train_config(task, tiny_config(), 0, "cpu", False))
    main, example = MAIN[family], torch.zeros(1, 3, SIZE, SIZE)
    space = ChannelSpace(teacher[main], example)
    kept = space.keep_indices([max(1, int(c) // 2) for c in space.num_channels])
    networks = {name: copy.deepcopy(net) for name, net in teacher.items()}
    networks[main] = slice_by_indices(teacher[main], example, kept)
    return {"networks": networks, "teacher": teacher, "task": task, "kept": {main: kept},
            "input_shape": {main: [3, SIZE, SIZE]}}


def finetune_fresh_pair(config: FinetuneConfig, out: Path, until_step: int | None = None
                        ) -> dict:
    """A new ``sliced_pair`` fine-tuned with ``config`` in ``out`` (resuming what is there)."""
    pair = sliced_pair()
    finetune_pair(pair["networks"], pair["teacher"], pair["task"], config, out,
                  kept=pair["kept"], input_shape=pair["input_shape"], progress=False,
                  until_step=until_step)
    return pair


def batch_of(task: TaskConfig, size: int = 2) -> dict[str, torch.Tensor]:
    dataset = build_dataset(task.data, "train")
    items = [dataset[i] for i in range(size)]
    return {key: torch.stack([item[key] for item in items]) for key in ("A", "B")}


def trainer_with_features(pair: dict, **config):
    """The family's trainer with feature distillation attached, as ``finetune_pair`` does."""
    recipe = train_config(pair["task"], tiny_config(**config), 0, "cpu", False)
    trainer = build_finetune_trainer(pair["networks"], recipe)
    main = trainer.main_generator
    features = attach_distillation(trainer, pair["teacher"][main], tiny_config(**config),
                                   torch.zeros(1, 3, SIZE, SIZE), seed=0)
    return trainer, features


def activations(network: nn.Module, layers, x: torch.Tensor) -> dict[str, torch.Tensor]:
    recorder = ActivationRecorder(network, layers)
    with torch.no_grad():
        found = recorder.pop(network(x))
    recorder.remove()
    return found


def state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- layers ------------------------------------------------------------------------------------


def test_auto_layers_are_the_resnet_trunk_and_the_unet_decoder():
    resnet9 = build_generator(GeneratorConfig(arch="resnet_9blocks", ngf=2))
    assert auto_feature_layers(resnet9) == ("model.9", "model.12", "model.15", "model.18")
    resnet6 = build_generator(GeneratorConfig(arch="resnet_6blocks", ngf=2))
    assert auto_feature_layers(resnet6) == ("model.9", "model.11", "model.13", "model.15")

    unet = build_generator(GeneratorConfig(arch="unet_auto", ngf=2, image_size=64)).eval()
    layers = auto_feature_layers(unet)
    modules = dict(unet.named_modules())
    assert all(isinstance(modules[name], nn.BatchNorm2d) for name in layers)  # decoder norms
    sizes = [a.shape[-1] for a in activations(unet, layers, torch.zeros(1, 3, 64, 64)).values()]
    assert sizes == [2, 4, 16, 32]  # bottleneck to the level below the output


# --- the feature term ----------------------------------------------------------------------------


def test_feature_loss_is_zero_for_the_teacher_itself_and_positive_when_perturbed():
    teacher = build_generator(tiny_task().generator, seed=0).eval()
    student = copy.deepcopy(teacher).eval()
    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    features = FeatureDistillation(student, teacher, auto_feature_layers(teacher), 1.0,
                                   x[:1], seed=0)
    with torch.no_grad():
        for adapter in features.adapters:
            adapter.weight.copy_(torch.eye(adapter.out_channels)[:, :, None, None])
            adapter.bias.zero_()
    distillation = Distillation(teacher, 0.0, features)
    loss, terms = distillation({"A": x}, student(x))
    assert loss.item() == 0.0 and set(terms) == {"G_feature"}

    with torch.no_grad():
        student.model.model[1].model[1].weight.add_(0.1)  # an encoder conv: every layer moves
    loss, _ = distillation({"A": x}, student(x))
    assert loss.item() > 0
    features.remove()


def test_adapters_are_trained_by_the_generator_optimiser_and_the_teacher_is_not():
    pair = sliced_pair()
    trainer, features = trainer_with_features(pair, feature_layers="auto")
    teacher = pair["teacher"]["generator"]
    assert len(features.adapters) == 4
    assert all(a.in_channels < a.out_channels for a in features.adapters)  # student is thinner
    adapters_before = copy.deepcopy(features.adapters.state_dict())
    teacher_before = copy.deepcopy(teacher.state_dict())

    losses = trainer.train_step(batch_of(pair["task"]))
    assert losses["G_feature"] > 0 and "G_distill" in losses
    after = features.adapters.state_dict()
    assert all(not torch.equal(adapters_before[k], after[k]) for k in after)
    assert state_equal(teacher_before, teacher.state_dict())
    features.remove()


def test_cyclegan_features_are_those_of_g_ab_on_real_a():
    """``G_AB`` also runs on ``fake_A`` (cycle) and ``real_B`` (identity) in the same step."""
    pair = sliced_pair("cyclegan")
    student_before = copy.deepcopy(pair["networks"]["generator_AB"])  # before any hook exists
    trainer, features = trainer_with_features(pair, feature_layers="auto")
    seen = {}
    pop = features.student.pop

    def spy(output):
        seen.update(pop(output))
        return seen

    features.student.pop = spy
    batch = batch_of(pair["task"])
    trainer.train_step(batch)
    features.remove()
    expected = activations(student_before, features.layers, batch["A"])
    other = activations(student_before, features.layers, batch["B"])
    for name in features.layers:
        torch.testing.assert_close(seen[name], expected[name])
        assert not torch.allclose(seen[name], other[name])


# --- EMA ----------------------------------------------------------------------------------------


def test_ema_follows_the_update_rule_with_buffers():
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    ema = GeneratorEMA(net, 0.9, optimizer)

    def step():
        optimizer.zero_grad()
        net(torch.randn(4, 2, 3, 3)).square().mean().backward()
        optimizer.step()

    step()  # the first update copies
    assert state_equal(ema.averaged.module.state_dict(), net.state_dict())
    for n in range(1, 40):  # warm-up: d_n = min(0.9, (1 + n) / (10 + n)) reaches 0.9 at n = 80
        old = copy.deepcopy(ema.averaged.module.state_dict())
        step()
        d = min(0.9, (1 + n) / (10 + n))
        averaged = ema.averaged.module.state_dict()
        for key in ("0.weight", "1.bias", "1.running_mean", "1.running_var"):
            torch.testing.assert_close(averaged[key], d * old[key] + (1 - d) * net.state_dict()[key])
    assert warmup_decay(0.9, 1) == pytest.approx(2 / 11) and warmup_decay(0.9, 1000) == 0.9

    ema.remove()
    step()  # no longer following the optimiser
    assert state_equal(averaged, ema.averaged.module.state_dict())
    with pytest.raises(ConfigError, match="decay"):
        GeneratorEMA(net, 0.99, optimizer).load_state_dict(ema.state_dict())


# --- the whole fine-tune ----------------------------------------------------------------------


# --- teacher targets ----------------------------------------------------------------------------


def test_teacher_targets_replace_the_dataset_target_and_feed_distillation_once():
    pair = sliced_pair()
    teacher, student = pair["teacher"]["generator"], pair["networks"]["generator"]
    batch = batch_of(pair["task"])
    prepared = TeacherTargets(teacher)(batch)
    with torch.no_grad():
        expected = teacher.eval()(batch["A"])
    assert torch.equal(prepared["B"], expected) and prepared[TEACHER_OUTPUT] is prepared["B"]
    assert not torch.equal(batch["B"], expected)  # the caller's batch is untouched

    forwards = []
    handle = teacher.register_forward_hook(lambda *_: forwards.append(1))
    fake = student(batch["A"])
    loss, terms = Distillation(teacher, 1.0)(prepared, fake)
    handle.remove()
    assert not forwards  # the transform's forward serves distillation too
    assert torch.allclose(terms["G_distill"], (fake - expected).abs().mean())


def first_batch_and_teacher_output(tmp_path, monkeypatch, **config) -> tuple[dict, torch.Tensor]:
    """The batch the Pix2Pix trainer's first step of a one-step fine-tune receives, and the
    (untrained) teacher's output for that batch's input."""
    from gan_prune_env.teacher.pix2pix import Pix2PixTrainer

    seen = []
    original = Pix2PixTrainer.train_step
    monkeypatch.setattr(Pix2PixTrainer, "train_step",
                        lambda self, batch: seen.append(batch) or original(self, batch))
    pair = sliced_pair()
    teacher = copy.deepcopy(pair["teacher"]["generator"]).eval()
    finetune_pair(pair["networks"], pair["teacher"], pair["task"], tiny_config(steps=1, **config),
                  tmp_path, kept=pair["kept"], input_shape=pair["input_shape"], progress=False)
    with torch.no_grad():
        return seen[0], teacher(seen[0]["A"])


@pytest.mark.parametrize(("targets", "from_teacher"),
                         [("data", False), ("teacher", True), ("auto", True)])
def test_finetune_trains_on_the_targets_it_is_asked_for(tmp_path, monkeypatch, targets,
                                                        from_teacher):
    batch, teacher_output = first_batch_and_teacher_output(tmp_path, monkeypatch,
                                                           targets=targets)
    assert torch.equal(batch["B"], teacher_output) == from_teacher


def test_teacher_targets_need_a_paired_task():
    with pytest.raises(ValueError, match="targets"):
        FinetuneConfig(targets="teachers")
    FinetuneConfig(targets="teacher").check_family("pix2pix")
    with pytest.raises(ConfigError, match="targets='auto' or 'data'"):
        FinetuneConfig(targets="teacher").check_family("cyclegan")
    FinetuneConfig().check_family("cyclegan")  # "auto": the data, no error
    assert FinetuneConfig().resolved_targets("cyclegan") == "data"


# --- discriminator feature matching --------------------------------------------------------------


def test_d_feature_matching_sums_the_l1_of_every_hidden_activation_and_trains_g_only():
    pair = sliced_pair()
    discriminator = pair["networks"]["discriminator"].eval().requires_grad_(False)
    batch = batch_of(pair["task"])
    fake = (batch["B"] + 0.3 * torch.randn_like(batch["B"])).requires_grad_(True)
    matching = DiscriminatorFeatureMatching(discriminator, weight=2.0)
    loss, terms = matching(batch, fake)
    # by hand: the output of every LeakyReLU of the sequential PatchGAN, real pair vs fake pair
    expected, real, matched = 0.0, torch.cat([batch["A"], batch["B"]], 1), torch.cat(
        [batch["A"], fake], 1)
    for layer in discriminator.model:
        real, matched = layer(real), layer(matched)
        if isinstance(layer, nn.LeakyReLU):
            expected = expected + (matched - real).abs().mean()
    assert len(matching.layers) == 4  # n_layers 3: four hidden activations
    assert torch.allclose(loss, 2.0 * expected) and torch.allclose(terms["G_d_feature"], expected)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in discriminator.parameters())
    # the target itself matches exactly
    assert float(matching(batch, batch["B"].clone())[0]) == 0.0
    matching.remove()
    assert not discriminator._forward_hooks


def test_d_feature_matching_changes_the_finetune_and_leaves_no_hooks(tmp_path):
    plain = finetune_fresh_pair(tiny_config(), tmp_path / "plain")
    matched = finetune_fresh_pair(tiny_config(lambda_d_feature=10.0), tmp_path / "matched")
    assert not state_equal(plain["networks"]["generator"].state_dict(),
                           matched["networks"]["generator"].state_dict())
    assert not matched["networks"]["discriminator"]._forward_hooks


def test_d_feature_matching_needs_a_paired_task():
    with pytest.raises(ValueError, match="lambda_d_feature"):
        FinetuneConfig(lambda_d_feature=-1.0)
    FinetuneConfig(lambda_d_feature=10.0).check_family("pix2pix")
    with pytest.raises(ConfigError, match="lambda_d_feature"):
        FinetuneConfig(lambda_d_feature=10.0).check_family("cyclegan")


# --- network slimming's sparsity term ----------------------------------------------------------


def norm_scales(network: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach().abs().flatten() for m in network.modules()
                      if isinstance(m, nn.modules.batchnorm._NormBase) and m.weight is not None])


def norm_scale_tensors(network: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in network.modules()
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.weight is not None]


def test_norm_sparsity_is_the_weighted_mean_scale_of_the_generators_norms():
    generator = build_generator(tiny_task().generator, seed=0)
    with torch.no_grad():
        for i, norm in enumerate(m for m in generator.modules()
                                 if isinstance(m, nn.BatchNorm2d)):
            norm.weight.copy_(torch.linspace(-1.0, 2.0, norm.num_features) * (i + 1))
    loss, terms = NormScaleSparsity(generator, weight=3.0)(None, None)
    assert torch.isclose(terms["G_norm_scale"], norm_scales(generator).mean())
    assert torch.isclose(loss, 3.0 * norm_scales(generator).mean())
    with pytest.raises(ConfigError, match="affine norms"):  # CycleGAN's instance norms: none
        NormScaleSparsity(build_generator(tiny_task("cyclegan").generator), weight=1.0)
    with pytest.raises(ValueError, match="lambda_norm_sparsity"):
        FinetuneConfig(lambda_norm_sparsity=-1.0)


def test_norm_sparsity_shrinks_the_scales_a_finetune_ends_with(tmp_path):
    """The term pulls the scales towards zero (a flipped sign would grow them, a dropped term
    leave them as the plain fine-tune does)."""
    plain = finetune_fresh_pair(tiny_config(), tmp_path / "plain")
    slim = finetune_fresh_pair(tiny_config(lambda_norm_sparsity=1e3), tmp_path / "slim")
    plain_scales = norm_scales(plain["networks"]["generator"])
    slim_scales = norm_scales(slim["networks"]["generator"])
    # under a weight this large Adam moves each scale by up to lr (2e-4) a step, downwards
    assert float((plain_scales - slim_scales).median()) > 2e-4


def test_norm_shrink_soft_thresholds_each_scale_by_shrink_times_the_steps_lr():
    """The proximal step: every scale moves towards zero by ``shrink * lr`` and stops at zero
    (a flipped sign would grow them, a max for the clamp keep the small ones alive, and the
    wrong learning rate shrink them by another amount)."""
    generator = build_generator(tiny_task().generator, seed=0)
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(torch.linspace(-1.0, 1.0, norm.num_features))
    before = torch.cat([norm.weight.detach().clone() for norm in norms])
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.5)  # no gradients: only the hook
    shrink = NormScaleShrink(generator, 0.6, optimizer)
    optimizer.step()
    after = torch.cat([norm.weight.detach() for norm in norms])
    expected = before.sign() * (before.abs() - 0.3).clamp_min(0)
    assert torch.equal(after, expected)
    assert shrink.dead_fraction() == pytest.approx(float((before.abs() <= 0.3).float().mean()))
    assert shrink.dead_fraction() > 0
    shrink.remove()
    optimizer.step()
    assert torch.equal(torch.cat([norm.weight.detach() for norm in norms]), expected)
    with pytest.raises(ConfigError, match="norm_shrink"):
        NormScaleShrink(build_generator(tiny_task("cyclegan").generator), 0.2, optimizer)
    with pytest.raises(ValueError, match="norm_shrink"):
        FinetuneConfig(norm_shrink=-1.0)


def test_norm_shrink_zeroes_the_scales_a_finetune_ends_with(tmp_path):
    """A shrink of more than every scale in one step kills every channel, and the EMA'd weights
    the fine-tune returns hold exact zeros: the hook runs before the average (registered after
    it, the average's first copy would hold the unshrunk scales and never reach zero)."""
    dead = finetune_fresh_pair(tiny_config(norm_shrink=1e5, ema_decay=0.9), tmp_path / "dead")
    assert float(norm_scales(dead["networks"]["generator"]).max()) == 0.0


def test_norm_scales_get_their_own_learning_rate_and_the_shrink_reads_it():
    """The scales leave G's group for one at ``lr_scale`` times its rate, which the trainer's
    schedule keeps (a dropped ``lr_scale`` in ``set_lr`` would give them the plain rate), and
    the shrink thresholds by that rate, not the first group's."""
    from gan_prune_env.teacher.pix2pix import Pix2PixTrainer

    task = tiny_task()
    networks = build_networks(train_config(task, tiny_config(), 0, "cpu", False))
    trainer = Pix2PixTrainer(networks["generator"], networks["discriminator"], 1e-3, (0.5, 0.999),
                             "vanilla", 100.0)
    optimizer = trainer.optimizers["generator"]
    give_norm_scales_their_lr(networks["generator"], optimizer, 10.0)
    scales = {id(s) for s in norm_scale_tensors(networks["generator"])}
    homes = [[id(p) in scales for p in group["params"]] for group in optimizer.param_groups]
    assert [all(h) for h in homes] == [False, True] and not any(homes[0])
    assert sum(map(len, homes)) == len(list(networks["generator"].parameters()))
    trainer.set_lr(2e-4)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([2e-4, 2e-3])
    before = norm_scales(networks["generator"]).clone()
    shrink = NormScaleShrink(networks["generator"], 0.5, optimizer)
    shrink.step()
    assert norm_scales(networks["generator"]) == pytest.approx((before - 1e-3).clamp_min(0))
    with pytest.raises(ValueError, match="norm_lr_scale"):
        FinetuneConfig(norm_lr_scale=0.0)


# --- slimmable training -----------------------------------------------------------------------


def separable_student(ngf: int = 8) -> nn.Module:
    config = GeneratorConfig(arch="unet_auto", ngf=ngf, norm="batch", use_dropout=False,
                             image_size=SIZE, separable=True)
    return build_generator(config, seed=0).train()


def test_slimmable_term_distils_the_first_channels_as_the_narrowed_network():
    """The term is ``weight * mean_w L1(G_w(x), T(x))`` with ``G_w`` exactly the network
    ``slice_separable_unet`` narrows to by position (a mask on other channels, a sum instead
    of the mean or a dropped weight changes the value), it leaves the running statistics and
    the full network's output as they were, and its gradient reaches the weights."""
    from gan_prune_env.pruning import slice_separable_unet
    from gan_prune_env.pruning.importance import PositionImportance

    student, teacher = separable_student(), separable_student(ngf=4)
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        target = teacher.eval()(x)
    with torch.no_grad():
        full_before = student(x)
    stats = {k: v.clone() for k, v in student.state_dict().items() if "running" in k}
    narrow = {w: slice_separable_unet(student, round(8 * w), x[:1], PositionImportance()).train()
              for w in (0.5, 0.25)}
    with torch.no_grad():
        expected = sum(l1_of(narrow[w](x), target) for w in narrow) / 2
    term = SlimmableDistillation(student, teacher, (0.5, 0.25), 3.0, x[:1])
    loss, terms = term({"A": x}, None)
    assert float(loss.detach()) == pytest.approx(3.0 * float(expected), rel=1e-5)
    assert set(terms) == {"G_slimmable_0.5", "G_slimmable_0.25"}
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(torch.equal(stats[k], v) for k, v in student.state_dict().items() if k in stats)
    with torch.no_grad():
        assert torch.equal(student(x), full_before)  # masks reset (train mode: batch stats)
    term.remove()
    with pytest.raises(ConfigError, match="slimmable_widths"):
        SlimmableDistillation(student, teacher, (0.3,), 1.0, x[:1])
    with pytest.raises(ValueError, match="slimmable_widths"):
        FinetuneConfig(slimmable_widths=(1.0,))
    with pytest.raises(ValueError, match="lambda_distill"):
        FinetuneConfig(slimmable_widths=(0.5,), lambda_distill=0.0)


def l1_of(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean()


# --- input mixing (function matching) -----------------------------------------------------------


def two_constant_images(height: int = 8, width: int = 8) -> dict[str, torch.Tensor]:
    """Image 0 is all zeros, image 1 all ones: where a mixed pixel came from is its value."""
    a = torch.stack([torch.zeros(3, height, width), torch.ones(3, height, width)])
    return {"A": a, "B": a.clone()}


def test_mixup_blends_each_input_with_another_by_beta_weights():
    batch = two_constant_images()
    values = []
    mix = InputMix("mixup", alpha=1.0, seed=0)
    for _ in range(50):
        mixed = mix(batch)["A"]
        for image in mixed:  # one constant per image: lam * x + (1 - lam) * other
            assert torch.allclose(image, image.flatten()[0].expand_as(image))
            values.append(float(image.flatten()[0]))
    assert torch.equal(batch["A"], two_constant_images()["A"])  # the caller's batch untouched
    values = torch.tensor(values)
    assert 0 <= values.min() and values.max() <= 1
    # Beta(1, 1) weights, each image mixed with the other (a mix with itself would stay 0 or 1)
    assert values.std() > 0.2 and ((values > 0.05) & (values < 0.95)).float().mean() > 0.8


def test_cutmix_pastes_a_box_of_another_input_covering_one_minus_lambda():
    batch = two_constant_images(16, 16)
    mix = InputMix("cutmix", alpha=1.0, seed=0)
    pasted = []
    for _ in range(50):
        mixed = mix(batch)["A"]
        assert set(mixed.unique().tolist()) <= {0.0, 1.0}  # pixels are copied, never blended
        changed = mixed[0, 0] != 0  # image 0 receives ones where a box from image 1 landed
        rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
        if len(rows):  # the changed pixels form one full rectangle
            box = changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert box.all() and int(changed.sum()) == box.numel()
        pasted.append(float(changed.float().mean()))
    assert 0.35 < sum(pasted) / len(pasted) < 0.65  # E[1 - lam] = 0.5: always image 1's box


def test_input_mix_draws_are_seeded_and_resume_from_their_state():
    batch = two_constant_images()
    first, second = InputMix("mixup", 1.0, seed=3), InputMix("mixup", 1.0, seed=3)
    assert torch.equal(first(batch)["A"], second(batch)["A"])
    state = copy.deepcopy(first.state_dict())
    expected = first(batch)["A"]
    resumed = InputMix("mixup", 1.0, seed=99)
    resumed.load_state_dict(state)
    assert torch.equal(resumed(batch)["A"], expected)
    with pytest.raises(ConfigError, match="kind"):
        InputMix("cutmix", 1.0, seed=3).load_state_dict(state)


def test_the_teacher_labels_the_mixed_inputs_the_student_trains_on(tmp_path, monkeypatch):
    batch, teacher_output = first_batch_and_teacher_output(tmp_path, monkeypatch,
                                                           input_mix="mixup")
    dataset = build_dataset(tiny_task().data, "train")
    inputs = [dataset[i]["A"] for i in range(len(dataset))]
    assert not any(torch.equal(batch["A"][0], x) for x in inputs)  # mixed, not a dataset input
    assert torch.equal(batch["B"], teacher_output)


def test_input_mix_needs_teacher_targets():
    with pytest.raises(ValueError, match="input_mix"):
        FinetuneConfig(input_mix="mix")
    with pytest.raises(ValueError, match="input_mix_alpha"):
        FinetuneConfig(input_mix="mixup", input_mix_alpha=0.0)
    with pytest.raises(ConfigError, match="input_mix='none'"):
        FinetuneConfig(input_mix="mixup", targets="data").check_family("pix2pix")
    with pytest.raises(ConfigError, match="cyclegan"):
        FinetuneConfig(input_mix="cutmix").check_family("cyclegan")
    FinetuneConfig(input_mix="cutmix").check_family("pix2pix")


def test_input_mix_auto_is_cutmix_exactly_where_the_teacher_labels_the_inputs(tmp_path):
    """The default mixes a Pix2Pix fine-tune's inputs with cutmix (it trains as an explicit
    cutmix does, not as no mix), and leaves the dataset's inputs alone where the targets are
    the dataset's: data targets, or a CycleGAN task, which the defaults still fine-tune."""
    assert FinetuneConfig().resolved_input_mix("pix2pix") == "cutmix"
    assert FinetuneConfig(targets="data").resolved_input_mix("pix2pix") == "none"
    assert FinetuneConfig().resolved_input_mix("cyclegan") == "none"
    FinetuneConfig().check_family("cyclegan")
    assert FinetuneConfig(input_mix="mixup").resolved("pix2pix").input_mix == "mixup"
    trained = {mix: finetune_fresh_pair(tiny_config(input_mix=mix), tmp_path / mix)["networks"]
               for mix in ("auto", "cutmix", "none")}
    for name, net in trained["auto"].items():
        assert state_equal(net.state_dict(), trained["cutmix"][name].state_dict()), name
    assert not state_equal(trained["auto"]["generator"].state_dict(),
                           trained["none"]["generator"].state_dict())


def test_interrupted_finetune_with_features_ema_and_input_mix_resumes_bit_identically(tmp_path):
    config = tiny_config(feature_layers="auto", ema_decay=0.9, input_mix="cutmix")
    straight = finetune_fresh_pair(config, tmp_path / "straight")
    finetune_fresh_pair(config, tmp_path / "resumed", until_step=3)
    assert (tmp_path / "resumed" / "checkpoints" / "train_state_00000003.pt").exists()
    resumed = finetune_fresh_pair(config, tmp_path / "resumed")
    for name, net in straight["networks"].items():
        assert state_equal(net.state_dict(), resumed["networks"][name].state_dict()), name

    final = read_checkpoint(tmp_path / "straight" / "checkpoints" / "train_state_00000004.pt")
    again = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "train_state_00000004.pt")
    extensions = final["train_state"]["trainer"]["extensions"]
    assert state_equal(extensions["feature_distillation"]["adapters"],
                       again["train_state"]["trainer"]["extensions"]["feature_distillation"][
                           "adapters"])
    # the returned generator holds the EMA weights; the train state keeps the raw ones
    generator = straight["networks"]["generator"].state_dict()
    averaged = {k.removeprefix("module."): v
                for k, v in extensions["ema"]["averaged"].items() if k != "n_averaged"}
    assert state_equal(generator, averaged)
    assert not state_equal(generator, final["generator"])
    # and the networks leave without hooks
    assert not straight["networks"]["generator"]._forward_hooks
    assert not straight["teacher"]["generator"]._forward_hooks


def test_interrupted_finetune_with_the_density_term_resumes_bit_identically(tmp_path):
    """The density term's neighbourhood draws are saved with the train state: a resumed
    fine-tune draws the neighbourhoods the uninterrupted one did."""
    from gan_prune_env.objective import ObjectiveConfig, build_objective

    def run(out: Path, until_step: int | None = None) -> dict:
        pair = sliced_pair()
        inputs = batch_of(pair["task"], 6)["A"]
        with torch.no_grad():
            outputs = copy.deepcopy(pair["teacher"]["generator"]).eval()(inputs)
        objective = build_objective(ObjectiveConfig(k=2), pair["teacher"]["discriminator"],
                                    True, inputs, outputs)
        finetune_pair(pair["networks"], pair["teacher"], pair["task"],
                      tiny_config(lambda_density=1.0), out, kept=pair["kept"],
                      input_shape=pair["input_shape"], progress=False, objective=objective,
                      pool=objective.build_pool(inputs, outputs), until_step=until_step)
        return pair

    straight = run(tmp_path / "straight")
    run(tmp_path / "resumed", until_step=3)
    resumed = run(tmp_path / "resumed")
    for name, net in straight["networks"].items():
        assert state_equal(net.state_dict(), resumed["networks"][name].state_dict()), name


def test_resume_refuses_other_distillation_or_ema_settings(tmp_path):
    pair = sliced_pair()
    args = (pair["networks"], pair["teacher"], pair["task"])
    kwargs = dict(kept=pair["kept"], input_shape=pair["input_shape"], progress=False)
    finetune_pair(*args, tiny_config(feature_layers="auto", ema_decay=0.9), tmp_path,
                  until_step=1, **kwargs)
    with pytest.raises(ConfigError, match="extensions"):
        finetune_pair(*args, tiny_config(ema_decay=0.9), tmp_path, **kwargs)
    with pytest.raises(ConfigError, match="decay"):
        finetune_pair(*args, tiny_config(feature_layers="auto", ema_decay=0.5), tmp_path,
                      **kwargs)


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan"])
def test_autocast_runs_the_forward_passes_in_bfloat16_and_keeps_float32_weights(tmp_path,
                                                                              family):
    """Mixed precision: every conv of the update computes in bfloat16, the weights (and so the
    checkpoints) stay float32, and the losses stay finite. Without it nothing is bfloat16."""
    for autocast, expected in ((None, {torch.float32}), ("bfloat16", {torch.bfloat16})):
        pair = sliced_pair(family)
        dtypes: set[torch.dtype] = set()

        def record(_module, _inputs, output) -> None:
            if output.shape[0] == 2:  # the updates' batches, not the set-up probes
                dtypes.add(output.dtype)

        hooks = [m.register_forward_hook(record)
                 for net in pair["networks"].values() for m in net.modules()
                 if isinstance(m, nn.Conv2d)]
        finetune_pair(pair["networks"], pair["teacher"], pair["task"],
                      tiny_config(steps=2, autocast=autocast, feature_layers="auto", image_every=0,
                                  targets="auto"), tmp_path / str(autocast),
                      kept=pair["kept"], input_shape=pair["input_shape"], progress=False)
        for hook in hooks:
            hook.remove()
        assert dtypes == expected, autocast
        assert all(p.dtype == torch.float32 and torch.isfinite(p).all()
                   for net in pair["networks"].values() for p in net.parameters())
    with pytest.raises(ValueError, match="autocast 'float16' is not one of"):
        FinetuneConfig(autocast="float16")


# --- gradual pruning ---------------------------------------------------------------------------


def test_gradual_finetune_narrows_the_teacher_in_stages_each_from_the_last(tmp_path, monkeypatch):
    """With prune_stages 3: stage 1 starts from the teacher sliced to the widest architecture,
    each later stage from the previous stage's trained networks cut to the next one, and the
    pair ends at the found architecture; steps split evenly and only the last stage decays the
    learning rate."""
    import gan_prune_env.finetune as finetune

    pair = sliced_pair()
    main = "generator"
    plans = gradual_architectures(pair["teacher"][main], torch.zeros(1, 3, SIZE, SIZE),
                                  pair["kept"][main], 3)
    assert len(plans[0]["model.model.0"]) > len(plans[2]["model.model.0"])  # not vacuous
    stages: list[dict] = []
    train = finetune._train_stage

    def recording(networks, teacher, config, out_dir, **kwargs):
        stages.append({"kept": kwargs["kept"], "config": config,
                       "start": copy.deepcopy(networks[main]).state_dict()})
        train(networks, teacher, config, out_dir, **kwargs)
        stages[-1]["end"] = copy.deepcopy(networks[main])

    monkeypatch.setattr(finetune, "_train_stage", recording)
    finetune_pair(pair["networks"], pair["teacher"], pair["task"],
                  tiny_config(steps=9, prune_stages=3, generator_inherit=1.0,
                              prune_stage_share=0.5, lr_decay_steps=4, ema_decay=0.9),
                  tmp_path, kept=pair["kept"], input_shape=pair["input_shape"], progress=False)
    example = torch.zeros(1, 3, SIZE, SIZE)
    assert [s["kept"][main] for s in stages] == plans
    assert [(s["config"].steps, s["config"].lr_decay_steps) for s in stages] == \
        [(2, 0), (2, 0), (5, 4)]
    assert state_equal(stages[0]["start"],
                       slice_by_indices(pair["teacher"][main], example, plans[0]).state_dict())
    for before, after, (wide, narrow) in zip(stages, stages[1:], zip(plans, plans[1:])):
        cut = slice_by_indices(before["end"], example, relative_indices(wide, narrow))
        assert state_equal(after["start"], cut.state_dict())
    assert state_equal(pair["networks"][main].state_dict(), stages[-1]["end"].state_dict())
    assert {s["start"]["model.model.0.weight"].shape[0] for s in stages} == \
        {len(p["model.model.0"]) for p in plans}
    final = read_checkpoint(tmp_path / "stage_3" / "checkpoints" / "train_state_00000005.pt")
    assert final["kept"] == pair["kept"]


def test_interrupted_gradual_finetune_resumes_bit_identically(tmp_path):
    config = tiny_config(steps=6, prune_stages=2, generator_inherit=1.0, prune_stage_share=0.5,
                         feature_layers="auto", ema_decay=0.9)
    straight = finetune_fresh_pair(config, tmp_path / "straight")
    finetune_fresh_pair(config, tmp_path / "resumed", until_step=2)  # inside the first stage
    assert not (tmp_path / "resumed" / "stage_2").exists()
    finetune_fresh_pair(config, tmp_path / "resumed", until_step=4)  # inside the second
    resumed = finetune_fresh_pair(config, tmp_path / "resumed")
    for name, net in straight["networks"].items():
        assert state_equal(net.state_dict(), resumed["networks"][name].state_dict()), name


def test_gradual_pruning_is_checked():
    with pytest.raises(ValueError, match="prune_stage_share 0.2 of 5 steps gives them 1"):
        FinetuneConfig(steps=5, prune_stages=3, generator_inherit=1.0)
    with pytest.raises(ValueError, match="prune_stage_share"):
        FinetuneConfig(prune_stage_share=1.0)
    staged = _stage_configs(FinetuneConfig(prune_stages=3, generator_inherit=1.0))
    assert [c.steps for c in staged] == [300, 300, 2400]
    staged = _stage_configs(FinetuneConfig(prune_stages=3, generator_inherit=1.0,
                                           adversarial_warmup_steps=100))
    assert [c.adversarial_warmup_steps for c in staged] == [100, 0, 0]  # the first stage's
    with pytest.raises(ValueError, match="prune_stages"):
        FinetuneConfig(prune_stages=0)
    from agents.run.config import RunConfig

    with pytest.raises(ValueError, match="prune_stages"):
        RunConfig(slice_from="supernet", env_kwargs={"supernet": "sn.pt"},
                  finetune=FinetuneConfig(prune_stages=2, generator_inherit=1.0))


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("feature_layers", "aut"), ("feature_layers", ["model.model.1", "model.model.1"]),
    ("feature_layers", [""]), ("lambda_feature", 0.0), ("ema_decay", 1.0), ("ema_decay", -0.1),
    ("lambda_distill", -1.0), ("adversarial_warmup_steps", -1),
])
def test_invalid_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        FinetuneConfig(**{field: value})


def test_config_keys_and_layer_names_are_checked():
    with pytest.raises(ConfigError, match="ema_decy"):
        from_dict(FinetuneConfig, {"ema_decy": 0.9})
    config = from_dict(FinetuneConfig, {"feature_layers": ["model.9"], "ema_decay": 0.999})
    assert config.feature_layers == ("model.9",)
    with pytest.raises(ValueError, match=r"\['model\.99'\]"):
        trainer_with_features(sliced_pair(), feature_layers=["model.99"])


def test_the_recipe_is_defined_once():
    defaults = FinetuneConfig()
    assert defaults.lambda_distill == 10.0
    assert defaults.feature_layers == "auto" and defaults.ema_decay == 0.999  # as measured
    assert defaults.resolved_targets("pix2pix") == "teacher"  # as measured
    run = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    restated = {k: v for k, v in (run.get("finetune") or {}).items()
                if getattr(defaults, k) == v}
    assert not restated, f"configs/default.yaml restates FinetuneConfig defaults: {restated}"


@pytest.mark.parametrize(("task_name", "field", "reference"),
                         [("default", "lambda_l1", 100.0), ("default_cyclegan", "lambda_cycle", 10.0)])
def test_the_task_loss_weight_and_the_warmup_reach_the_trainer_config(task_name, field, reference):
    from gan_prune_env.finetune import train_config
    from gan_prune_env.tasks import get_task

    task = get_task(task_name)
    assert getattr(train_config(task, FinetuneConfig(), 0, "cpu", False), field) == reference
    assert getattr(train_config(task, FinetuneConfig(lambda_task=3.0), 0, "cpu", False),
                   field) == 3.0
    warm = train_config(task, FinetuneConfig(adversarial_warmup_steps=7), 0, "cpu", False)
    assert warm.adversarial_warmup_steps == 7  # the trainer's loop ramps the GAN terms
    workers = train_config(task, FinetuneConfig(num_workers=3), 0, "cpu", False)
    assert workers.num_workers == 3  # the trainer's batch stream starts them


def test_a_fresh_discriminator_starts_from_the_reference_init_and_resumes_bit_identically(
        tmp_path):
    """``discriminator_init="fresh"``: D trains from the seeded reference init (4 Adam steps
    of lr 2e-4 move a weight by < 1e-3), G from the teacher's slice (``generator_inherit`` 1); a resumed run ends where
    an uninterrupted one does (the restored train state, not a new init, is what continues)."""
    from gan_prune_env.models import reinitialize

    def run(config: FinetuneConfig, out: Path, until_step: int | None = None) -> dict:
        pair = sliced_pair()
        finetune_pair(pair["networks"], pair["teacher"], pair["task"], config, out,
                      kept=pair["kept"], input_shape=pair["input_shape"], seed=5,
                      progress=False, until_step=until_step)
        return pair["networks"]

    def distance(a: nn.Module, b: nn.Module) -> float:
        return max(float((x - y).abs().max().detach()) for x, y in zip(a.parameters(),
                                                                        b.parameters()))

    fresh_d_config = tiny_config(discriminator_init="fresh", generator_inherit=1.0)
    start = sliced_pair()["networks"]
    fresh_d = reinitialize(copy.deepcopy(start["discriminator"]), seed=6)
    trained = run(fresh_d_config, tmp_path / "fresh")
    assert distance(trained["discriminator"], fresh_d) < 2e-3
    assert distance(trained["discriminator"], start["discriminator"]) > 2e-2
    assert distance(trained["generator"], start["generator"]) < 2e-3
    kept = run(tiny_config(generator_inherit=1.0), tmp_path / "teacher")
    assert distance(kept["discriminator"], start["discriminator"]) < 2e-3

    run(fresh_d_config, tmp_path / "resumed", until_step=3)
    resumed = run(fresh_d_config, tmp_path / "resumed")
    for name, net in trained.items():
        assert state_equal(net.state_dict(), resumed[name].state_dict()), name
    with pytest.raises(ValueError, match="prune_stages"):
        FinetuneConfig(discriminator_init="fresh", prune_stages=3, generator_inherit=1.0)
    with pytest.raises(ValueError, match="discriminator_init"):
        FinetuneConfig(discriminator_init="random")


def test_generator_inherit_interpolates_between_the_teacher_slice_and_the_scratch_init(tmp_path):
    """``generator_inherit``: 0 starts G exactly at the scratch student's init (seed ``seed``),
    1 at the teacher's slice, 0.25 a quarter of the way from the fresh init to the slice; D is
    untouched either way, and the start survives a resume like the fresh D's."""
    from gan_prune_env.models import reinitialize

    def start_of(inherit: float, out: Path) -> dict[str, nn.Module]:
        pair = sliced_pair()
        finetune_pair(pair["networks"], pair["teacher"], pair["task"],
                      tiny_config(steps=1, lr=1e-12, generator_inherit=inherit), out,
                      kept=pair["kept"], input_shape=pair["input_shape"], seed=5,
                      progress=False)
        return pair["networks"]

    def params(net: nn.Module) -> list[torch.Tensor]:
        return [p.detach() for p in net.parameters()]

    teacher_slice = sliced_pair()["networks"]
    fresh = reinitialize(copy.deepcopy(teacher_slice["generator"]), seed=5)
    for inherit, expected in ((0.0, params(fresh)), (1.0, params(teacher_slice["generator"])),
                              (0.25, [0.25 * t + 0.75 * f for t, f in
                                      zip(params(teacher_slice["generator"]), params(fresh))])):
        started = start_of(inherit, tmp_path / str(inherit))
        for got, want in zip(params(started["generator"]), expected, strict=True):
            assert torch.allclose(got, want, atol=1e-6), inherit
        for got, want in zip(params(started["discriminator"]),
                             params(teacher_slice["discriminator"]), strict=True):
            assert torch.allclose(got, want, atol=1e-6), inherit
    config = tiny_config(generator_inherit=0.5)
    straight, resumed = sliced_pair(), sliced_pair()
    for pair, out, until in ((straight, "straight", None), (resumed, "resumed", 2)):
        finetune_pair(pair["networks"], pair["teacher"], pair["task"], config, tmp_path / out,
                      kept=pair["kept"], input_shape=pair["input_shape"], seed=5,
                      progress=False, until_step=until)
    resumed = sliced_pair()
    finetune_pair(resumed["networks"], resumed["teacher"], resumed["task"], config,
                  tmp_path / "resumed", kept=resumed["kept"], input_shape=resumed["input_shape"],
                  seed=5, progress=False)
    for name, net in straight["networks"].items():
        assert state_equal(net.state_dict(), resumed["networks"][name].state_dict()), name
    with pytest.raises(ValueError, match="generator_inherit"):
        FinetuneConfig(generator_inherit=1.5)
    with pytest.raises(ValueError, match="prune_stages"):
        FinetuneConfig(generator_inherit=0.5, prune_stages=3)
