"""Our generators/discriminators against the reference pytorch-CycleGAN-and-pix2pix classes.

METHOD 2: module names, nesting and norms follow the reference so its checkpoints load with
``strict=True``; reference parameter counts at width 64 are 54.41M / 11.38M / 2.77M.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from gan_prune_env.models import (
    DiscriminatorConfig, GeneratorConfig, NLayerDiscriminator, ResnetGenerator, UnetGenerator,
    build_discriminator, build_generator, unet_depth,
)
from gan_prune_env.models.factory import reinitialize

try:  # works whether or not tests/ becomes a package
    from tests import reference_networks as ref
except ImportError:  # pragma: no cover
    import reference_networks as ref


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def reference_generator(cfg: GeneratorConfig) -> nn.Module:
    norm_layer = ref.get_norm_layer(cfg.norm)
    kw = dict(ngf=cfg.ngf, norm_layer=norm_layer, use_dropout=cfg.use_dropout)
    if cfg.arch == "resnet_9blocks":
        return ref.ResnetGenerator(cfg.input_nc, cfg.output_nc, n_blocks=9, **kw)
    if cfg.arch == "resnet_6blocks":
        return ref.ResnetGenerator(cfg.input_nc, cfg.output_nc, n_blocks=6, **kw)
    num_downs = {"unet_256": 8, "unet_128": 7}.get(cfg.arch) or unet_depth(cfg.image_size)
    return ref.UnetGenerator(cfg.input_nc, cfg.output_nc, num_downs, **kw)


def reference_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    n_layers = 3 if cfg.arch == "basic" else cfg.n_layers
    return ref.NLayerDiscriminator(cfg.input_nc, cfg.ndf, n_layers=n_layers,
                                   norm_layer=ref.get_norm_layer(cfg.norm))


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def leaf_layout(model: nn.Module) -> list[tuple[str, str]]:
    """Every leaf module's name and repr: catches kernel/stride/padding/slope/affine/dropout
    differences that a state dict cannot show (ReLU, LeakyReLU, Dropout, padding layers)."""
    return [(name, repr(m)) for name, m in model.named_modules() if not list(m.children())]


def saved_and_loaded(model: nn.Module) -> dict[str, torch.Tensor]:
    """Round-trip a state dict through ``torch.save``/``torch.load``, as a .pth file would."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, biases and BatchNorm running statistics, so equality checks bite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
            elif name.endswith("weight") and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model


GENERATOR_CASES = [
    GeneratorConfig(arch="unet_256", ngf=8),
    GeneratorConfig(arch="unet_256", ngf=8, use_dropout=True),
    GeneratorConfig(arch="unet_256", ngf=8, norm="instance"),
    GeneratorConfig(arch="unet_128", ngf=8),
    GeneratorConfig(arch="unet_128", ngf=8, norm="instance", use_dropout=True),
    GeneratorConfig(arch="unet_auto", ngf=8, image_size=64),
    GeneratorConfig(arch="unet_auto", ngf=8, image_size=64, use_dropout=True),
    GeneratorConfig(arch="unet_auto", ngf=4, image_size=32, norm="none"),
    GeneratorConfig(arch="resnet_9blocks", ngf=8, norm="instance"),
    GeneratorConfig(arch="resnet_9blocks", ngf=8, norm="batch", use_dropout=True),
    GeneratorConfig(arch="resnet_6blocks", ngf=8, norm="instance", use_dropout=True),
    GeneratorConfig(arch="resnet_6blocks", ngf=8, norm="batch"),
    GeneratorConfig(arch="resnet_6blocks", ngf=4, norm="none", input_nc=1, output_nc=2),
]
DISCRIMINATOR_CASES = [
    DiscriminatorConfig(input_nc=6, ndf=8),
    DiscriminatorConfig(input_nc=3, ndf=8),
    DiscriminatorConfig(input_nc=3, ndf=8, norm="instance"),
    DiscriminatorConfig(input_nc=6, ndf=8, norm="none"),
    DiscriminatorConfig(arch="n_layers", input_nc=6, ndf=4, n_layers=5),
    DiscriminatorConfig(arch="n_layers", input_nc=3, ndf=4, n_layers=1),
]


def _id(cfg) -> str:
    fields = [getattr(cfg, "arch"), getattr(cfg, "norm")]
    if isinstance(cfg, GeneratorConfig):
        fields += [f"ngf{cfg.ngf}", "drop" if cfg.use_dropout else "nodrop"]
        if cfg.arch == "unet_auto":
            fields.append(f"{cfg.image_size}px")
    else:
        fields += [f"{cfg.input_nc}ch", f"L{cfg.n_layers}"]
    return "-".join(map(str, fields))


