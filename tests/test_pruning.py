"""Channel groups, masking, slicing and compute accounting (METHOD 3 and 4).

The core contract: for any architecture (keep counts per group), the masked full network, the
physically sliced network and the analytic accounting of ``ChannelSpace`` all agree.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from gan_prune_env.models import (
    DiscriminatorConfig, GeneratorConfig, build_discriminator, build_generator,
)
from gan_prune_env.pruning import (
    GROUP_FEATURE_NAMES, ArchitectureSlicer, ChannelMasker, SlicingUnsupported, ChannelSpace, L1FilterImportance, RandomImportance,
    TorchPruningImportance, channels_for_ratio, count_macs, count_params, count_true_macs_profiler,
    gradual_architectures, make_importance, relative_indices, slice_by_indices, slice_model,
)

ATOL = 1e-5


# -- models under test ----------------------------------------------------------------------------

class ResidualConcatNet(nn.Module):
    """A user's own generator: a residual add (stem + body couple their channels) and a
    concatenation of two groups feeding the output layer."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.body = nn.Conv2d(c, c, 3, padding=1)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.down_bn = nn.BatchNorm2d(2 * c)
        self.up = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.head = nn.Conv2d(2 * c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.stem(x)))
        h = h + self.body(h)
        u = torch.relu(self.up(torch.relu(self.down_bn(self.down(h)))))
        return torch.tanh(self.head(torch.cat([h, u], 1)))


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random conv biases, BatchNorm affine parameters and running statistics, so that a pruned
    channel that leaked anywhere would change the output (the check is not vacuous)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g)
                               / math.sqrt(m.weight[0].numel()))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def make_case(name: str) -> SimpleNamespace:
    g = torch.Generator().manual_seed(11)
    if name == "unet":  # BatchNorm, dropout in the middle block (inert in eval mode)
        model = build_generator(GeneratorConfig(arch="unet_auto", image_size=64, ngf=4,
                                                use_dropout=True), seed=0)
        x = torch.randn(2, 3, 64, 64, generator=g)
    elif name == "resnet":  # InstanceNorm (no affine, no running stats), residual trunk
        model = build_generator(GeneratorConfig(arch="resnet_6blocks", ngf=6, norm="instance"),
                                seed=0)
        x = torch.randn(2, 3, 32, 32, generator=g)
    elif name == "patchgan":
        model = build_discriminator(DiscriminatorConfig(input_nc=6, ndf=8), seed=0)
        x = torch.randn(2, 6, 64, 64, generator=g)
    elif name == "custom":
        model = ResidualConcatNet(8)
        x = torch.randn(2, 3, 16, 16, generator=g)
    else:
        raise KeyError(name)
    model = randomise(model, seed=1).eval()
    return SimpleNamespace(name=name, model=model, x=x, space=ChannelSpace(model, x))


CASE_NAMES = ("unet", "resnet", "patchgan", "custom")


@pytest.fixture(scope="module")
def cases() -> dict[str, SimpleNamespace]:
    return {name: make_case(name) for name in CASE_NAMES}


def arch(space: ChannelSpace, kind: str | int) -> np.ndarray:
    """Keep counts: 'min' (1 channel everywhere), 'full', or a seeded random architecture."""
    if kind == "min":
        return np.ones(space.num_groups, dtype=np.int64)
    if kind == "full":
        return space.num_channels.copy()
    rng = np.random.default_rng(kind)
    return np.array([rng.integers(1, c + 1) for c in space.num_channels], dtype=np.int64)


ARCHS = ("min", "full", 0, 1, 2, 3)


def masked_output(case, counts, train: bool = False) -> torch.Tensor:
    model = copy.deepcopy(case.model).train(train)
    with ChannelMasker(model, case.space) as masker, torch.no_grad():
        masker.set_counts(counts)
        return model(case.x)


def layer_order(space: ChannelSpace) -> list[str]:
    return sorted(space.layers, key=lambda n: space.layers[n].order)


# -- group discovery ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_width() -> dict[str, SimpleNamespace]:
    """Width-64 networks at 256x256 (the one expensive trace of this file)."""
    out = {}
    for name, model, c_in in [
        ("resnet9", build_generator(GeneratorConfig(arch="resnet_9blocks", norm="instance"), 0), 3),
        ("unet256", build_generator(GeneratorConfig(arch="unet_256", norm="batch"), 0), 3),
        ("patchgan", build_discriminator(DiscriminatorConfig(input_nc=6, ndf=64), 0), 6),
    ]:
        x = torch.zeros(1, c_in, 256, 256)
        out[name] = SimpleNamespace(model=model.eval(), x=x, space=ChannelSpace(model, x))
    return out


def _check_io_never_pruned(space: ChannelSpace, in_ch: int, out_ch: int) -> None:
    order = layer_order(space)
    first, last = order[0], order[-1]
    for g in space.groups:
        assert last not in g.producers and g.name != last
        assert first not in {c.module_name for c in g.consumers}
    kept = space.kept_channels(arch(space, "min"))
    assert kept[first][0] == in_ch  # input channels never pruned
    assert kept[last][1] == out_ch  # output channels never pruned


