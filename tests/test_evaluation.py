"""Evaluation: PSNR/SSIM, proxy FD/KID, the FID Inception architecture and loader, protocols, CLI.

Everything runs offline on CPU; the FID Inception is only exercised with random weights.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from gan_prune_env.checkpoint import make_checkpoint, save_checkpoint
from gan_prune_env.data import build_dataset
from gan_prune_env.evaluation import (
    DOWNLOAD_COMMAND,
    FIDInceptionV3,
    InceptionWeightsError,
    RandomConvFeatures,
    check_inception_state_dict,
    cyclegan_eval_sets,
    download_inception,
    evaluate_cyclegan,
    evaluate_paired,
    frechet_distance,
    kernel_distance,
    load_fid_inception,
    psnr,
    ssim,
    to_uint8,
)
from gan_prune_env.evaluation import inception as inception_module
from gan_prune_env.evaluation.inception import (
    INSTALL_COMMAND,
    TORCHSCRIPT_SIZE,
    installed_torchscript_weights,
    torchscript_conv_names,
    torchscript_to_state_dict,
)
from gan_prune_env.evaluation.metrics import bootstrap_frechet_distance
from gan_prune_env.evaluation.cli import main as cli_main
from gan_prune_env.models import build_discriminator, build_generator
from gan_prune_env.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_MODULES = ("torchvision", "torch_fidelity", "pytorch_fid", "cleanfid")


@pytest.fixture(scope="module")
def task():
    return get_task("default")


@pytest.fixture(scope="module")
def photos(task):
    """Real target images (64x64 procedural photos) of two splits: same distribution."""
    test = build_dataset(task.data, "test")
    val = build_dataset(task.data, "val")
    return (torch.stack([test[i]["B"] for i in range(24)]),
            torch.stack([val[i]["B"] for i in range(24)]))


@pytest.fixture(scope="module")
def proxy():
    return RandomConvFeatures()


# --- PSNR / SSIM ------------------------------------------------------------------------------


def test_psnr_identical_is_inf_and_decreases_with_noise(photos):
    real, _ = photos
    assert math.isinf(float(psnr(real, real)))
    gen = torch.Generator().manual_seed(0)
    values = [float(psnr((real + s * torch.randn(real.shape, generator=gen)).clamp(-1, 1), real))
              for s in (0.02, 0.1, 0.4)]
    assert values[0] > values[1] > values[2] > 0, values
    # PSNR on [-1, 1] images with data_range 2 is PSNR on [0, 1] with data_range 1
    noisy = (real + 0.1 * torch.randn(real.shape, generator=gen)).clamp(-1, 1)
    a, b = to_uint8(noisy).float() / 255, to_uint8(real).float() / 255
    per_image = 10 * torch.log10(1.0 / ((a - b) ** 2).mean(dim=(1, 2, 3)))
    assert float(psnr(noisy, real)) == pytest.approx(float(per_image.mean()), rel=1e-5)


def test_ssim_identical_is_one_and_drops_with_noise(photos):
    real, _ = photos
    assert float(ssim(real, real)) == pytest.approx(1.0, abs=1e-6)
    noisy = (real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1)))
    assert float(ssim(noisy.clamp(-1, 1), real)) < 0.9


def test_to_uint8_round_trips_real_images(photos):
    real, _ = photos
    quantised = to_uint8(real)
    assert quantised.dtype == torch.uint8
    assert torch.equal(to_uint8(quantised.float() / 127.5 - 1.0), quantised)
    assert to_uint8(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])).tolist() == [0, 0, 128, 255, 255]


# --- proxy Fréchet distance / KID -------------------------------------------------------------


def test_proxy_features_are_fixed_and_torchmetrics_compatible(proxy, photos):
    from torchmetrics.image.fid import FrechetInceptionDistance

    assert proxy.num_features == 448 and not any(True for _ in proxy.parameters())
    assert RandomConvFeatures().fingerprint() == proxy.fingerprint() == "a6a60148369824da"
    assert RandomConvFeatures(seed=1).fingerprint() != proxy.fingerprint()
    real, other = photos
    a, b = to_uint8(real), to_uint8(other)
    metric = FrechetInceptionDistance(feature=proxy)  # uint8 input (normalize=False)
    metric.update(a, real=True)
    metric.update(b, real=False)
    direct = frechet_distance(proxy(a).double(), proxy(b).double())
    assert float(metric.compute()) == pytest.approx(direct, rel=1e-4)
    # normalize=True hands the module floats in [0, 1]: same features
    assert torch.allclose(proxy(a), proxy(a.float() / 255), atol=1e-6)


def test_proxy_fd_of_a_set_with_itself_is_zero_and_grows_with_noise_and_shift(proxy, photos):
    real, _ = photos
    feats = proxy(to_uint8(real)).double()
    scale = frechet_distance(feats, proxy(to_uint8(torch.zeros_like(real))).double() + 0.01 *
                             torch.randn(feats.shape, generator=torch.Generator().manual_seed(0),
                                         dtype=torch.float64))
    assert abs(frechet_distance(feats, feats)) < 1e-6 * scale
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=gen)
    noisy = [frechet_distance(feats, proxy(to_uint8((real + s * noise).clamp(-1, 1))).double())
             for s in (0.05, 0.2, 0.5)]
    assert 0 < noisy[0] < noisy[1] < noisy[2], noisy
    shifted = [frechet_distance(feats, proxy(to_uint8((real + d).clamp(-1, 1))).double())
               for d in (0.05, 0.3)]
    assert 0 < shifted[0] < shifted[1], shifted


def test_proxy_kid_is_near_zero_for_one_distribution(proxy, photos):
    real, other = photos  # two splits: different images, one distribution
    fa, fb = proxy(to_uint8(real)).double(), proxy(to_uint8(other)).double()
    shifted = proxy(to_uint8((other + 0.2).clamp(-1, 1))).double()
    same, same_std = kernel_distance(fa, fb, subsets=50)
    different, _ = kernel_distance(fa, shifted, subsets=50)
    assert different > 0 and abs(same) < 0.1 * different, (same, different)
    assert same_std > 0  # half-size subsets of these small sets: an informative spread
    state = torch.get_rng_state()
    assert kernel_distance(fa, fb, subsets=50) == (same, same_std)  # seeded
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched


# --- FID Inception ----------------------------------------------------------------------------
# Expected layout transcribed from pytorch-fid's fid_inception_v3() (torchvision's Inception3 with
# num_classes=1008, aux_logits=False, FID-patched blocks): (name, in, out, kernel) per BasicConv2d.


def _a(cin, pool):
    return [("branch1x1", cin, 64, 1), ("branch5x5_1", cin, 48, 1), ("branch5x5_2", 48, 64, 5),
            ("branch3x3dbl_1", cin, 64, 1), ("branch3x3dbl_2", 64, 96, 3),
            ("branch3x3dbl_3", 96, 96, 3), ("branch_pool", cin, pool, 1)]


def _b(cin):
    return [("branch3x3", cin, 384, 3), ("branch3x3dbl_1", cin, 64, 1),
            ("branch3x3dbl_2", 64, 96, 3), ("branch3x3dbl_3", 96, 96, 3)]


def _c(cin, c7):
    return [("branch1x1", cin, 192, 1), ("branch7x7_1", cin, c7, 1),
            ("branch7x7_2", c7, c7, (1, 7)), ("branch7x7_3", c7, 192, (7, 1)),
            ("branch7x7dbl_1", cin, c7, 1), ("branch7x7dbl_2", c7, c7, (7, 1)),
            ("branch7x7dbl_3", c7, c7, (1, 7)), ("branch7x7dbl_4", c7, c7, (7, 1)),
            ("branch7x7dbl_5", c7, 192, (1, 7)), ("branch_pool", cin, 192, 1)]


def _d(cin):
    return [("branch3x3_1", cin, 192, 1), ("branch3x3_2", 192, 320, 3),
            ("branch7x7x3_1", cin, 192, 1), ("branch7x7x3_2", 192, 192, (1, 7)),
            ("branch7x7x3_3", 192, 192, (7, 1)), ("branch7x7x3_4", 192, 192, 3)]


def _e(cin):
    return [("branch1x1", cin, 320, 1), ("branch3x3_1", cin, 384, 1),
            ("branch3x3_2a", 384, 384, (1, 3)), ("branch3x3_2b", 384, 384, (3, 1)),
            ("branch3x3dbl_1", cin, 448, 1), ("branch3x3dbl_2", 448, 384, 3),
            ("branch3x3dbl_3a", 384, 384, (1, 3)), ("branch3x3dbl_3b", 384, 384, (3, 1)),
            ("branch_pool", cin, 192, 1)]


PYTORCH_FID_LAYOUT = {
    "": [("Conv2d_1a_3x3", 3, 32, 3), ("Conv2d_2a_3x3", 32, 32, 3), ("Conv2d_2b_3x3", 32, 64, 3),
         ("Conv2d_3b_1x1", 64, 80, 1), ("Conv2d_4a_3x3", 80, 192, 3)],
    "Mixed_5b.": _a(192, 32), "Mixed_5c.": _a(256, 64), "Mixed_5d.": _a(288, 64),
    "Mixed_6a.": _b(288), "Mixed_6b.": _c(768, 128), "Mixed_6c.": _c(768, 160),
    "Mixed_6d.": _c(768, 160), "Mixed_6e.": _c(768, 192), "Mixed_7a.": _d(768),
    "Mixed_7b.": _e(1280), "Mixed_7c.": _e(2048),
}


def pytorch_fid_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for prefix, convs in PYTORCH_FID_LAYOUT.items():
        for name, cin, cout, k in convs:
            kh, kw = (k, k) if isinstance(k, int) else k
            shapes[f"{prefix}{name}.conv.weight"] = (cout, cin, kh, kw)
            for stat in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{prefix}{name}.bn.{stat}"] = (cout,)
            shapes[f"{prefix}{name}.bn.num_batches_tracked"] = ()
    shapes["fc.weight"], shapes["fc.bias"] = (1008, 2048), (1008,)
    return shapes


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(0)
    return FIDInceptionV3()


def test_fid_inception_matches_pytorch_fid_layout_and_outputs_2048(inception):
    state = inception.state_dict()
    expected = pytorch_fid_shapes()
    assert sorted(state) == sorted(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    # torchvision inception_v3 (27,161,264 params) minus its aux head, with 1008 classes
    assert sum(p.numel() for p in inception.parameters()) == 23_850_960
    assert (inception.Mixed_7b.pool, inception.Mixed_7c.pool) == ("avg", "max")
    assert inception.num_features == 2048
    images = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        features = inception(images)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    assert (features >= 0).all()  # average of ReLU outputs


def test_fid_inception_loads_a_state_dict_file_strictly(inception, tmp_path):
    state = {k: v for k, v in inception.state_dict().items()
             if not k.endswith("num_batches_tracked")}  # as files saved by old PyTorch
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    with pytest.raises(InceptionWeightsError, match="not a known FID Inception weights file"):
        load_fid_inception(path)  # random weights are not the published ones
    loaded = load_fid_inception(path, verify=False)
    assert not loaded.training and loaded.weights_sha1 is None
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_fid_inception_loader_errors(inception, tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_PRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inception_module, "installed_torchscript_weights", lambda: None)
    with pytest.raises(InceptionWeightsError) as missing:
        load_fid_inception()
    for text in (DOWNLOAD_COMMAND, INSTALL_COMMAND, str(tmp_path / "cache")):
        assert text in str(missing.value)
    with pytest.raises(InceptionWeightsError, match="download-inception") as missing:
        load_fid_inception(tmp_path / "nowhere.pth")
    assert INSTALL_COMMAND in str(missing.value) and "nowhere.pth" in str(missing.value)

    state = dict(inception.state_dict())
    state["Mixed_5b.branch1x1.conv.weightz"] = state.pop("Mixed_5b.branch1x1.conv.weight")
    del state["fc.bias"]
    state["fc.weight"] = torch.zeros(1000, 2048)
    with pytest.raises(InceptionWeightsError) as wrong:
        check_inception_state_dict(state, inception)
    message = str(wrong.value)
    for text in ("Mixed_5b.branch1x1.conv.weightz", "Mixed_5b.branch1x1.conv.weight,",
                 "fc.bias", "fc.weight: file [1000, 2048] vs model [1008, 2048]"):
        assert text in message, (text, message)

    junk = tmp_path / "junk.pth"
    torch.save({"foo.weight": torch.zeros(1)}, junk)
    with pytest.raises(InceptionWeightsError, match="unexpected keys: foo.weight"):
        load_fid_inception(junk, verify=False)
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InceptionWeightsError, match="not a readable"):
        load_fid_inception(junk, verify=False)


def _torchscript_file():
    path = installed_torchscript_weights()
    if path is None or not path.is_file():
        pytest.skip(f"FID Inception TorchScript weights not installed ({INSTALL_COMMAND}); "
                    ".ci/run installs them")
    return path


def _from_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict in the TorchScript file's names (the inverse of the mapping under test)."""
    tensors = {}
    for tf, ours in torchscript_conv_names().items():
        tensors[f"{tf}.weight"] = state[f"{ours}.conv.weight"]
        tensors[f"{tf}.beta"] = state[f"{ours}.bn.bias"]
        tensors[f"{tf}.mean"] = state[f"{ours}.bn.running_mean"]
        tensors[f"{tf}.var"] = state[f"{ours}.bn.running_var"]
    return tensors