# -- parameter counts at width 64 (METHOD 2) ------------------------------------------------------

@pytest.mark.parametrize("cfg,expected_m", [
    (GeneratorConfig(arch="unet_256", norm="batch"), 54.41),
    (GeneratorConfig(arch="resnet_9blocks", norm="instance"), 11.38),
])
def test_generator_param_counts_match_published(cfg, expected_m):
    ours = build_generator(cfg, seed=0)
    assert round(n_params(ours) / 1e6, 2) == expected_m
    assert n_params(ours) == n_params(reference_generator(cfg))


def test_patchgan_param_count_matches_published():
    cfg = DiscriminatorConfig(input_nc=6, ndf=64)
    ours = build_discriminator(cfg, seed=0)
    assert round(n_params(ours) / 1e6, 2) == 2.77
    assert n_params(ours) == n_params(reference_discriminator(cfg))


# -- checkpoint compatibility ---------------------------------------------------------------------

@pytest.mark.parametrize("cfg", GENERATOR_CASES, ids=_id)
def test_generator_state_dict_and_layout_match_reference(cfg):
    ours, theirs = build_generator(cfg, seed=0), reference_generator(cfg)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert shapes(ours) == shapes(theirs)
    assert leaf_layout(ours) == leaf_layout(theirs)


@pytest.mark.parametrize("cfg", DISCRIMINATOR_CASES, ids=_id)
def test_discriminator_state_dict_and_layout_match_reference(cfg):
    ours, theirs = build_discriminator(cfg, seed=0), reference_discriminator(cfg)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert shapes(ours) == shapes(theirs)
    assert leaf_layout(ours) == leaf_layout(theirs)


def test_full_width_unet_256_state_dict_matches_reference():
    cfg = GeneratorConfig(arch="unet_256", ngf=64, use_dropout=True)
    assert shapes(build_generator(cfg)) == shapes(reference_generator(cfg))


@pytest.mark.parametrize("cfg", GENERATOR_CASES, ids=_id)
def test_reference_checkpoint_loads_strictly_and_gives_identical_outputs(cfg):
    torch.manual_seed(0)
    theirs = randomise(reference_generator(cfg), seed=1).eval()
    ours = build_generator(cfg, seed=123)
    ours.load_state_dict(saved_and_loaded(theirs), strict=True)
    ours.eval()
    size = cfg.image_size if cfg.arch == "unet_auto" else {"unet_256": 256, "unet_128": 128}.get(
        cfg.arch, 32)
    x = torch.randn(2, cfg.input_nc, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (2, cfg.output_nc, size, size)
    assert torch.equal(got, expected)
    assert expected.std() > 1e-3  # not a degenerate (constant) output


@pytest.mark.parametrize("cfg", DISCRIMINATOR_CASES, ids=_id)
def test_reference_discriminator_checkpoint_loads_strictly(cfg):
    theirs = randomise(reference_discriminator(cfg), seed=3).eval()
    ours = build_discriminator(cfg, seed=5)
    ours.load_state_dict(saved_and_loaded(theirs), strict=True)
    ours.eval()
    x = torch.randn(2, cfg.input_nc, 128, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_our_checkpoint_loads_into_reference():
    cfg = GeneratorConfig(arch="resnet_6blocks", ngf=8, norm="instance")
    theirs = reference_generator(cfg)
    theirs.load_state_dict(randomise(build_generator(cfg)).state_dict(), strict=True)


def test_mismatched_checkpoint_is_rejected():
    """strict loading must catch an architecture mismatch (different depth)."""
    theirs = reference_generator(GeneratorConfig(arch="unet_128", ngf=8))
    ours = build_generator(GeneratorConfig(arch="unet_256", ngf=8))
    with pytest.raises(RuntimeError):
        ours.load_state_dict(theirs.state_dict(), strict=True)


# -- shapes and construction ----------------------------------------------------------------------

@pytest.mark.parametrize("cfg,size", [
    (GeneratorConfig(arch="unet_auto", image_size=64, ngf=4), 64),
    (GeneratorConfig(arch="unet_auto", image_size=32, ngf=4, input_nc=1, output_nc=2), 32),
    (GeneratorConfig(arch="unet_128", ngf=4), 128),
    (GeneratorConfig(arch="resnet_6blocks", ngf=4, norm="instance"), 48),
    (GeneratorConfig(arch="resnet_9blocks", ngf=4, norm="instance", output_nc=1), 64),
])
def test_generator_output_shape(cfg, size):
    net = build_generator(cfg, seed=0).eval()
    with torch.no_grad():
        y = net(torch.randn(3, cfg.input_nc, size, size))
    assert y.shape == (3, cfg.output_nc, size, size)
    assert y.abs().max() <= 1.0  # Tanh output


@pytest.mark.parametrize("size,expected", [(256, 30), (64, 6), (32, 2)])
def test_patchgan_output_shape(size, expected):
    net = build_discriminator(DiscriminatorConfig(input_nc=6, ndf=4), seed=0).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 6, size, size))
    assert y.shape == (2, 1, expected, expected)


