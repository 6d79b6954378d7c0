"""python -m gan_prune_env.translate: outputs equal the models' own forward passes, every model
file kind gives the same images, and bad models, images and options fail with clear errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from gan_prune_env.checkpoint import load_generator, make_checkpoint, save_checkpoint
from gan_prune_env.data import Augmentation, DataConfig, ImageTransform, load_image
from gan_prune_env.evaluation.metrics import to_uint8
from gan_prune_env.export import export_onnx, export_torchscript
from gan_prune_env.families import build_network, network_config, network_names
from gan_prune_env.models import DiscriminatorConfig, GeneratorConfig
from gan_prune_env.pruning import ChannelSpace, slice_by_indices
from gan_prune_env.translate import TranslateError, main, translate_folder

UNET = GeneratorConfig(arch="unet_auto", ngf=4, image_size=32)
GRAY = GeneratorConfig(arch="unet_auto", input_nc=1, output_nc=1, ngf=4, image_size=32)


def _networks(family: str, config: GeneratorConfig, seed: int) -> tuple[dict, DiscriminatorConfig]:
    """Every network of ``family``, with weights large enough that outputs follow the inputs
    (the default N(0, 0.02) init gives a flat grey image whatever the input)."""
    extra = config.input_nc if family == "pix2pix" else 0
    disc = DiscriminatorConfig(input_nc=config.output_nc + extra, ndf=4)
    nets = {name: build_network(network_config(family, name, config, disc), seed=seed + i).eval()
            for i, name in enumerate(network_names(family))}
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in nets[network_names(family)[0]].parameters():
            param.copy_(torch.randn(param.shape, generator=rng) * 0.3)
    return nets, disc


def save_teacher(path, config: GeneratorConfig = UNET, family: str = "pix2pix", seed: int = 1):
    nets, disc = _networks(family, config, seed)
    return save_checkpoint(path, make_checkpoint("teacher", family, nets, config, disc))


def save_pruned(path, teacher_path):
    generator = load_generator(teacher_path)
    example = torch.zeros(1, 3, 32, 32)
    space = ChannelSpace(generator, example)
    kept = space.keep_indices([max(1, int(c) // 2) for c in space.num_channels])
    sliced = slice_by_indices(generator, example, kept).eval()
    disc = DiscriminatorConfig(input_nc=6, ndf=4)
    payload = make_checkpoint("pruned", "pix2pix", {"generator": sliced}, UNET, disc,
                              kept={"generator": kept}, input_shape={"generator": [3, 32, 32]})
    return save_checkpoint(path, payload), sliced


def write_images(folder, sizes: dict[str, tuple[int, int]], mode: str = "RGB", seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, (width, height) in sizes.items():
        shape = (height, width) if mode == "L" else (height, width, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / name)
    return folder


def expected_output(model, path, channels: int = 3, size: int = 32) -> np.ndarray:
    """The model's forward on the evaluation transform of ``path``, as an 8-bit HxW(xC) array."""
    config = DataConfig(crop_size=size, load_size=size, preprocess="resize",
                        input_nc=channels, output_nc=channels)
    tensor = ImageTransform(config, train=False)(load_image(path, channels), Augmentation())
    with torch.no_grad():
        array = to_uint8(model(tensor[None])[0]).permute(1, 2, 0).numpy()
    return array[:, :, 0] if array.shape[2] == 1 else array


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def hrefs(index_path) -> list[str]:
    return re.findall(r'href="([^"]+)"', index_path.read_text())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    teacher = save_teacher(folder / "teacher.pt")
    pruned, sliced = save_pruned(folder / "pruned.pt", teacher)
    return {"teacher": teacher, "pruned": pruned, "sliced": sliced}


# --- outputs ----------------------------------------------------------------------------------


def test_outputs_equal_forward_with_teacher_column(tmp_path, models):
    inputs = write_images(tmp_path / "in", {"a.png": (40, 40), "b.jpg": (48, 36),
                                            "c.png": (32, 32)})
    out = tmp_path / "out"
    report = translate_folder(models["pruned"], inputs, out, teacher=models["teacher"],
                              batch_size=2, progress=False)
    assert (report.n_images, report.size) == (3, 32)
    teacher = load_generator(models["teacher"])
    outputs = []
    for path in sorted(inputs.iterdir()):
        produced = png(out / "images" / f"{path.stem}.png")
        assert produced.shape == (32, 32, 3)
        # batched vs single-image float sums may flip a rounding: at most one grey level
        assert np.abs(produced - expected_output(models["sliced"], path)).max() <= 1
        assert np.abs(png(out / "teacher" / f"{path.stem}.png")
                      - expected_output(teacher, path)).max() <= 1
        resized = load_image(path).resize((32, 32), Image.Resampling.BICUBIC)
        np.testing.assert_array_equal(png(out / "inputs" / f"{path.stem}.png"), resized)
        outputs.append(produced)
    assert np.abs(outputs[0] - outputs[1]).mean() > 5  # the outputs do depend on the inputs

    page = (out / "index.html").read_text()
    headings = re.findall(r"<th>(\w+)</th>", page)
    assert headings == ["input", "teacher", "pruned"]
    assert hrefs(out / "index.html") == [f"{folder}/{stem}.png" for stem in "abc"
                                         for folder in ("inputs", "teacher", "images")]
    assert "teacher/b.png" in page and "targets/" not in page
    assert not list(out.rglob("*.tmp"))
    assert "3 images at 32x32 px" in report.summary() and str(out / "index.html") in \
        report.summary()