def test_torchscript_names_map_onto_every_conv_once(inception):
    names = torchscript_conv_names()
    convs = sorted(name for name, m in inception.named_modules()
                   if type(m).__name__ == "BasicConv2d")
    assert len(names) == len(convs) == 94
    assert sorted(names.values()) == convs  # every conv, none twice


def test_torchscript_state_dict_maps_by_name_and_checks_shapes(inception):
    state = {k: v.clone() for k, v in inception.state_dict().items()}
    for name, value in state.items():
        if name.endswith("bn.weight"):
            value.fill_(1.0)  # TF batch norm has no scale
    mapped = torchscript_to_state_dict(_from_ours(state))
    for key, value in check_inception_state_dict(mapped, inception).items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(value, state[key]), key

    tensors = _from_ours(state)
    # the 1x3 and 3x1 convs of Mixed_7b swapped: caught by the shape check, not loaded wrongly
    a, b = "net.layers.mixed_9.tower_mixed_conv", "net.layers.mixed_9.tower_mixed_conv_1"
    tensors[f"{a}.weight"], tensors[f"{b}.weight"] = tensors[f"{b}.weight"], tensors[f"{a}.weight"]
    with pytest.raises(InceptionWeightsError, match="Mixed_7b.branch3x3_2a.conv.weight"):
        check_inception_state_dict(torchscript_to_state_dict(tensors), inception)
    del tensors[f"{a}.beta"]
    tensors["net.layers.extra.weight"] = torch.zeros(1)
    with pytest.raises(InceptionWeightsError) as err:
        torchscript_to_state_dict(tensors, source="x.pt")
    assert f"{a}.beta" in str(err.value) and "net.layers.extra.weight" in str(err.value)