def test_builders_return_reference_named_classes():
    assert isinstance(build_generator(GeneratorConfig(ngf=4)), UnetGenerator)
    resnet = build_generator(GeneratorConfig(arch="resnet_6blocks", ngf=4))
    assert isinstance(resnet, ResnetGenerator)
    assert isinstance(build_discriminator(DiscriminatorConfig(ndf=4)), NLayerDiscriminator)


def test_unet_auto_depth_brings_image_to_1x1():
    assert unet_depth(32) == 5 and unet_depth(64) == 6 and unet_depth(256) == 8
    net = build_generator(GeneratorConfig(arch="unet_auto", image_size=64, ngf=4))
    sizes = []
    innermost = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
    innermost.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
    net.eval()(torch.randn(1, 3, 64, 64))
    assert sizes == [(1, 1)]


def test_seeded_init_is_deterministic_and_reference_style():
    cfg = GeneratorConfig(arch="unet_auto", image_size=32, ngf=4)
    a, b = build_generator(cfg, seed=7), build_generator(cfg, seed=7)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    c = build_generator(cfg, seed=8)
    assert not torch.equal(a.model.model[0].weight, c.model.model[0].weight)
    w = torch.cat([m.weight.flatten() for m in a.modules() if isinstance(m, nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.004  # N(0, 0.02)
    for m in a.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.bias == 0) and abs(m.weight.mean().item() - 1.0) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the device check)")
def test_seeded_reinit_of_a_cuda_network_gives_the_cpu_weights():
    # the recipe's shrunk start re-initialises a copy of the (CUDA) student; CUDA tensors cannot
    # draw from the CPU generator, so the draws are made on the CPU and copied
    cfg = GeneratorConfig(arch="unet_auto", image_size=32, ngf=4)
    on_cpu = reinitialize(build_generator(cfg), seed=3)
    on_gpu = reinitialize(build_generator(cfg).cuda(), seed=3)
    for (k, va), vb in zip(on_cpu.state_dict().items(), on_gpu.state_dict().values()):
        assert torch.equal(va, vb.cpu()), k


# -- bad configs fail loudly ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(arch="unet_512"), "generator arch"),
    (dict(arch="resnet_12blocks"), "generator arch"),
    (dict(norm="group"), "norm"),
    (dict(arch="unet_auto", image_size=100), "power-of-two"),
    (dict(arch="unet_auto", image_size=48), "power-of-two"),
    (dict(arch="unet_auto", image_size=16), ">= 32"),
    (dict(arch="unet_auto", image_size=0), "power-of-two"),
    (dict(ngf=0), "positive"),
    (dict(input_nc=0), "positive"),
])
def test_bad_generator_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeneratorConfig(**kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(arch="pixel"), "discriminator arch"),
    (dict(norm="layer"), "norm"),
    (dict(ndf=0), "positive"),
    (dict(arch="n_layers", n_layers=0), "positive"),
])
def test_bad_discriminator_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiscriminatorConfig(**kwargs)


def test_unet_auto_size_ignored_for_fixed_depth_archs():
    """unet_256 / unet_128 have fixed depth; image_size only matters for unet_auto."""
    cfg = GeneratorConfig(arch="unet_128", ngf=4, image_size=100)
    assert shapes(build_generator(cfg)) == shapes(reference_generator(
        GeneratorConfig(arch="unet_128", ngf=4)))


# --- the depthwise-separable U-Net (the frontier's GAN Compression-style student) --------------