def test_unet256_groups(full_width):
    space = full_width["unet256"].space
    assert space.num_groups == 15
    kinds = [g.kind for g in space.groups]
    assert kinds.count("conv") == 8 and kinds.count("conv_transpose") == 7
    assert all(len(g.producers) == 1 for g in space.groups)
    # each skip is read twice: by the next level down and, through the concat, by the up conv
    down_groups = [g for g in space.groups if g.kind == "conv"][:-1]
    assert all(len(g.consumers) == 2 for g in down_groups)
    assert sorted(space.num_channels.tolist()) == sorted(
        [64, 128, 256] + [512] * 5 + [512] * 4 + [256, 128, 64])
    # BatchNorm follows every down conv but the outermost and innermost, and every up conv
    has_norm = [bool(g.norm_layers) for g in space.groups]
    assert has_norm == [False] + [True] * 6 + [False] + [True] * 7
    _check_io_never_pruned(space, 3, 3)


def test_resnet9_groups_with_one_residual_trunk(full_width):
    space = full_width["resnet9"].space
    assert space.num_groups == 14
    residual = [g for g in space.groups if g.kind == "residual"]
    assert len(residual) == 1
    trunk = residual[0]
    assert trunk.num_channels == 256
    assert set(trunk.producers) == {"model.7"} | {f"model.{i}.conv_block.5" for i in range(10, 19)}
    consumers = {c.module_name for c in trunk.consumers}
    assert consumers == {f"model.{i}.conv_block.1" for i in range(10, 19)} | {"model.19"}
    inner = [g for g in space.groups if g.name.endswith("conv_block.1")]
    assert len(inner) == 9 and all(g.kind == "conv" for g in inner)
    assert all([c.module_name for c in g.consumers] == [g.name[:-1] + "5"] for g in inner)
    assert [g.kind for g in space.groups if g.name in ("model.19", "model.22")] == [
        "conv_transpose", "conv_transpose"]
    _check_io_never_pruned(space, 3, 3)


def test_patchgan_groups(full_width):
    space = full_width["patchgan"].space
    assert [g.name for g in space.groups] == ["model.0", "model.2", "model.5", "model.8"]
    assert space.num_channels.tolist() == [64, 128, 256, 512]
    assert all(g.kind == "conv" for g in space.groups)
    _check_io_never_pruned(space, 6, 1)


def test_custom_net_groups(cases):
    space = cases["custom"].space
    by_name = {g.name: g for g in space.groups}
    residual = [g for g in space.groups if g.kind == "residual"]
    assert len(residual) == 1 and set(residual[0].producers) == {"stem", "body"}
    assert "bn" in residual[0].norm_layers
    assert {g.kind for g in space.groups} == {"residual", "conv", "conv_transpose"}
    assert set(by_name) - {residual[0].name} == {"down", "up"}
    # the output layer reads two groups through the concat, at disjoint input positions
    head_terms = [(g.name, c) for g in space.groups for c in g.consumers if c.module_name == "head"]
    assert len(head_terms) == 2
    idx = torch.cat([c.in_idx for _, c in head_terms])
    assert sorted(idx.tolist()) == list(range(16))
    _check_io_never_pruned(space, 3, 3)


