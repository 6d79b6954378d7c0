"""Checkpoint files: atomic writes, embedded architectures, pruned networks, clear errors, and
released reference state dicts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_prune_env.checkpoint import (
    FORMAT,
    CheckpointError,
    load_discriminator,
    load_generator,
    load_reference_state_dict,
    make_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from gan_prune_env.models import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
)
from gan_prune_env.pruning import ChannelSpace, slice_by_indices

try:  # works whether or not tests/ becomes a package
    from tests import reference_networks as ref
except ImportError:  # pragma: no cover
    import reference_networks as ref

UNET = GeneratorConfig(arch="unet_auto", ngf=4, image_size=32)
RESNET = GeneratorConfig(arch="resnet_6blocks", ngf=4, norm="instance", image_size=32)
PATCH6 = DiscriminatorConfig(input_nc=6, ndf=4)
PATCH3 = DiscriminatorConfig(input_nc=3, ndf=4, norm="instance")


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def pix2pix_checkpoint(generator_config=UNET, **kwargs) -> dict:
    nets = {"generator": build_generator(generator_config, seed=1),
            "discriminator": build_discriminator(PATCH6, seed=2)}
    return make_checkpoint("teacher", "pix2pix", nets, generator_config, PATCH6, **kwargs)


# --- atomic writing ---------------------------------------------------------------------------


def test_save_replaces_atomically_and_failure_keeps_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"value": torch.arange(3)})
    save_checkpoint(path, {"value": torch.arange(4)})
    assert torch.equal(torch.load(path, weights_only=True)["value"], torch.arange(4))

    unpicklable = {"value": torch.zeros(10_000), "callback": lambda: None}
    with pytest.raises(Exception):
        save_checkpoint(path, unpicklable)
    assert torch.equal(torch.load(path, weights_only=True)["value"], torch.arange(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temp file left


# --- embedded architecture round trips ------------------------------------------------------


@pytest.mark.parametrize("weights_dtype", ["float32", "float16"])
def test_teacher_round_trip_rebuilds_from_embedded_config(tmp_path, image, weights_dtype):
    payload = pix2pix_checkpoint(weights_dtype=weights_dtype)
    path = save_checkpoint(tmp_path / "teacher.pt", payload)
    original = build_generator(UNET, seed=1).eval()

    loaded = load_generator(path)
    assert not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    tolerance = 0 if weights_dtype == "float32" else 2e-2
    torch.testing.assert_close(loaded(image), original(image), atol=tolerance, rtol=0)
    discriminator = load_discriminator(path)
    assert discriminator.model[0].in_channels == 6


def test_pruned_checkpoint_loads_to_identical_outputs(tmp_path, image):
    generator = build_generator(UNET, seed=1).eval()
    space = ChannelSpace(generator, image[:1])
    counts = [max(1, int(c) // 2) for c in space.num_channels]
    kept = space.keep_indices(counts)
    sliced = slice_by_indices(generator, image[:1], kept).eval()
    payload = make_checkpoint(
        "pruned", "pix2pix", {"generator": sliced}, UNET, PATCH6,
        kept={"generator": kept}, input_shape={"generator": [3, 32, 32]},
    )
    loaded = load_generator(save_checkpoint(tmp_path / "pruned.pt", payload))
    n_params = [sum(p.numel() for p in net.parameters()) for net in (loaded, sliced)]
    assert n_params[0] == n_params[1]
    torch.testing.assert_close(loaded(image), sliced(image), atol=0, rtol=0)

    group = next(iter(kept))
    payload["kept"]["generator"][group] = [999]
    with pytest.raises(CheckpointError, match="kept channels of 'generator' do not fit"):
        load_generator(save_checkpoint(tmp_path / "bad.pt", payload))


def test_cyclegan_networks_derive_their_channels(tmp_path):
    generator = GeneratorConfig(arch="resnet_6blocks", input_nc=1, output_nc=3, ngf=4,
                                norm="instance")
    disc = DiscriminatorConfig(input_nc=3, ndf=4, norm="instance")
    nets = {
        "generator_AB": build_generator(generator),
        "generator_BA": build_generator(GeneratorConfig(**{**generator.__dict__, "input_nc": 3,
                                                           "output_nc": 1})),
        "discriminator_B": build_discriminator(disc),
        "discriminator_A": build_discriminator(DiscriminatorConfig(**{**disc.__dict__,
                                                                      "input_nc": 1})),
    }
    path = save_checkpoint(tmp_path / "cycle.pt",
                           make_checkpoint("teacher", "cyclegan", nets, generator, disc))
    assert load_generator(path)(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)
    assert load_generator(path, "generator_BA")(torch.zeros(1, 3, 32, 32)).shape[1] == 1
    assert load_discriminator(path).model[0].in_channels == 3  # default: domain B
    assert load_discriminator(path, "discriminator_A").model[0].in_channels == 1
    with pytest.raises(CheckpointError, match="generator_AB"):
        load_generator(path, "generator")


# --- clear errors ------------------------------------------------------------------------------


def test_wrong_architecture_names_expected_and_found(tmp_path):
    payload = pix2pix_checkpoint()
    payload["generator"] = build_generator(RESNET).state_dict()  # ResNet weights, U-Net config
    path = save_checkpoint(tmp_path / "mixed.pt", payload)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    message = str(err.value)
    assert str(path) in message and "unet_auto" in message and "ResNet generator" in message
    assert "missing keys" in message and "unexpected keys" in message


def test_other_width_lists_shape_mismatches(tmp_path):
    payload = pix2pix_checkpoint()
    wider = GeneratorConfig(**{**UNET.__dict__, "ngf": 8})
    payload["generator"] = build_generator(wider).state_dict()
    with pytest.raises(CheckpointError, match=r"shape mismatches \(model\.model\.0\.weight: "
                                              r"file \[8, 3, 4, 4\] vs model \[4, 3, 4, 4\]"):
        load_generator(save_checkpoint(tmp_path / "wide.pt", payload))


def test_corrupt_truncated_and_foreign_files_name_the_path(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", pix2pix_checkpoint())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    bare = save_checkpoint(tmp_path / "bare.pt", build_generator(UNET).state_dict())
    for path, pattern in [(truncated, "not a readable checkpoint"),
                          (text, "not a readable checkpoint"),
                          (bare, "not a gan_prune_env checkpoint"),
                          (tmp_path / "missing.pt", "not found")]:
        with pytest.raises(CheckpointError, match=pattern) as err:
            read_checkpoint(path)
        assert str(path) in str(err.value)
    assert read_checkpoint(good)["format"] == FORMAT


def test_torch_advice_is_not_appended_to_a_unreadable_file_error(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("v0 not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(text)
    assert "\n" not in str(err.value) and "torch.load" not in str(err.value)


def test_an_export_given_as_a_checkpoint_says_what_it_is_and_where_it_goes(tmp_path, image):
    """A run's own TorchScript and ONNX exports are not "corrupt": the error names them."""
    net = build_generator(UNET).eval()
    scripted = tmp_path / "generator.ts"
    torch.jit.trace(net, image[:1]).save(str(scripted))
    onnx = tmp_path / "generator.onnx"
    torch.onnx.export(net, (image[:1],), str(onnx), dynamo=False)
    for path, kind in ((scripted, "TorchScript"), (onnx, "ONNX")):
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
        message = str(err.value)
        assert f"a {kind} export" in message and "gan_prune_env.translate" in message
        assert "corrupt" not in message


