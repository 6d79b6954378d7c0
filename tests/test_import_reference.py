"""Importing checkpoint folders written by the reference pytorch-CycleGAN-and-pix2pix code.

The folders are built with the reference's own network classes (``tests/reference_networks.py``)
and saved as its ``train.py`` saves them: bare state dicts named ``<epoch>_net_<name>.pth`` and
a ``train_opt.txt`` in the format of its ``BaseOptions.print_options``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gan_prune_env.checkpoint import CheckpointError, read_checkpoint
from gan_prune_env.config import ConfigError
from gan_prune_env.import_reference import (
    import_reference,
    infer_discriminator,
    infer_generator,
    main,
    read_train_options,
)
from gan_prune_env.tasks import get_task, load_teacher
from tests import reference_networks as ref

SIZE = 32


def write_options(folder: Path, **options) -> None:
    """``train_opt.txt`` as the reference prints it (value column, then a default note)."""
    lines = ["----------------- Options ---------------"]
    for key, value in sorted(options.items()):
        note = "\t[default: None]" if key == "dataroot" else ""
        lines.append(f"{key:>25}: {str(value):<30}{note}")
    lines.append("----------------- End -------------------")
    (folder / "train_opt.txt").write_text("\n".join(lines) + "\n")


def save_images(folder: Path, count: int, width: int, seed: int = 0, mode: str = "RGB") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (SIZE, width) + ((3,) if mode == "RGB" else ())
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(folder / f"{i}.png")


def pix2pix_options(dataroot: Path, **overrides) -> dict:
    return {"model": "pix2pix", "netG": "unet_128", "ngf": 4, "norm": "batch", "no_dropout": False,
            "input_nc": 3, "output_nc": 3, "netD": "basic", "ndf": 4, "n_layers_D": 3,
            "direction": "BtoA", "dataset_mode": "aligned", "load_size": 143, "crop_size": 128,
            "preprocess": "resize_and_crop", "no_flip": False, "dataroot": str(dataroot),
            "gpu_ids": "0", "name": "tiny_pix2pix", **overrides}


def reference_unet(**kwargs) -> torch.nn.Module:
    norm = ref.get_norm_layer(kwargs.pop("norm", "batch"))
    torch.manual_seed(kwargs.pop("seed", 0))
    return ref.UnetGenerator(kwargs.pop("input_nc", 3), 3, kwargs.pop("num_downs", 7), ngf=4,
                             norm_layer=norm, use_dropout=True)


@pytest.fixture
def facades_like(tmp_path) -> Path:
    """An aligned dataset with train/ and val/ only (the edges2shoes layout)."""
    root = tmp_path / "data"
    save_images(root / "train", 4, 2 * 128)
    save_images(root / "val", 2, 2 * 128, seed=1)
    return root


@pytest.fixture
def pix2pix_folder(tmp_path, facades_like) -> Path:
    folder = tmp_path / "checkpoints" / "tiny_pix2pix"
    folder.mkdir(parents=True)
    torch.save(reference_unet().state_dict(), folder / "latest_net_G.pth")
    torch.manual_seed(1)
    netd = ref.NLayerDiscriminator(6, 4, n_layers=3, norm_layer=ref.get_norm_layer("batch"))
    torch.save(netd.state_dict(), folder / "latest_net_D.pth")
    write_options(folder, **pix2pix_options(facades_like))
    return folder


def test_train_options_are_read_in_the_reference_format(pix2pix_folder, facades_like):
    options = read_train_options(pix2pix_folder / "train_opt.txt")
    assert options["netG"] == "unet_128" and options["no_dropout"] == "False"
    assert options["dataroot"] == str(facades_like)  # the "[default: None]" note is not the value


def test_pix2pix_import_keeps_the_reference_weights_and_writes_a_usable_task(pix2pix_folder,
                                                                              tmp_path):
    report = import_reference(pix2pix_folder, tmp_path / "out", progress=False)
    task = get_task(str(report.task_file))
    assert task.name == "tiny_pix2pix" and task.family == "pix2pix"
    assert (task.generator.arch, task.generator.ngf, task.generator.use_dropout) == ("unet_128", 4,
                                                                                     True)
    assert task.data.direction == "BtoA" and task.image_size == 128
    generator, discriminator = load_teacher(task)
    reference_g = reference_unet().eval()
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        assert torch.equal(generator(x), reference_g(x))
    assert read_checkpoint(report.teacher)["metadata"]["discriminator"] == "imported"
    assert "discriminator: imported" in report.summary()
    assert f"--env-kwargs task:{report.task_file}" in report.summary()


def test_architecture_disagreement_names_the_fields(pix2pix_folder, facades_like, tmp_path):
    write_options(pix2pix_folder, **pix2pix_options(facades_like, ngf=8, norm="instance"))
    with pytest.raises(ConfigError, match=r"generator\.ngf: train_opt.txt says 8, the weights "
                                          r"say 4.*generator\.norm"):
        import_reference(pix2pix_folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_generator_only_folder_gets_a_fitted_discriminator(pix2pix_folder, tmp_path):
    (pix2pix_folder / "latest_net_D.pth").unlink()
    report = import_reference(pix2pix_folder, tmp_path / "out", d_steps=3, progress=False)
    payload = read_checkpoint(report.teacher)
    assert "fitted for 3 steps against the frozen imported generator" in \
        payload["metadata"]["discriminator"]
    assert "fitted for 3 steps" in report.summary()
    generator, discriminator = load_teacher(get_task(str(report.task_file)))
    reference_g = reference_unet()
    for name, value in reference_g.state_dict().items():  # G untouched, BN statistics included
        assert torch.equal(generator.state_dict()[name], value), name
    assert discriminator.model[0].weight.shape == (4, 6, 4, 4)  # train_opt.txt's ndf
    # trained: 3 steps, each a fake and a real batch through the BatchNorm layers
    assert int(discriminator.model[3].num_batches_tracked) == 6


def test_unet_dropout_and_size_come_from_the_weights_without_train_opt(pix2pix_folder,
                                                                       facades_like, tmp_path):
    (pix2pix_folder / "train_opt.txt").unlink()
    report = import_reference(pix2pix_folder, tmp_path / "out", dataroot=str(facades_like),
                              direction="BtoA", progress=False)
    assert report.task.generator.arch == "unet_128" and report.task.image_size == 128
    assert report.task.generator.use_dropout  # the reference's pix2pix default
    assert report.task.data.eval_split is None and report.task.data.root == str(facades_like)
    assert any("no train_opt.txt" in note for note in report.notes)


def test_cyclegan_folder_maps_reference_names(tmp_path):
    data = tmp_path / "h2z"
    for folder in ("trainA", "trainB", "testA", "testB"):
        save_images(data / folder, 2, SIZE)
    folder = tmp_path / "checkpoints" / "h2z"
    folder.mkdir(parents=True)
    nets = {}
    for i, name in enumerate(("G_A", "G_B")):
        torch.manual_seed(i)
        nets[name] = ref.ResnetGenerator(3, 3, ngf=4, norm_layer=ref.get_norm_layer("instance"),
                                         use_dropout=False, n_blocks=6)
    for i, name in enumerate(("D_A", "D_B")):
        torch.manual_seed(10 + i)
        nets[name] = ref.NLayerDiscriminator(3, 4, n_layers=3,
                                             norm_layer=ref.get_norm_layer("instance"))
    for name, net in nets.items():
        torch.save(net.state_dict(), folder / f"200_net_{name}.pth")
    write_options(folder, model="cycle_gan", netG="resnet_6blocks", ngf=4, norm="instance",
                  no_dropout=True, input_nc=3, output_nc=3, netD="basic", ndf=4, n_layers_D=3,
                  dataset_mode="unaligned", direction="AtoB", load_size=36, crop_size=SIZE,
                  preprocess="resize_and_crop", dataroot=str(data))
    with pytest.raises(ConfigError, match="holds a cyclegan model.*--family cyclegan"):
        import_reference(folder, tmp_path / "out", epoch="200", family="pix2pix", progress=False)
    with pytest.raises(CheckpointError, match=r"latest_net_G.pth.*epochs \['200'\] with --epoch"):
        import_reference(folder, tmp_path / "out", progress=False)
    report = import_reference(folder, tmp_path / "out", epoch="200", progress=False)
    payload = read_checkpoint(report.teacher)
    # our discriminator_B judges domain B, which is the reference's netD_A
    for ours, theirs in (("generator_AB", "G_A"), ("generator_BA", "G_B"),
                         ("discriminator_B", "D_A"), ("discriminator_A", "D_B")):
        for key, value in nets[theirs].state_dict().items():
            assert torch.equal(payload[ours][key], value), (ours, key)


def test_bad_folders_give_errors_that_name_the_file(pix2pix_folder, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main([str(tmp_path / "nowhere"), "--out", out]) == 2
    assert "checkpoint folder not found" in capsys.readouterr().err
    g_file = pix2pix_folder / "latest_net_G.pth"
    g_file.write_bytes(g_file.read_bytes()[:300])
    assert main([str(pix2pix_folder), "--out", out]) == 2
    assert "latest_net_G.pth" in capsys.readouterr().err
    g_file.unlink()
    assert main([str(pix2pix_folder), "--out", out]) == 2
    assert "no latest_net_G.pth" in capsys.readouterr().err
    assert not Path(out).exists()


def test_missing_dataset_folder_names_the_fix(pix2pix_folder, tmp_path):
    with pytest.raises(ConfigError, match="dataset folder not found.*--dataroot"):
        import_reference(pix2pix_folder, tmp_path / "out", dataroot=str(tmp_path / "x"),
                         progress=False)


@pytest.mark.parametrize("builder, expected", [
    (functools.partial(ref.ResnetGenerator, 1, 3, ngf=4, n_blocks=9, use_dropout=True,
                       norm_layer=ref.get_norm_layer("batch")),
     {"arch": "resnet_9blocks", "input_nc": 1, "output_nc": 3, "norm": "batch",
      "use_dropout": True}),
    (functools.partial(ref.UnetGenerator, 3, 1, 5, ngf=4, norm_layer=ref.get_norm_layer("instance")),
     {"arch": "unet_auto (5 levels)", "input_nc": 3, "output_nc": 1, "norm": "instance"}),
])
def test_generator_inference(builder, expected):
    inferred = infer_generator(builder().state_dict())
    assert {k: inferred[k] for k in expected} == expected


def test_discriminator_inference():
    net = ref.NLayerDiscriminator(4, 8, n_layers=2, norm_layer=ref.get_norm_layer("instance"))
    assert infer_discriminator(net.state_dict()) == {"ndf": 8, "input_nc": 4, "n_layers": 2,
                                                     "norm": "instance"}


def test_written_task_file_is_plain_yaml(pix2pix_folder, tmp_path):
    report = import_reference(pix2pix_folder, tmp_path / "out", progress=False)
    data = yaml.safe_load(report.task_file.read_text())
    assert data["teacher_checkpoint"] == str(report.teacher.resolve())
    assert data["data"]["input_nc"] == 3