def test_separable_unet_factorises_every_conv_but_the_stem_and_costs_what_the_formula_says():
    from gan_prune_env.distillation import auto_feature_layers
    from gan_prune_env.models import SeparableConv2d, SeparableConvTranspose2d, separable_unet
    from gan_prune_env.pruning.macs import count_macs

    ngf, size = 4, 32
    plain = UnetGenerator(3, 3, 5, ngf=ngf)
    net = separable_unet(3, 3, 5, ngf, mid_norm=True)
    x = torch.rand(2, 3, size, size) * 2 - 1
    assert net(x).shape == (2, 3, size, size)
    kinds = [type(m) for m in net.modules()]
    assert kinds.count(SeparableConv2d) == 4 and kinds.count(SeparableConvTranspose2d) == 5
    stem = net.model.model[0]  # the RGB stem stays a full conv
    assert type(stem) is nn.Conv2d and stem.groups == 1 and stem.in_channels == 3
    # same positions and names as the plain U-Net: feature-distillation layers line up
    assert auto_feature_layers(net) == auto_feature_layers(plain)  # the same decoder norms

    # field convention: a separable k x k conv costs C_in*k^2*HW (depthwise) + C_in*C_out*HW
    def separable_macs(cin, cout, hw):
        return cin * 16 * hw + cin * cout * hw

    def full_macs(cin, cout, hw):
        return cin * cout * 16 * hw

    c = [ngf, 2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf]  # channels after each down level
    down = full_macs(3, c[0], 16 ** 2) + sum(
        separable_macs(c[i], c[i + 1], (size >> (i + 2)) ** 2) for i in range(4))
    up_in = [c[4], 2 * c[3], 2 * c[2], 2 * c[1], 2 * c[0]]  # innermost first
    up_out = [c[3], c[2], c[1], c[0], 3]
    up = sum(separable_macs(cin, cout, (1 << (i + 1)) ** 2)  # field: at the output size
             for i, (cin, cout) in enumerate(zip(up_in, up_out)))
    assert count_macs(net, x) == down + up
    assert count_macs(net, x) < count_macs(plain, x) / 3


def test_separable_unet_without_a_middle_norm_is_depthwise_then_pointwise():
    from gan_prune_env.models import SeparableConv2d, separable_unet

    net = separable_unet(3, 3, 5, 4, mid_norm=False)
    block = next(m for m in net.modules() if isinstance(m, SeparableConv2d))
    assert list(dict(block.named_children())) == ["depthwise", "pointwise"]
    assert block.depthwise.groups == block.depthwise.in_channels == block.pointwise.in_channels
    assert block.pointwise.kernel_size == (1, 1)


def _rank_one_kernels(net: nn.Module, seed: int = 0) -> None:
    """Make every 4x4 kernel rank 1 per input channel: the case a factorisation keeps exactly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.kernel_size == (4, 4):
                w = m.weight  # Conv2d (out, in, k, k); ConvTranspose2d (in, out, k, k)
                c_in = w.shape[0] if isinstance(m, nn.ConvTranspose2d) else w.shape[1]
                c_out = w.numel() // (16 * c_in)
                u = torch.randn(c_in, c_out, generator=generator)
                v = torch.randn(c_in, 16, generator=generator)
                k = torch.einsum("io,ik->iok", u, v) * 0.05  # (in, out, 16)
                if isinstance(m, nn.Conv2d):
                    k = k.transpose(0, 1)
                w.copy_(k.reshape(w.shape))


@pytest.mark.parametrize("mid_norm", [True, False])
def test_factorised_unet_computes_what_its_source_computes_when_kernels_have_rank_one(mid_norm):
    from gan_prune_env.models import SeparableConv2d, factorised_unet, init_weights

    source = init_weights(UnetGenerator(3, 3, 5, ngf=4), seed=0)
    _rank_one_kernels(source)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    copy_ = factorised_unet(source, x, mid_norm=mid_norm)
    assert any(isinstance(m, SeparableConv2d) for m in copy_.modules())
    for mode in ("train", "eval"):
        getattr(source, mode)(), getattr(copy_, mode)()
        with torch.no_grad():
            expected, got = source(x), copy_(x)
        assert torch.allclose(got, expected, atol=1e-4), mode


def test_factorise_keeps_the_best_rank_one_part_of_a_general_kernel():
    from gan_prune_env.models import SeparableConv2d, factorise

    conv = nn.Conv2d(3, 5, 4, 2, 1, bias=True)
    separable = SeparableConv2d(conv)
    factorise(conv, separable)
    composed = torch.einsum("oi,ik->oik", separable.pointwise.weight[:, :, 0, 0],
                            separable.depthwise.weight.reshape(3, 16))
    original = conv.weight.reshape(5, 3, 16)
    for i in range(3):  # per input channel: the SVD's leading term, nothing better
        best = torch.linalg.svdvals(original[:, i])
        residual = torch.linalg.matrix_norm(original[:, i] - composed[:, i])
        assert torch.isclose(residual, best[1:].norm(), atol=1e-5)
    assert torch.equal(separable.pointwise.bias, conv.bias)
    with pytest.raises(ValueError, match="cannot factorise"):
        factorise(nn.Conv2d(4, 5, 4, 2, 1), separable)