def test_l1_importance_reads_each_output_channel_of_a_grouped_transposed_conv():
    """A grouped ConvTranspose2d (the separable U-Net's depthwise up-sampling) stores its weight
    as (in, out / groups, k, k): channel j's filter is not row or column j."""
    from gan_prune_env.pruning.importance import filter_l1

    conv = nn.ConvTranspose2d(4, 6, 3, groups=2)  # weight (4, 3, 3, 3): 2 inputs, 3 outputs a group
    with torch.no_grad():
        conv.weight.copy_(torch.arange(conv.weight.numel(), dtype=torch.float).view_as(conv.weight))
    expected = [conv.weight[(j // 3) * 2:(j // 3) * 2 + 2, j % 3].sum().item() for j in range(6)]
    assert filter_l1(conv).tolist() == pytest.approx(expected)
    plain = nn.ConvTranspose2d(4, 6, 3)
    assert filter_l1(plain).tolist() == pytest.approx(
        plain.weight.detach().abs().sum(dim=(0, 2, 3)).tolist())


def test_a_separable_unet_narrows_to_the_separable_unet_of_that_width():
    """Pruning the separable student: through a depthwise up-convolution a level's skip and up
    path are one channel group; ``slice_separable_unet`` keeps the best channels of each path
    alike, so the result is the narrower separable U-Net, MAC for MAC."""
    from gan_prune_env.models import separable_unet
    from gan_prune_env.pruning import slice_separable_unet

    x = torch.randn(2, 3, 32, 32)
    wide, narrow = separable_unet(3, 3, 5, 8).eval(), separable_unet(3, 3, 5, 6).eval()
    space = ChannelSpace(wide, x)
    assert space.num_channels.tolist() == [64, 128, 64, 32, 16]  # [skip | up] of 4 levels
    with torch.no_grad():  # the stem's filters dominate its group's L1 ranking, far apart
        # (at random magnitudes two can lie within the other layers' share of the ranking)
        stem = wide.model.model[0].weight
        stem.copy_(stem.sign() * (100 * (1 + torch.randperm(8))).view(-1, 1, 1, 1))
    sliced = slice_separable_unet(wide, 6, x)
    assert count_macs(sliced, x[:1]) == count_macs(narrow, x[:1])
    assert sliced(x).shape == wide(x).shape
    # the first level's skip (the stem) keeps its 6 largest filters, not any 6
    stem = wide.model.model[0].weight.detach()
    best = torch.topk(stem.abs().flatten(1).sum(1), 6).indices.sort().values
    assert torch.equal(sliced.model.model[0].weight, stem[best])
    with pytest.raises(ValueError, match="width 8 to 9"):
        slice_separable_unet(wide, 9, x)


def test_a_separable_unet_narrows_by_the_ranking_it_is_given():
    """``importance`` decides which channels survive: a ranking that prefers the last channels
    keeps the stem's last filters, whatever their L1."""
    from gan_prune_env.models import separable_unet
    from gan_prune_env.pruning import slice_separable_unet

    x = torch.randn(2, 3, 32, 32)
    wide = separable_unet(3, 3, 5, 8).eval()
    last_first = lambda group, num_channels: torch.arange(num_channels, dtype=torch.float64)
    sliced = slice_separable_unet(wide, 6, x, last_first)
    assert torch.equal(sliced.model.model[0].weight, wide.model.model[0].weight[2:])


def test_position_ranking_keeps_the_first_channels_of_every_path():
    """Slimmable networks' order: in every group the top ``paths * k`` channels are the first
    ``k`` of each path (a ranking by plain index would take one path's channels first, a
    reversed one the last channels), so the separable U-Net narrows to its first channels."""
    from gan_prune_env.models import separable_unet
    from gan_prune_env.pruning import slice_separable_unet
    from gan_prune_env.pruning.importance import PositionImportance, is_depthwise

    x = torch.randn(2, 3, 32, 32)
    wide = separable_unet(3, 3, 5, 8).eval()
    space = ChannelSpace(wide, x[:1], PositionImportance())
    assert [sum(not is_depthwise(wide.get_submodule(p)) for p in g.producers)
            for g in space.groups] == [1, 2, 2, 2, 2]  # the innermost level has no skip
    for group in space.groups:
        paths = 1 if group is space.groups[0] else 2
        width = group.num_channels // paths
        top = sorted(group.ranking[:paths * 3].tolist())
        assert top == [p * width + i for p in range(paths) for i in range(3)], group.name
    sliced = slice_separable_unet(wide, 6, x, PositionImportance())
    assert torch.equal(sliced.model.model[0].weight, wide.model.model[0].weight[:6])


def test_groups_ordered_and_indexed(cases):
    for case in cases.values():
        space = case.space
        assert [g.index for g in space.groups] == list(range(space.num_groups))
        orders = [space.layers[g.name].order for g in space.groups]
        assert orders == sorted(orders)


# -- MACs and parameters --------------------------------------------------------------------------

def test_reference_macs_at_256(full_width):
    assert round(full_width["resnet9"].space.full_macs / 1e9, 2) == 56.80
    assert round(full_width["resnet9"].space.full_true_macs / 1e9, 2) == 49.55
    assert round(full_width["unet256"].space.full_macs / 1e9, 2) == 18.14
    assert round(full_width["patchgan"].space.full_macs / 1e9, 2) == 3.20
    for fw in full_width.values():
        assert fw.space.full_params == count_params(fw.model)
    r9 = full_width["resnet9"]
    assert count_true_macs_profiler(r9.model, r9.x) == r9.space.full_true_macs


@pytest.mark.parametrize("kind", ARCHS)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_analytic_accounting_equals_profiled_sliced_model(cases, name, kind):
    case = cases[name]
    counts = arch(case.space, kind)
    sliced = slice_model(case.model, case.space, counts)
    assert case.space.macs(counts) == count_macs(sliced, case.x)
    assert case.space.macs(counts, convention="true") == count_true_macs_profiler(sliced, case.x)
    assert case.space.params(counts) == count_params(sliced)
    if kind == "full":
        assert case.space.macs(counts) == case.space.full_macs == count_macs(case.model, case.x)
        assert case.space.macs_ratio(counts) == 1.0


def test_unpruned_true_macs_match_profiler(cases):
    for case in cases.values():
        assert case.space.full_true_macs == count_true_macs_profiler(case.model, case.x)
        assert case.space.full_macs >= case.space.full_true_macs


def test_macs_monotone_in_keep_ratio(cases):
    space = cases["unet"].space
    macs = [space.macs(space.counts_for_ratios([r] * space.num_groups))
            for r in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert macs == sorted(macs) and macs[-1] == space.full_macs
    assert 0 < space.macs_ratio(arch(space, "min")) < 0.15  # only input/output layers remain


def test_bad_convention_raises(cases):
    with pytest.raises(ValueError, match="convention"):
        cases["custom"].space.macs(arch(cases["custom"].space, "full"), convention="thop")


# -- masked model == sliced model -----------------------------------------------------------------

@pytest.mark.parametrize("kind", ARCHS)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_sliced_model_equals_masked_model_eval(cases, name, kind):
    case = cases[name]
    counts = arch(case.space, kind)
    expected = masked_output(case, counts)
    sliced = slice_model(case.model, case.space, counts).eval()
    with torch.no_grad():
        got = sliced(case.x)
        full = case.model(case.x)
    assert got.shape == expected.shape == full.shape
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    if kind == "full":
        assert torch.equal(expected, full)
        assert count_params(sliced) == count_params(case.model)
    else:  # the architecture really changes the function: the comparison is not vacuous
        assert (expected - full).abs().max() > 100 * ATOL


@pytest.mark.parametrize("kind", ("min", 0, 1, 2))
@pytest.mark.parametrize("name", ("resnet", "custom", "patchgan"))
def test_sliced_model_equals_masked_model_train_mode(cases, name, kind):
    """InstanceNorm normalises per sample and channel, BatchNorm per channel over the batch, so a
    removed channel cannot change the others' statistics: train mode agrees as well (these
    models have no dropout)."""
    case = cases[name]
    counts = arch(case.space, kind)
    expected = masked_output(case, counts, train=True)
    sliced = slice_model(case.model, case.space, counts).train()
    with torch.no_grad():
        got = sliced(case.x)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ARCHS)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_architecture_slicer_computes_what_the_sliced_model_computes(cases, name, kind):
    """The env's fast path: the same modules on sliced tensors are the physically sliced
    network, bit for bit, without copying a module."""
    case = cases[name]
    counts = arch(case.space, kind)
    slicer = ArchitectureSlicer(case.model, case.space)
    tensors = slicer.tensors(counts)
    with torch.no_grad():
        expected = slice_model(case.model, case.space, counts).eval()(case.x)
        got = slicer(tensors, case.x)
    assert torch.equal(got, expected)
    sliced = slice_model(case.model, case.space, counts).state_dict()
    for key, tensor in tensors.items():  # every tensor has the sliced network's shape
        assert tensor.shape == sliced[key].shape, key
    if kind == "full":
        assert not tensors  # nothing to cut


@pytest.mark.parametrize("kind", ("min", 0, 1))
@pytest.mark.parametrize("name", ("unet", "custom"))
def test_architecture_slicer_recalibrates_on_its_own_tensors(cases, name, kind):
    """Fresh statistics estimated on the sliced tensors equal those the masked network
    estimates for its kept channels, and the model's own buffers do not move."""
    case = cases[name]
    counts = arch(case.space, kind)
    model = copy.deepcopy(case.model)
    before = copy.deepcopy(model.state_dict())
    slicer = ArchitectureSlicer(model, case.space)
    tensors = slicer.tensors(counts, fresh_statistics=True)
    with torch.no_grad(), slicer.recalibrating():
        slicer(tensors, case.x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training

    from gan_prune_env.envs.game import recalibrating  # the env's masked adaptive BN

    masked = copy.deepcopy(case.model)
    with ChannelMasker(masked, case.space) as masker, torch.no_grad():
        masker.set_counts(counts)
        with recalibrating(masked):
            masked(case.x)
        expected = masked(case.x)
    with torch.no_grad():
        got = slicer(tensors, case.x)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


class PerChannelActivationNet(nn.Module):
    """A per-channel PReLU after a pruned convolution: state the groups do not know about."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.PReLU(8)
        self.head = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(x)))


def test_architecture_slicer_refuses_a_model_it_cannot_cut_exactly(cases):
    model = PerChannelActivationNet().eval()
    with pytest.raises(SlicingUnsupported, match="'act' \\(PReLU\\)"):
        ArchitectureSlicer(model, ChannelSpace(model, torch.randn(2, 3, 8, 8)))
    case = cases["custom"]
    slicer = ArchitectureSlicer(case.model, case.space)
    with ChannelMasker(case.model, case.space) as masker:
        slicer.check(masker, case.x)  # agrees with the masks
        with torch.no_grad():  # a slicer whose cut misses a tensor: outputs differ
            original = slicer._slice_module
            slicer._slice_module = lambda name, out_idx, in_idx, fresh: {
                k: v for k, v in original(name, out_idx, in_idx, fresh).items()
                if not k.startswith("bn.")} if name != "bn" else {}
            with pytest.raises(SlicingUnsupported):
                slicer.check(masker, case.x)


def test_slicing_a_model_with_an_attached_masker(cases):
    """Regression: the deep copy ``slice_model`` makes inherited the masker's hooks and crashed
    (full-width masks applied to sliced inputs). Copies must be unaffected by the masker."""
    case = cases["unet"]
    model = copy.deepcopy(case.model)
    counts = arch(case.space, 0)
    with ChannelMasker(model, case.space) as masker, torch.no_grad():
        masker.set_counts(counts)
        masked = model(case.x)
        sliced = slice_model(model, case.space, counts).eval()
        torch.testing.assert_close(sliced(case.x), masked, atol=ATOL, rtol=0)
        torch.testing.assert_close(copy.deepcopy(model)(case.x), case.model(case.x))
        torch.testing.assert_close(model(case.x), masked)  # the original stays masked


def test_tracing_and_slicing_work_under_no_grad(cases):
    """Torch-Pruning traces with autograd; callers inside ``torch.no_grad()`` must not care."""
    case = cases["patchgan"]
    with torch.no_grad():
        space = ChannelSpace(case.model, case.x)
        counts = arch(space, 0)
        sliced = slice_model(case.model, space, counts)
    assert space.num_groups == case.space.num_groups
    assert count_params(sliced) == space.params(counts)


def test_masker_reset_and_remove_restore_the_full_network(cases):
    case = cases["custom"]
    model = copy.deepcopy(case.model)
    with torch.no_grad():
        full = model(case.x)
        masker = ChannelMasker(model, case.space)
        masker.set_counts(arch(case.space, "min"))
        assert not torch.allclose(model(case.x), full)
        masker.reset()
        assert torch.equal(model(case.x), full)
        assert masker.counts.tolist() == case.space.num_channels.tolist()
        masker.set_ratios([0.5] * case.space.num_groups)
        assert masker.counts.tolist() == case.space.counts_for_ratios(
            [0.5] * case.space.num_groups).tolist()
        masker.remove()
        assert torch.equal(model(case.x), full)


def test_slicing_keeps_module_names_and_shrinks_shapes(cases):
    for case in cases.values():
        counts = arch(case.space, 1)
        sliced = slice_model(case.model, case.space, counts)
        full_sd, sliced_sd = case.model.state_dict(), sliced.state_dict()
        assert list(sliced_sd) == list(full_sd)
        for key, value in sliced_sd.items():
            assert value.dim() == full_sd[key].dim()
            assert all(a <= b for a, b in zip(value.shape, full_sd[key].shape)), key
        for g, n in zip(case.space.groups, counts):
            root = sliced.get_submodule(g.name)
            assert root.out_channels == n
        # the original is untouched
        assert count_params(case.model) == case.space.full_params


def test_sliced_checkpoint_rebuilds_from_kept_indices(cases):
    """A pruned checkpoint = base architecture + kept indices per group + sliced state dict."""
    case = cases["resnet"]
    counts = arch(case.space, 2)
    kept = case.space.keep_indices(counts)
    sliced = slice_model(case.model, case.space, counts)
    rebuilt = slice_by_indices(build_generator(GeneratorConfig(arch="resnet_6blocks", ngf=6,
                                                               norm="instance")), case.x, kept)
    rebuilt.load_state_dict(sliced.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(case.x), sliced.eval()(case.x), atol=0, rtol=0)


def test_slice_by_indices_rejects_bad_architectures(cases):
    case = cases["custom"]
    with pytest.raises(KeyError, match="lacks"):
        slice_by_indices(case.model, case.x, {"no.such.layer": [0]})
    with pytest.raises(ValueError, match="non-empty"):
        slice_by_indices(case.model, case.x, {"down": []})
    with pytest.raises(ValueError, match="non-empty"):
        slice_by_indices(case.model, case.x, {"down": [0, 16]})


# -- extreme architectures ------------------------------------------------------------------------

def test_one_channel_everywhere(cases):
    for case in cases.values():
        counts = arch(case.space, "min")
        sliced = slice_model(case.model, case.space, counts).eval()
        for g in case.space.groups:
            assert sliced.get_submodule(g.name).out_channels == 1
        with torch.no_grad():
            out = sliced(case.x)
        assert torch.isfinite(out).all()
        assert case.space.macs(counts) == count_macs(sliced, case.x)


def test_full_architecture_is_a_no_op(cases):
    for case in cases.values():
        full = arch(case.space, "full")
        assert case.space.params(full) == case.space.full_params
        model = copy.deepcopy(case.model)
        with ChannelMasker(model, case.space) as masker:
            masker.set_counts(full)
            assert all(m is None for m in masker._masks.values())  # no hook work at all
        assert case.space.counts_for_ratios(np.ones(case.space.num_groups)).tolist() == \
            full.tolist()


# -- ratios, counts, divisor ----------------------------------------------------------------------

@pytest.mark.parametrize("ratio,channels,divisor,expected", [
    (1.0, 64, 1, 64), (0.5, 64, 1, 32), (0.0, 64, 1, 1), (0.01, 64, 1, 1), (0.26, 10, 1, 3),
    (0.5, 64, 8, 32), (0.3, 64, 8, 16), (0.2, 64, 8, 16), (0.05, 64, 8, 1), (0.0, 64, 8, 1),
    (1.0, 60, 8, 60), (0.95, 60, 8, 56), (0.9, 60, 8, 56), (0.1, 60, 8, 8), (1.0, 1, 8, 1),
    (0.7, 3, 4, 3), (1.0, 3, 8, 3), (0.99, 3, 8, 1), (1.0, 4, 8, 4),
])
def test_channels_for_ratio(ratio, channels, divisor, expected):
    assert channels_for_ratio(ratio, channels, divisor) == expected


@pytest.mark.parametrize("ratio", [float("nan"), -0.01, 1.01, float("inf"), -float("inf")])
def test_channels_for_ratio_rejects_bad_ratio(ratio):
    with pytest.raises(ValueError, match="keep ratio"):
        channels_for_ratio(ratio, 64)


def test_channels_for_ratio_rejects_bad_divisor():
    with pytest.raises(ValueError, match="divisor"):
        channels_for_ratio(0.5, 64, 0)


def test_channels_for_ratio_is_monotone():
    for c in (1, 3, 7, 64, 100):
        for d in (1, 4, 8):
            counts = [channels_for_ratio(r, c, d) for r in np.linspace(0, 1, 101)]
            assert counts == sorted(counts) and counts[-1] == c and min(counts) >= 1


def test_space_with_divisor(cases):
    case = cases["unet"]
    space = ChannelSpace(case.model, case.x, divisor=4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = space.counts_for_ratios(rng.uniform(0, 1, space.num_groups))
        assert all(n == 1 or n % 4 == 0 or n == c for n, c in zip(counts, space.num_channels))
        assert np.all((counts >= 1) & (counts <= space.num_channels))
    with pytest.raises(ValueError, match="divisor"):
        ChannelSpace(case.model, case.x, divisor=0)


def test_counts_are_validated(cases):
    space = cases["patchgan"].space
    full = arch(space, "full")
    with pytest.raises(ValueError, match="keep ratios"):
        space.counts_for_ratios([0.5] * (space.num_groups + 1))
    with pytest.raises(ValueError, match="keep ratio"):
        space.counts_for_ratios([float("nan")] * space.num_groups)
    with pytest.raises(ValueError, match="channel counts"):
        space.macs(full[:-1])
    bad = full.copy()
    bad[1] = 0
    with pytest.raises(ValueError, match="outside"):
        space.params(bad)
    bad[1] = full[1] + 1
    with pytest.raises(ValueError, match="outside"):
        space.keep_indices(bad)
    with pytest.raises(ValueError, match="outside"):
        space.groups[0].keep_indices(0)


# -- importance -----------------------------------------------------------------------------------

def _producer_l1(model: nn.Module, group) -> torch.Tensor:
    total = torch.zeros(group.num_channels, dtype=torch.float64)
    for name in group.producers:
        m = model.get_submodule(name)
        w = m.weight.detach().double().abs()
        out_dim = 1 if isinstance(m, nn.ConvTranspose2d) else 0
        total += w.transpose(0, out_dim).flatten(1).sum(1)
    return total


@pytest.mark.parametrize("name", CASE_NAMES)
def test_keeping_k_channels_keeps_the_k_largest_l1_filters(cases, name):
    case = cases[name]
    for g in case.space.groups:
        l1 = _producer_l1(case.model, g)
        for k in sorted({1, max(1, g.num_channels // 3), g.num_channels - 1, g.num_channels}):
            if k < 1:
                continue
            expected = torch.topk(l1, k).indices.sort().values
            assert torch.equal(g.keep_indices(k), expected), (g.name, k)


def test_norm_scale_keeps_the_channels_with_the_largest_norm_gammas(cases):
    """Network slimming: a group keeps the channels whose affine norms scale them most; a group
    without one falls back to the producers' L1."""
    case = cases["unet"]
    model = copy.deepcopy(case.model)  # the fixture's model is shared
    space = ChannelSpace(model, case.x, importance=make_importance("norm_scale"))
    with_norm = [g for g in space.groups if g.norm_layers]
    assert with_norm and len(with_norm) < space.num_groups  # both kinds are exercised
    for norm in model.modules():  # trained-looking gammas, unlike the init's ones
        if isinstance(norm, nn.BatchNorm2d):
            norm.weight.data = torch.randn(norm.num_features, generator=torch.Generator()
                                           .manual_seed(norm.num_features)) * 2
    space = ChannelSpace(model, case.x, importance=make_importance("norm_scale"))
    for g in space.groups:
        expected = sum((model.get_submodule(n).weight.detach().double().abs()
                        for n in g.norm_layers), torch.zeros(g.num_channels, dtype=torch.float64))
        if not g.norm_layers:
            expected = _producer_l1(model, g)
        k = max(1, g.num_channels // 3)
        assert torch.equal(g.keep_indices(k), torch.topk(expected, k).indices.sort().values), \
            g.name
    l1_space = ChannelSpace(model, case.x)
    assert any(not torch.equal(a.ranking, b.ranking) for a, b in zip(space.groups,
                                                                    l1_space.groups))


def test_sliced_root_weights_are_the_kept_filters(cases):
    case = cases["unet"]
    counts = arch(case.space, 3)
    sliced = slice_model(case.model, case.space, counts)
    checked = []
    for g, n in zip(case.space.groups, counts):
        original = case.model.get_submodule(g.name)
        out_dim = 1 if isinstance(original, nn.ConvTranspose2d) else 0
        kept = g.keep_indices(int(n))
        expected = original.weight.index_select(out_dim, kept)
        got = sliced.get_submodule(g.name).weight
        in_dim = 1 - out_dim
        # Input channels may be sliced too (by the producer's group): every sliced input slice
        # must be one of the kept filters' input slices, in their original order.
        position = 0
        for j in range(got.shape[in_dim]):
            piece = got.select(in_dim, j)
            while position < expected.shape[in_dim] and \
                    not torch.equal(expected.select(in_dim, position), piece):
                position += 1
            assert position < expected.shape[in_dim], (g.name, j)
            position += 1
        checked.append(g.name)
    assert len(checked) == case.space.num_groups


def test_other_importances_give_valid_rankings(cases):
    case = cases["custom"]
    l1_space = case.space
    rnd_space = ChannelSpace(case.model, case.x, importance=RandomImportance(seed=3))
    tp_space = ChannelSpace(case.model, case.x, importance=TorchPruningImportance())
    for space in (rnd_space, tp_space, ChannelSpace(case.model, case.x, make_importance("l1"))):
        assert space.num_groups == l1_space.num_groups
        for g in space.groups:
            assert sorted(g.ranking.tolist()) == list(range(g.num_channels))
    assert any(not torch.equal(a.ranking, b.ranking)
               for a, b in zip(rnd_space.groups, l1_space.groups))
    assert isinstance(make_importance("l1"), L1FilterImportance)
    assert isinstance(make_importance("random"), RandomImportance)
    with pytest.raises(ValueError, match="unknown importance"):
        make_importance("taylor")
    # the masked == sliced contract holds for any ranking
    counts = arch(rnd_space, 0)
    rnd_case = SimpleNamespace(model=case.model, x=case.x, space=rnd_space)
    sliced = slice_model(case.model, rnd_space, counts).eval()
    with torch.no_grad():
        torch.testing.assert_close(sliced(case.x), masked_output(rnd_case, counts), atol=ATOL,
                                   rtol=0)


# -- soft gates -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CASE_NAMES)
def test_soft_gates_all_ones_is_the_unmasked_model(cases, name):
    case = cases[name]
    model = copy.deepcopy(case.model)
    with torch.no_grad():
        full = model(case.x)
    with ChannelMasker(model, case.space) as masker:
        gates = [torch.ones(int(c), requires_grad=True) for c in case.space.num_channels]
        masker.set_gates(gates)
        out = model(case.x)
    torch.testing.assert_close(out, full, atol=0, rtol=0)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_gradients_flow_to_every_gate(cases, name):
    case = cases[name]
    model = copy.deepcopy(case.model).train()
    g = torch.Generator().manual_seed(0)
    gates = [torch.rand(int(c), generator=g).mul(0.8).add(0.1).requires_grad_()
             for c in case.space.num_channels]
    with ChannelMasker(model, case.space) as masker:
        masker.set_gates(gates)
        model(case.x).square().mean().backward()
    for group, gate in zip(case.space.groups, gates):
        assert gate.grad is not None, group.name
        assert torch.isfinite(gate.grad).all()
        assert gate.grad.abs().sum() > 0, group.name


def test_hard_gates_equal_set_counts(cases):
    case = cases["unet"]
    counts = arch(case.space, 1)
    gates = []
    for grp, n in zip(case.space.groups, counts):
        gate = torch.zeros(grp.num_channels)
        gate[grp.keep_indices(int(n))] = 1.0
        gates.append(gate)
    model = copy.deepcopy(case.model)
    with ChannelMasker(model, case.space) as masker, torch.no_grad():
        masker.set_gates(gates)
        via_gates = model(case.x)
    torch.testing.assert_close(via_gates, masked_output(case, counts), atol=0, rtol=0)
    with pytest.raises(ValueError, match="gate vectors"):
        ChannelMasker(copy.deepcopy(case.model), case.space).set_gates(gates[:-1])


# -- observations ---------------------------------------------------------------------------------

def test_group_features_shape_and_range(cases, full_width):
    for space in [c.space for c in cases.values()] + [f.space for f in full_width.values()]:
        feats = space.group_features()
        assert feats.shape == (space.num_groups, len(GROUP_FEATURE_NAMES))
        assert feats.dtype == np.float32
        assert np.isfinite(feats).all() and feats.min() >= 0.0 and feats.max() <= 1.0
        assert np.all(feats[:, :4].sum(1) == 1.0)  # kind one-hot
        assert np.all(feats[:, GROUP_FEATURE_NAMES.index("macs_share")] > 0)
        depth = feats[:, GROUP_FEATURE_NAMES.index("depth")]
        assert np.all(np.diff(depth) > 0)  # groups in execution order
    trunk = [g.index for g in full_width["resnet9"].space.groups if g.kind == "residual"][0]
    r9 = full_width["resnet9"].space.group_features()
    assert r9[trunk, GROUP_FEATURE_NAMES.index("kind_residual")] == 1.0
    # the trunk touches 19 of the 28 layers' channels: the largest compute share
    share = GROUP_FEATURE_NAMES.index("macs_share")
    assert r9[trunk, share] == r9[:, share].max()


def test_describe(cases):
    space = cases["resnet"].space
    counts = arch(space, 0)
    rows = space.describe(counts)
    assert [r["kept"] for r in rows] == counts.tolist()
    assert all(0 < r["ratio"] <= 1 for r in rows)


def test_recalibration_starts_afresh_also_for_norms_outside_every_group():
    """A BatchNorm on the network's output channels belongs to no group (the output is never
    pruned), yet the masked recalibration re-estimates it: the sliced one must too."""
    from gan_prune_env.envs.game import recalibrating

    model = randomise(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 3, 3, padding=1), nn.BatchNorm2d(3)), 2).eval()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    space = ChannelSpace(model, x)
    counts = np.array([3])
    slicer = ArchitectureSlicer(model, space)
    assert [prefix for prefix, _ in slicer._ungrouped_norms] == ["4."]
    tensors = slicer.tensors(counts, fresh_statistics=True)
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad(), slicer.recalibrating():
        slicer(tensors, x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    masked = copy.deepcopy(model)
    with ChannelMasker(masked, space) as masker, torch.no_grad():
        masker.set_counts(counts)
        with recalibrating(masked):
            masked(x)
        expected = masked(x)
    with torch.no_grad():
        torch.testing.assert_close(slicer(tensors, x), expected, atol=ATOL, rtol=0)


# -- gradual pruning ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
def test_gradual_architectures_narrow_in_nested_stages_to_the_final_one(cases, name):
    """Each stage holds the next; the last is the final architecture; widths fall by the same
    ratio from stage to stage; the channels a stage adds are the best ranked of those the
    final architecture drops (a random final architecture, so "the final's own top-k" is not
    what makes the check pass)."""
    case = cases[name]
    counts = np.maximum(1, case.space.num_channels // 4)
    rng = np.random.default_rng(0)
    final = {g.name: sorted(rng.choice(g.num_channels, int(n), replace=False).tolist())
             for g, n in zip(case.space.groups, counts)}
    plans = gradual_architectures(case.model, case.x, final, stages=3)
    assert len(plans) == 3 and plans[-1] == final
    for wider, narrower in zip(plans, plans[1:]):
        for group, keep in narrower.items():
            assert set(keep) <= set(wider[group]) and len(keep) <= len(wider[group])
    for g, n in zip(case.space.groups, counts):
        widths = [len(plan[g.name]) for plan in plans]
        expected = [round(g.num_channels * (n / g.num_channels) ** (s / 3)) for s in (1, 2, 3)]
        assert widths == expected, g.name
        added = [c for c in plans[0][g.name] if c not in final[g.name]]
        dropped_ranked = [c for c in g.ranking.tolist() if c not in final[g.name]]
        assert sorted(added) == sorted(dropped_ranked[:len(added)]), g.name
    assert any(len(plans[0][g]) > len(final[g]) for g in final)  # not vacuous


def test_one_stage_is_the_final_architecture_and_unknown_groups_are_refused(cases):
    case = cases["unet"]
    final = case.space.keep_indices(arch(case.space, 0))
    assert gradual_architectures(case.model, case.x, final, stages=1) == [final]
    with pytest.raises(KeyError, match="no_such_layer"):
        gradual_architectures(case.model, case.x, {"no_such_layer": [0]}, stages=2)
    with pytest.raises(ValueError, match="stages"):
        gradual_architectures(case.model, case.x, final, stages=0)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_slicing_a_slice_by_relative_indices_equals_slicing_the_full_model(cases, name):
    """The stage-to-stage cut: a network sliced to a wide architecture, cut again by
    ``relative_indices``, computes what the full network sliced straight to the narrow one
    does."""
    case = cases[name]
    final = case.space.keep_indices(np.maximum(1, case.space.num_channels // 3))
    wide, narrow = gradual_architectures(case.model, case.x, final, stages=2)
    twice = slice_by_indices(slice_by_indices(case.model, case.x, wide), case.x,
                             relative_indices(wide, narrow))
    once = slice_by_indices(case.model, case.x, narrow)
    with torch.no_grad():
        torch.testing.assert_close(twice(case.x), once(case.x), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="not kept by the wider"):
        relative_indices(narrow, wide)


def test_macs_are_counted_for_a_network_on_another_device_than_its_example():
    # the pipeline counts a CUDA network's MACs with a CPU example; the meta device stands in for
    # CUDA here (a forward across devices raises on both)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    example = torch.zeros(1, 3, 8, 8)
    assert count_macs(copy.deepcopy(net).to("meta"), example) == count_macs(net, example) > 0