def test_torchscript_weights_give_the_torchscript_features():
    """Parity: our network with the mapped weights vs the TorchScript module, same batch."""
    path = _torchscript_file()
    ours = load_fid_inception()  # found through the installed distribution's metadata
    assert ours.weights_file == str(path) and ours.weights_sha1 == inception_module.TORCHSCRIPT_SHA1
    reference = torch.jit.load(str(path), map_location="cpu").eval()
    photos = build_dataset(get_task("default").data, "test")
    images = torch.stack([photos[i]["B"] for i in range(2)])  # real photos in [-1, 1]
    batch = torch.cat([
        torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear",
                                        align_corners=False),
        torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1,
    ])
    with torch.inference_mode():
        expected = reference(batch)
        got = ours.pool_features(batch)
    assert got.shape == expected.shape == (4, 2048)
    assert (got - expected).abs().max().item() < 1e-4
    assert expected.abs().max().item() > 0.1  # not a trivially zero comparison


def test_a_truncated_or_foreign_weights_file_is_refused(tmp_path, inception):
    path = _torchscript_file()
    truncated = tmp_path / "default_1.pt"
    with open(path, "rb") as source:
        truncated.write_bytes(source.read(TORCHSCRIPT_SIZE // 3))
    with pytest.raises(InceptionWeightsError) as err:
        load_fid_inception(truncated)
    message = str(err.value)
    for text in (str(truncated), "truncated", f"{TORCHSCRIPT_SIZE:,} bytes", INSTALL_COMMAND):
        assert text in message, (text, message)


def test_fast_frechet_distance_matches_the_eigendecomposition():
    from torchmetrics.image.fid import _compute_fid

    gen = torch.Generator().manual_seed(0)
    real = torch.randn(40, 64, generator=gen, dtype=torch.float64)
    fake = 1.3 * torch.randn(30, 64, generator=gen, dtype=torch.float64) + 0.2
    expected = float(_compute_fid(real.mean(0), torch.cov(real.T), fake.mean(0),
                                  torch.cov(fake.T)))
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)  # N < D: SVD path
    many = torch.randn(100, 64, generator=gen, dtype=torch.float64)
    expected = float(_compute_fid(many.mean(0), torch.cov(many.T), fake.mean(0),
                                  torch.cov(fake.T)))
    assert frechet_distance(many, fake) == pytest.approx(expected, rel=1e-6)


def test_fid_bootstrap_spread_is_seeded_and_shrinks_with_more_images():
    gen = torch.Generator().manual_seed(1)
    small = [torch.randn(20, 16, generator=gen, dtype=torch.float64) for _ in range(2)]
    large = [torch.randn(400, 16, generator=gen, dtype=torch.float64) for _ in range(2)]
    state = torch.random.get_rng_state()
    first = bootstrap_frechet_distance(*small, resamples=50, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    assert first == bootstrap_frechet_distance(*small, resamples=50, seed=3)
    assert first != bootstrap_frechet_distance(*small, resamples=50, seed=4)
    assert bootstrap_frechet_distance(*large, resamples=50)[1] < first[1] / 2


def test_real_features_are_cached_by_content(task, tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_PRUNE_CACHE", str(tmp_path))
    extractor = RandomConvFeatures(input_size=64)
    extractor.weights_sha1 = "f" * 40  # as if verified weights: its real features are cached
    generator = build_generator(task.generator, seed=0)
    dataset = build_dataset(task.data, "test")
    kw = {"fid_weights": extractor, "batch_size": 4, "progress": False, "kid_subsets": 5,
          "fid_bootstrap": 10}
    first = evaluate_paired(generator, dataset, max_images=8, **kw)
    second = evaluate_paired(generator, dataset, max_images=8, **kw)
    assert (first["fid_real_features"], second["fid_real_features"]) == ("computed", "cached")
    assert second["fid"] == first["fid"] and second["kid"] == first["kid"]
    assert first["fid_std"] > 0
    assert len(list((tmp_path / "fid_real_features").glob("*.pt"))) == 1
    other = evaluate_paired(generator, dataset, max_images=6, **kw)  # other images, other key
    assert other["fid_real_features"] == "computed"
    uncached = evaluate_paired(generator, dataset, max_images=8, real_cache=False, **kw)
    assert uncached["fid_real_features"] == "computed" and uncached["fid"] == first["fid"]
    for entry in (tmp_path / "fid_real_features").glob("*.pt"):
        entry.write_bytes(b"broken")  # a damaged entry is recomputed, not trusted
    again = evaluate_paired(generator, dataset, max_images=8, **kw)
    assert again["fid_real_features"] == "computed" and again["fid"] == first["fid"]
    extractor.weights_sha1 = "e" * 40  # other weights: never the first weights' features
    assert evaluate_paired(generator, dataset, max_images=8, **kw)["fid_real_features"] == \
        "computed"


class _FakeResponse(io.BytesIO):
    headers: dict = {}


def test_download_fails_clearly_offline_and_on_a_wrong_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_PRUNE_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(InceptionWeightsError, match="offline") as err:
        download_inception(progress=False)
    assert inception_module.FID_WEIGHTS_URL in str(err.value)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # no partial file left behind
    assert cli_main(["download-inception", "--quiet"]) == 1

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"x" * 1000))
    with pytest.raises(InceptionWeightsError, match="failed verification"):
        download_inception(tmp_path / "w.pth", progress=False)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


# --- protocols --------------------------------------------------------------------------------


def test_evaluate_paired_teacher_against_itself_and_determinism(task):
    generator = build_generator(task.generator, seed=0)
    teacher = copy.deepcopy(generator)
    generator.train()
    dataset = Subset(build_dataset(task.data, "test"), range(6))
    first = evaluate_paired(generator, dataset, teacher=teacher, batch_size=4, progress=False,
                            kid_subsets=10)
    assert generator.training  # mode restored
    assert first["num_images"] == first["num_real"] == 6
    assert math.isinf(first["psnr_teacher"]) and first["ssim_teacher"] == pytest.approx(1.0)
    assert first["proxy_fd_teacher"] == pytest.approx(0.0, abs=1e-6 * max(1, first["proxy_fd"]))
    assert first["proxy_fd"] > 0 and 0 < first["psnr"] < 40 and first["ssim"] < 1
    assert "fid" not in first and not any("fid" in k and "proxy" not in k for k in first)
    assert first["proxy_space"].startswith("random-conv-v1")
    second = evaluate_paired(generator, dataset, teacher=teacher, batch_size=3, progress=False,
                             kid_subsets=10)
    for key, value in first.items():
        if isinstance(value, float) and math.isfinite(value):
            assert second[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
        else:
            assert second[key] == value, key


def test_grayscale_outputs_are_scored_as_their_rgb_replicas():
    """An edge-map generator (output_nc 1): distances see the image replicated to RGB, as FID
    tools do, so scoring it equals scoring the 3-channel replica."""
    torch.manual_seed(0)
    inputs, targets = torch.rand(6, 3, 32, 32) * 2 - 1, torch.rand(6, 1, 32, 32) * 2 - 1
    gray = nn.Conv2d(3, 1, 3, padding=1)

    class Replicated(nn.Module):
        def forward(self, x):
            return gray(x).expand(-1, 3, -1, -1)

    def score(generator, channels):
        items = [{"A": a, "B": b.expand(channels, -1, -1)} for a, b in zip(inputs, targets)]
        return evaluate_paired(generator, items, batch_size=3, progress=False, kid_subsets=2,
                               device="cpu")

    one, three = score(gray, 1), score(Replicated(), 3)
    for key in ("proxy_fd", "proxy_kid", "psnr"):
        assert one[key] == pytest.approx(three[key], rel=1e-5), key
    assert one["proxy_fd"] > 0


def test_evaluate_paired_reports_fid_with_given_inception(task, inception):
    generator = build_generator(task.generator, seed=0)
    dataset = Subset(build_dataset(task.data, "test"), range(2))
    result = evaluate_paired(generator, dataset, batch_size=2, progress=False,
                             fid_weights=inception, kid_subsets=2)
    assert {"fid", "kid", "kid_std", "proxy_fd", "proxy_kid", "psnr", "ssim"} <= set(result)
    assert result["fid"] >= 0 and "psnr_teacher" not in result


def test_evaluate_paired_with_the_default_teacher(task):
    from gan_prune_env.checkpoint import CheckpointError
    from gan_prune_env.tasks import load_teacher, teacher_path

    try:
        teacher_path(task, train_if_missing=False)
    except CheckpointError:
        pytest.skip("the default task's shipped teacher is not present")
    teacher, _ = load_teacher(task)
    dataset = Subset(build_dataset(task.data, "test"), range(8))
    result = evaluate_paired(teacher, dataset, teacher=teacher, batch_size=8, progress=False,
                             kid_subsets=10)
    untrained = evaluate_paired(build_generator(task.generator, seed=0), dataset, batch_size=8,
                                progress=False, kid_subsets=10)
    assert math.isinf(result["psnr_teacher"]) and result["ssim_teacher"] == pytest.approx(1.0)
    assert result["psnr"] > untrained["psnr"] and result["ssim"] > untrained["ssim"]
    assert result["proxy_fd"] < untrained["proxy_fd"]


def test_evaluate_cyclegan_on_generated_vs_real_train_and_test(task):
    import dataclasses

    data = dataclasses.replace(task.data, max_items=5)
    test_a, real_b = cyclegan_eval_sets(data)
    assert len(test_a) == 5 and len(real_b) == 10
    assert {real_b[i]["path"] for i in range(10)} == (
        {f"procedural://train/{i}" for i in range(5)} | {f"procedural://test/{i}" for i in range(5)})
    generator = build_generator(task.generator, seed=0)
    result = evaluate_cyclegan(generator, test_a, real_b, teacher=copy.deepcopy(generator),
                               batch_size=4, progress=False, kid_subsets=5)
    assert result["num_images"] == 5 and result["num_real"] == 10
    assert "psnr" not in result and math.isinf(result["psnr_teacher"])
    assert result["proxy_fd"] > 0
    # tensors work too
    images = torch.stack([test_a[i]["image"] for i in range(3)])
    reals = torch.stack([real_b[i]["image"] for i in range(4)])
    assert evaluate_cyclegan(generator, images, reals, progress=False,
                             kid_subsets=2)["num_images"] == 3


def test_cyclegan_sets_of_an_unaligned_folder_hold_each_file_once(tmp_path):
    import dataclasses

    from PIL import Image

    from gan_prune_env.data import DataConfig

    counts = {"trainA": 2, "trainB": 4, "testA": 2, "testB": 3}
    for folder, count in counts.items():
        (tmp_path / folder).mkdir()
        for i in range(count):
            Image.new("RGB", (20, 20), (10 * i, 0, 0)).save(tmp_path / folder / f"{i}.png")
    config = DataConfig(root=str(tmp_path), mode="unaligned", crop_size=16, load_size=16)
    test_a, real_b = cyclegan_eval_sets(config)
    assert len(test_a) == 2 and len(real_b) == 7
    assert len({real_b[i]["path"] for i in range(7)}) == 7
    assert real_b[0]["image"].shape == (3, 16, 16)
    swapped_a, swapped_b = cyclegan_eval_sets(dataclasses.replace(config, direction="BtoA"))
    assert len(swapped_a) == 3 and len(swapped_b) == 4  # testB is the input, train+test A real


# --- command line -----------------------------------------------------------------------------


def test_cli_evaluates_a_tiny_checkpoint(task, tmp_path, capsys):
    payload = make_checkpoint("teacher", "pix2pix",
                              {"generator": build_generator(task.generator, seed=3),
                               "discriminator": build_discriminator(task.discriminator, seed=4)},
                              task.generator, task.discriminator)
    path = save_checkpoint(tmp_path / "tiny.pt", payload)
    out = tmp_path / "results.json"
    code = cli_main(["evaluate", "--checkpoint", str(path), "--task", "default", "--no-teacher",
                     "--max-images", "4", "--batch-size", "2", "--out", str(out), "--quiet",
                     "--no-fid"])
    assert code == 0
    record = json.loads(out.read_text())
    assert record == json.loads(capsys.readouterr().out)
    assert record["task"] == "default" and record["split"] == "test"
    assert record["generator"] == str(path) and record["generator_params"] > 0
    metrics = record["metrics"]
    assert metrics["num_images"] == 4 and metrics["proxy_fd"] > 0 and "fid" not in metrics

    # compared with a teacher (here the same file given as the task's teacher): identical
    assert cli_main(["evaluate", "--checkpoint", str(path), "--teacher", str(path),
                     "--max-images", "2", "--quiet", "--no-fid"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert math.isinf(metrics["psnr_teacher"]) and metrics["ssim_teacher"] == pytest.approx(1.0)
    assert cli_main(["evaluate", "--teacher-only", "--teacher", str(path), "--max-images", "2",
                     "--quiet", "--no-fid"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["generator"] == "teacher" and not record["teacher_compared"]
    assert record["metrics"]["psnr"] == pytest.approx(metrics["psnr"])

    assert cli_main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--no-teacher",
                     "--quiet", "--no-fid"]) == 1
    assert "not found" in capsys.readouterr().err


def test_cli_fid_without_weights_says_how_to_get_them(task, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GAN_PRUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(inception_module, "installed_torchscript_weights", lambda: None)
    payload = make_checkpoint("teacher", "pix2pix",
                              {"generator": build_generator(task.generator, seed=3)},
                              task.generator, task.discriminator)
    path = save_checkpoint(tmp_path / "tiny.pt", payload)
    code = cli_main(["evaluate", "--checkpoint", str(path), "--no-teacher", "--max-images", "2",
                     "--quiet"])  # FID is on by default
    assert code == 1
    err = capsys.readouterr().err
    assert INSTALL_COMMAND in err and DOWNLOAD_COMMAND in err


def test_cli_floor_scores_real_test_images_against_train_with_the_real_inception(
        tmp_path, monkeypatch, capsys):
    _torchscript_file()
    monkeypatch.setenv("GAN_PRUNE_CACHE", str(tmp_path))
    args = ["floor", "--task", "default", "--max-images", "4", "--quiet", "--fid-bootstrap", "20"]
    assert cli_main(args) == 0
    first = json.loads(capsys.readouterr().out)["metrics"]
    assert first["num_images"] == first["num_real"] == 4
    assert first["fid"] > 0 and first["fid_std"] > 0 and first["fid_real_features"] == "computed"
    assert cli_main(args) == 0
    second = json.loads(capsys.readouterr().out)["metrics"]
    assert second["fid_real_features"] == "cached" and second["fid"] == first["fid"]


IMPORT_GUARD = """
import sys
FORBIDDEN = {forbidden!r}
attempts = []

class Guard:
    # Records real imports of forbidden packages; availability probes such as
    # importlib.util.find_spec (torchmetrics makes them) are not imports.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN and \\
                sys._getframe(2).f_code.co_name == "_find_and_load_unlocked":
            attempts.append(name)
        return None

sys.meta_path.insert(0, Guard())
try:
{body}
finally:
    print(sorted(set(attempts)))
"""
IMPORT_EVERYTHING = """
    import gan_prune_env, gan_prune_env.evaluation, gan_prune_env.evaluation.cli
    import gan_prune_env.translate, gan_prune_env.import_reference, gan_prune_env.export
    import agents.run.pipeline, agents.run.cli
    from gan_prune_env.evaluation import load_fid_inception
    try:
        load_fid_inception()
    except Exception:
        pass
"""


def attempted_imports(body: str) -> list[str]:
    script = IMPORT_GUARD.format(forbidden=FORBIDDEN_MODULES, body=body)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_no_forbidden_package_is_imported():
    """torchvision and the FID packages that import it must never be imported by anything of
    ours or of our dependencies, installed or not: a guard on the import system records every
    attempt (and is shown to catch one)."""
    assert attempted_imports(IMPORT_EVERYTHING) == []
    assert attempted_imports("    import torchvision") == ["torchvision"]