def test_aligned_pairs_show_the_target_half(tmp_path, models, capsys):
    inputs = write_images(tmp_path / "pairs", {"1.jpg": (64, 32), "2.png": (64, 32)})
    out = tmp_path / "out"
    code = main(["--checkpoint", str(models["teacher"]), "--input", str(inputs), "--out",
                 str(out), "--aligned", "BtoA"])
    assert code == 0
    assert "Translated 2 images" in capsys.readouterr().out
    for name in ("1.jpg", "2.png"):
        stem, pair = name.split(".")[0], load_image(inputs / name)
        np.testing.assert_array_equal(png(out / "inputs" / f"{stem}.png"),
                                      np.asarray(pair.crop((32, 0, 64, 32))))
        np.testing.assert_array_equal(png(out / "targets" / f"{stem}.png"),
                                      np.asarray(pair.crop((0, 0, 32, 32))))
    assert re.findall(r"<th>(\w+)</th>", (out / "index.html").read_text()) == [
        "input", "output", "target"]
    assert hrefs(out / "index.html")[3:6] == ["inputs/2.png", "images/2.png", "targets/2.png"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit / legacy ONNX export
def test_exports_give_the_checkpoints_images(tmp_path, models):
    inputs = write_images(tmp_path / "in", {"a.png": (40, 40), "b.png": (32, 32),
                                            "c.png": (36, 30)})
    example = torch.zeros(1, 3, 32, 32)
    sliced = models["sliced"]
    export_torchscript(sliced, example, tmp_path / "g.ts")
    export_onnx(sliced, example, tmp_path / "g.onnx")
    with torch.no_grad():  # a fixed batch of 1, as other exporters often write
        torch.onnx.export(sliced, (example,), str(tmp_path / "batch1.onnx"), dynamo=False,
                          input_names=["x"], output_names=["y"])
    translate_folder(models["pruned"], inputs, tmp_path / "ckpt", progress=False)
    runs = {"g.ts": {}, "g.onnx": {}, "batch1.onnx": {}}  # every export records its size
    for name, options in runs.items():
        report = translate_folder(tmp_path / name, inputs, tmp_path / name.replace(".", "_"),
                                  batch_size=2, progress=False, **options)
        assert report.size == 32
        for stem in "abc":
            produced = png(tmp_path / name.replace(".", "_") / "images" / f"{stem}.png")
            assert np.abs(produced - png(tmp_path / "ckpt" / "images" / f"{stem}.png")).max() <= 1

    with torch.no_grad():  # TorchScript from elsewhere: no recorded input shape
        torch.jit.trace(sliced, example).save(str(tmp_path / "bare.ts"))
    with pytest.raises(TranslateError, match=r"does not record its image size; pass --size"):
        translate_folder(tmp_path / "bare.ts", inputs, tmp_path / "x", progress=False)
    assert translate_folder(tmp_path / "bare.ts", inputs, tmp_path / "bare", size=32,
                            progress=False).size == 32
    with pytest.raises(TranslateError, match=r"for 32x32 images only; leave out --size 64"):
        translate_folder(tmp_path / "g.onnx", inputs, tmp_path / "x", size=64, progress=False)
    with pytest.raises(TranslateError, match="--which picks a network of a checkpoint"):
        translate_folder(tmp_path / "g.onnx", inputs, tmp_path / "x", which="generator")


def test_grayscale_model_and_channel_mismatch(tmp_path):
    model = save_teacher(tmp_path / "gray.pt", GRAY)
    inputs = write_images(tmp_path / "in", {"a.png": (40, 40), "b.png": (32, 32)}, mode="L")
    report = translate_folder(model, inputs, tmp_path / "out", progress=False)
    generator = load_generator(model)
    for stem in "ab":
        output = Image.open(tmp_path / "out" / "images" / f"{stem}.png")
        assert output.mode == "L"
        expected = expected_output(generator, inputs / f"{stem}.png", channels=1)
        assert np.abs(np.asarray(output).astype(int) - expected).max() <= 1
    assert report.n_images == 2

    write_images(inputs, {"c.png": (32, 32)}, mode="RGB")
    with pytest.raises(TranslateError) as info:
        translate_folder(model, inputs, tmp_path / "out2", progress=False)
    message = str(info.value)
    assert str(inputs / "c.png") in message and "RGB image, but" in message
    assert "reads grayscale images (1 channel)" in message and "pass --convert" in message
    assert not (tmp_path / "out2").exists()  # refused before any output
    translate_folder(model, inputs, tmp_path / "out3", convert=True, progress=False)
    assert Image.open(tmp_path / "out3" / "inputs" / "c.png").mode == "L"


def test_cyclegan_which_picks_the_network(tmp_path):
    config = GeneratorConfig(arch="unet_auto", input_nc=3, output_nc=1, ngf=4, image_size=32)
    model = save_teacher(tmp_path / "cycle.pt", config, family="cyclegan")
    inputs = write_images(tmp_path / "in", {"a.png": (32, 32)}, mode="L")
    translate_folder(model, inputs, tmp_path / "out", which="generator_BA", progress=False)
    assert Image.open(tmp_path / "out" / "images" / "a.png").mode == "RGB"  # BA: 1 -> 3
    with pytest.raises(TranslateError, match="reads RGB images"):  # AB, the default, reads RGB
        translate_folder(model, inputs, tmp_path / "out2", progress=False)


# --- clear errors -----------------------------------------------------------------------------


def test_undecodable_images_are_named(tmp_path, models, capsys):
    inputs = write_images(tmp_path / "in", {"a.png": (32, 32)})
    (inputs / "bad.png").write_bytes(b"this is not a png")
    args = ["--checkpoint", str(models["teacher"]), "--input", str(inputs), "--batch-size", "1"]
    assert main(args + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read image") and str(inputs / "bad.png") in err
    assert not (tmp_path / "out").exists()

    # a truncated file passes the header check and fails midway: no page claims its image
    (inputs / "bad.png").unlink()
    out = tmp_path / "out2"
    assert main(args + ["--out", str(out)]) == 0 and (out / "index.html").is_file()
    data = (inputs / "a.png").read_bytes()
    (inputs / "z.png").write_bytes(data[: len(data) // 2])
    assert main(args + ["--out", str(out)]) == 2
    assert str(inputs / "z.png") in capsys.readouterr().err
    assert (out / "images" / "a.png").is_file() and not (out / "images" / "z.png").exists()
    assert not (out / "index.html").exists() and not list(out.rglob("*.tmp"))


def test_missing_folder_and_non_model_files_exit_2(tmp_path, models, capsys):
    inputs = write_images(tmp_path / "in", {"a.png": (32, 32)})
    out = ["--out", str(tmp_path / "out")]
    assert main(["--checkpoint", str(models["teacher"]), "--input", str(tmp_path / "nope")]
                + out) == 2
    assert "folder not found" in capsys.readouterr().err

    (tmp_path / "notes.txt").write_text("hello")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    for bad, expected in ((tmp_path / "notes.txt", "expected a gan_prune_env checkpoint"),
                          (inputs / "a.png", "expected a gan_prune_env checkpoint"),
                          (tmp_path / "other.pt", "not a gan_prune_env checkpoint"),
                          (tmp_path / "missing.pt", "model file not found")):
        assert main(["--checkpoint", str(bad), "--input", str(inputs)] + out) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(bad) in err and expected in err
    assert not (tmp_path / "out").exists()


def test_size_must_fit_the_unet(tmp_path, models):
    inputs = write_images(tmp_path / "in", {"a.png": (32, 32)})
    with pytest.raises(TranslateError, match=r"image size 40 does not fit .*multiple of 32; "
                                             r"use e\.g\. --size 32"):
        translate_folder(models["pruned"], inputs, tmp_path / "out", size=40)
    report = translate_folder(models["pruned"], inputs, tmp_path / "out", size=64,
                              progress=False)
    assert Image.open(tmp_path / "out" / "images" / "a.png").size == (64, 64)
    assert report.size == 64


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unusable_device_is_a_one_line_error_before_any_work(tmp_path, models, capsys):
    inputs = write_images(tmp_path / "in", {"a.png": (32, 32)})
    assert main(["--checkpoint", str(models["teacher"]), "--input", str(inputs),
                 "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda" in err and "use --device cpu" in err
    assert not (tmp_path / "out").exists()