# --- released reference checkpoints ------------------------------------------------------------


def old_style_reference_resnet() -> dict[str, torch.Tensor]:
    """A reference ResNet's state dict as an old (PyTorch < 0.4) DataParallel run saved it:
    ``module.`` prefixes and running statistics on every InstanceNorm layer."""
    net = ref.ResnetGenerator(3, 3, ngf=4, norm_layer=ref.get_norm_layer("instance"), n_blocks=6)
    state = dict(net.state_dict())
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm2d):
            channels = module.num_features
            state[f"{name}.running_mean"] = torch.zeros(channels)
            state[f"{name}.running_var"] = torch.ones(channels)
            state[f"{name}.num_batches_tracked"] = torch.tensor(0)
    return {f"module.{k}": v for k, v in state.items()}


def test_reference_resnet_with_old_instance_norm_keys_loads_strictly(tmp_path, image):
    state = old_style_reference_resnet()
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(state, path)
    model = load_reference_state_dict(path, build_generator(RESNET)).eval()
    reference = ref.ResnetGenerator(3, 3, ngf=4, norm_layer=ref.get_norm_layer("instance"),
                                    n_blocks=6)
    reference.load_state_dict({k.removeprefix("module."): v for k, v in state.items()
                               if "running" not in k and "num_batches" not in k})
    torch.testing.assert_close(model(image), reference.eval()(image))


def test_reference_unet_loads_and_mismatch_is_explained(image):
    reference = ref.UnetGenerator(3, 3, 5, ngf=4, norm_layer=ref.get_norm_layer("batch"))
    model = load_reference_state_dict(reference.state_dict(), build_generator(UNET))
    torch.testing.assert_close(model.eval()(image), reference.eval()(image))
    with pytest.raises(CheckpointError, match="Expected architecture: ResNet generator.*"
                                              "found: U-Net generator"):
        load_reference_state_dict(reference.state_dict(), build_generator(RESNET))
