"""Tests of gan_prune_env.data: configs, transforms, datasets, procedural task, downloads.

Real-data tests read ``$GAN_PRUNE_DATA/facades`` and are skipped when it is absent.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from gan_prune_env.config import ConfigError, from_dict
from gan_prune_env.data import (
    AlignedDataset,
    DataConfig,
    EmptyFolderError,
    ImageLoadError,
    ImageTransform,
    ProceduralPairs,
    UnalignedDataset,
    build_dataset,
    evaluation_split,
    sample_rng,
)
from gan_prune_env.data import download
from gan_prune_env.data.procedural import LABEL_PALETTE

# --- helpers --------------------------------------------------------------------------------


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path, quality=95)
    return path


def solid(height: int, width: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (height, width, 3)).copy()


def gradient(size: int) -> np.ndarray:
    """R rises left->right, G rises top->bottom: any crop offset or flip changes the pixels."""
    ramp = np.linspace(20, 235, size)
    r, g = np.meshgrid(ramp, ramp)
    return np.stack([r, g, np.full_like(r, 128)], axis=-1)


def config(**overrides) -> DataConfig:
    """Small, fast settings for synthetic data."""
    return DataConfig(**{"load_size": 40, "crop_size": 32, **overrides})


def samples_equal(x: dict, y: dict) -> bool:
    return torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])


@pytest.fixture
def aligned_root(tmp_path: Path) -> Path:
    """pix2pix layout of 64x32 JPEGs: A half red, B half blue, brightness rising with the index."""
    for split, count in (("train", 4), ("test", 2)):
        for i in range(count):
            level = 100 + 40 * i
            pair = np.concatenate([solid(32, 32, (level, 0, 0)), solid(32, 32, (0, 0, level))], 1)
            save(tmp_path / split / f"{i}.jpg", pair)
    return tmp_path


@pytest.fixture
def complement_root(tmp_path: Path) -> Path:
    """Lossless pairs whose B half is 255 - A half: A + B == 0 iff both got the same crop/flip."""
    a = gradient(48)
    for i in range(6):
        save(tmp_path / "train" / f"{i}.png", np.concatenate([a, 255 - a], axis=1))
    return tmp_path


@pytest.fixture
def unaligned_root(tmp_path: Path) -> Path:
    """CycleGAN layout: 3 trainA, 5 trainB, 2 testA, 1 testB tiny JPEGs."""
    for folder, count in (("trainA", 3), ("trainB", 5), ("testA", 2), ("testB", 1)):
        for i in range(count):
            save(tmp_path / folder / f"{folder}_{i}.jpg", solid(20, 24, (30 * i, 60, 90)))
    return tmp_path


# --- configuration ----------------------------------------------------------------------------


def test_config_defaults_are_valid():
    cfg = DataConfig()
    assert cfg.root is None and cfg.crop_size <= cfg.load_size


@pytest.mark.parametrize(
    "key, value",
    [
        ("mode", "paired"),
        ("direction", "AB"),
        ("preprocess", "crop"),
        ("crop_size", 0),
        ("load_size", -5),
        ("crop_size", 512),  # larger than the default load_size 286
        ("max_items", 0),
        ("procedural_size", 0),
        ("seed", -1),
        ("input_nc", 2),
        ("output_nc", 4),
        ("eval_split", "train"),
        ("eval_split", ""),
    ],
)
def test_config_rejects_bad_values(key, value):
    with pytest.raises(ConfigError, match=key):
        from_dict(DataConfig, {key: value})


def test_config_rejects_unknown_key_and_bad_type():
    with pytest.raises(ConfigError, match="crop_sise"):
        from_dict(DataConfig, {"crop_sise": 128})
    with pytest.raises(ConfigError, match="crop_size"):
        from_dict(DataConfig, {"crop_size": "big"})


def test_crop_larger_than_load_is_fine_without_cropping():
    assert from_dict(DataConfig, {"preprocess": "resize", "crop_size": 512}).crop_size == 512


# --- transforms -------------------------------------------------------------------------------


def test_train_transform_is_resize_then_crop_then_flip():
    image = Image.fromarray(gradient(48).astype(np.uint8))
    cfg = config()
    transform = ImageTransform(cfg, train=True)
    aug = transform.sample(sample_rng(0, 0, 0))
    expected = image.resize((40, 40), Image.Resampling.BICUBIC)
    expected = expected.crop((aug.left, aug.top, aug.left + 32, aug.top + 32))
    expected = torch.from_numpy(np.asarray(expected, np.float32) / 127.5 - 1).permute(2, 0, 1)
    if aug.flip:
        expected = expected.flip(-1)
    out = transform(image, aug)
    assert out.dtype == torch.float32 and out.shape == (3, 32, 32)
    assert torch.allclose(out, expected)


def test_eval_transform_resizes_to_crop_size_and_draws_nothing():
    transform = ImageTransform(config(), train=False)
    rng = sample_rng(0, 0, 0)
    aug = transform.sample(rng)
    assert (aug.left, aug.top, aug.flip) == (0, 0, False)
    assert rng.random() == sample_rng(0, 0, 0).random()  # the generator was not consumed
    assert transform(Image.new("RGB", (50, 70)), aug).shape == (3, 32, 32)


# --- procedural task --------------------------------------------------------------------------


def test_procedural_sample_format():
    ds = ProceduralPairs("train", config(crop_size=64, load_size=64, procedural_size=20))
    sample = ds[17]
    assert len(ds) == 20 and len(ProceduralPairs("test", ds.config)) == 100
    assert sample["A_path"] == sample["B_path"] == "procedural://train/17"
    for key in ("A", "B"):
        x = sample[key]
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32
        assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_procedural_input_is_a_flat_label_map_and_photo_is_textured():
    sample = ProceduralPairs("test", config(crop_size=64, load_size=64))[3]
    label = ((sample["A"] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).reshape(-1, 3)
    colours = torch.unique(label, dim=0)
    palette = {tuple(c) for c in LABEL_PALETTE.tolist()}
    assert 2 <= len(colours) <= len(palette)
    assert {tuple(c) for c in colours.tolist()} <= palette
    # within one class the photo varies (texture, shading): not a per-pixel colour lookup
    background = (label == torch.from_numpy(LABEL_PALETTE[0])).all(dim=1)
    assert sample["B"].reshape(3, -1)[:, background].std(dim=1).min() > 0.02


def test_procedural_determinism_and_streams():
    def item(split="train", index=5, seed=0):
        cfg = config(crop_size=32, load_size=32, flip=False, seed=seed)
        return ProceduralPairs(split, cfg)[index]

    reference = item()
    assert samples_equal(reference, item())
    assert not samples_equal(reference, item(seed=1))
    assert not samples_equal(reference, item(split="test"))
    assert not samples_equal(reference, item(index=6))


def test_procedural_flip_depends_on_epoch_only():
    ds = ProceduralPairs("train", config(crop_size=32, load_size=32))
    plain = ProceduralPairs("train", config(crop_size=32, load_size=32, flip=False))[2]
    flipped = 0
    for epoch in range(8):
        ds.set_epoch(epoch)
        sample = ds[2]
        assert samples_equal(sample, ds[2])
        if not samples_equal(sample, plain):
            flipped += 1
            assert torch.equal(sample["A"], plain["A"].flip(-1))
            assert torch.equal(sample["B"], plain["B"].flip(-1))
    assert 0 < flipped < 8


def test_procedural_direction_and_cap():
    cfg = config(crop_size=32, load_size=32)
    atob = ProceduralPairs("test", cfg)[1]
    btoa = ProceduralPairs("test", config(crop_size=32, load_size=32, direction="BtoA"))[1]
    assert torch.equal(atob["A"], btoa["B"]) and torch.equal(atob["B"], btoa["A"])
    assert len(ProceduralPairs("test", config(max_items=7))) == 7
    with pytest.raises(IndexError):
        ProceduralPairs("test", cfg)[100]
    with pytest.raises(ValueError, match="splits"):
        ProceduralPairs("holdout", cfg)


def test_samples_do_not_depend_on_worker_count():
    ds = build_dataset(config(crop_size=32, load_size=32, max_items=8), "train")
    ds.set_epoch(3)
    batches = [
        next(iter(DataLoader(ds, batch_size=8, num_workers=workers))) for workers in (0, 2)
    ]
    assert torch.equal(batches[0]["A"], batches[1]["A"])
    assert batches[0]["A_path"] == batches[1]["A_path"]


# --- aligned datasets -------------------------------------------------------------------------


def test_aligned_splits_halves_and_direction(aligned_root):
    ds = AlignedDataset(aligned_root, "test", config())
    sample = ds[1]
    assert len(ds) == 2
    assert sample["A_path"] == sample["B_path"] == str(aligned_root / "test" / "1.jpg")
    red, blue = sample["A"].mean(dim=(1, 2)), sample["B"].mean(dim=(1, 2))
    assert red[0] > 0 and red[2] < -0.9 and blue[2] > 0 and blue[0] < -0.9
    swapped = AlignedDataset(aligned_root, "test", config(direction="BtoA"))[1]
    assert torch.equal(swapped["A"], sample["B"]) and torch.equal(swapped["B"], sample["A"])
    assert build_dataset(config(root=str(aligned_root)), "train").files == sorted(
        (aligned_root / "train").glob("*.jpg")
    )


@pytest.mark.parametrize(
    "overrides, split, shape",
    [
        ({}, "train", (3, 32, 32)),
        ({}, "test", (3, 32, 32)),
        ({"preprocess": "resize", "crop_size": 24}, "train", (3, 24, 24)),
        ({"preprocess": "none"}, "train", (3, 32, 32)),  # native 32x32 halves
    ],
)
def test_aligned_shapes(aligned_root, overrides, split, shape):
    assert AlignedDataset(aligned_root, split, config(**overrides))[0]["A"].shape == shape


def test_aligned_pairs_share_crop_and_flip(complement_root):
    ds = AlignedDataset(complement_root, "train", config())
    seen_flips, seen_crops = set(), set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            a, b = ds[i]["A"], ds[i]["B"]
            assert (a + b).abs().max() < 0.02  # same crop and flip on both halves
            seen_flips.add(bool(a[0, :, -1].mean() < a[0, :, 0].mean()))  # R falls: flipped
            seen_crops.add((round(float(a[0].min()), 2), round(float(a[1].min()), 2)))
    assert seen_flips == {True, False} and len(seen_crops) > 4


def test_aligned_randomness_is_seeded_and_epoch_dependent(complement_root):
    first = AlignedDataset(complement_root, "train", config())
    again = AlignedDataset(complement_root, "train", config())
    other_seed = AlignedDataset(complement_root, "train", config(seed=7))
    assert all(samples_equal(first[i], again[i]) for i in range(6))
    assert not all(samples_equal(first[i], other_seed[i]) for i in range(6))
    epoch0 = [first[i] for i in range(6)]
    first.set_epoch(1)
    assert not all(samples_equal(x, first[i]) for i, x in enumerate(epoch0))


def test_eval_split_ignores_epoch(aligned_root):
    ds = AlignedDataset(aligned_root, "test", config())
    before = ds[0]
    ds.set_epoch(5)
    assert samples_equal(before, ds[0])


@pytest.mark.parametrize("size", [(33, 16), (2, 16), (8, 1)])
def test_aligned_rejects_odd_or_tiny_images(tmp_path, size):
    bad = save(tmp_path / "train" / "bad.png", np.zeros((size[1], size[0], 3)))
    with pytest.raises(ValueError, match="bad.png"):
        AlignedDataset(tmp_path, "train", config())[0]
    assert bad.exists()


def test_aligned_image_that_is_not_two_squares_warns_once_per_folder(tmp_path):
    """A 48x16 A|B image is cut into 24x16 halves that get stretched: likely not meant."""
    for i in range(3):
        save(tmp_path / "train" / f"wide{i}.png", np.zeros((16, 48, 3)))
    dataset = AlignedDataset(tmp_path, "train", config())
    with pytest.warns(UserWarning, match=r"wide0.png.*48x16.*stretches") as caught:
        for i in range(3):
            dataset[i]
    assert len([w for w in caught if "stretches" in str(w.message)]) == 1


# --- unaligned datasets -----------------------------------------------------------------------


def test_unaligned_indexing(unaligned_root):
    train = UnalignedDataset(unaligned_root, "train", config())
    files_a = sorted(str(p) for p in (unaligned_root / "trainA").iterdir())
    files_b = sorted(str(p) for p in (unaligned_root / "trainB").iterdir())
    assert len(train) == 5
    assert [train[i]["A_path"] for i in range(5)] == [files_a[i % 3] for i in range(5)]
    pairing = [train[i]["B_path"] for i in range(5)]
    assert set(pairing) <= set(files_b)
    twin = UnalignedDataset(unaligned_root, "train", config())
    assert pairing == [twin[i]["B_path"] for i in range(5)]
    epochs = []
    for epoch in range(4):
        train.set_epoch(epoch)
        epochs.append([train[i]["B_path"] for i in range(5)])
    assert len({tuple(p) for p in epochs}) > 1
    test = UnalignedDataset(unaligned_root, "test", config())
    assert len(test) == 2 and {test[i]["B_path"] for i in range(2)} == {
        str(unaligned_root / "testB" / "testB_0.jpg")
    }
    assert test[0]["A"].shape == test[0]["B"].shape == (3, 32, 32)


def test_unaligned_direction_swaps_domains(unaligned_root):
    cfg = config(root=str(unaligned_root), mode="unaligned", direction="BtoA")
    sample = build_dataset(cfg, "test")[0]
    assert "testB" in sample["A_path"] and "testA" in sample["B_path"]


def test_evaluation_split_is_test_else_val_else_a_named_error(tmp_path, unaligned_root):
    """edges2shoes ships train/ and val/ only: evaluation must find val there by itself."""
    aligned = tmp_path / "aligned"
    for split in ("train", "val", "test"):
        save(aligned / split / "0.png", np.concatenate([solid(8, 8, (9, 9, 9))] * 2, 1))
    assert evaluation_split(config(root=str(aligned))) == "test"
    assert evaluation_split(config(root=str(aligned), eval_split="val")) == "val"
    (aligned / "test" / "0.png").unlink()
    (aligned / "test").rmdir()
    assert evaluation_split(config(root=str(aligned))) == "val"
    (aligned / "val" / "0.png").unlink()
    (aligned / "val").rmdir()
    with pytest.raises(FileNotFoundError, match=r"no held-out split.*\['train'\].*eval_split"):
        evaluation_split(config(root=str(aligned)))
    assert evaluation_split(config(root=str(unaligned_root), mode="unaligned")) == "test"
    assert evaluation_split(config()) == "test"  # procedural


def test_grayscale_sides_are_read_with_one_channel(tmp_path):
    """input_nc / output_nc are the generator's; BtoA reads the right half as the 1-channel
    input."""
    for i in range(2):
        pair = np.concatenate([solid(16, 16, (200, 10, 10)), solid(16, 16, (10, 10, 200))], 1)
        save(tmp_path / "test" / f"{i}.png", pair)
    gray_input = build_dataset(config(root=str(tmp_path), input_nc=1, crop_size=16,
                                      load_size=16), "test")[0]
    assert gray_input["A"].shape == (1, 16, 16) and gray_input["B"].shape == (3, 16, 16)
    red_luma = 0.299 * 200 + 0.587 * 10 + 0.114 * 10
    assert gray_input["A"].mean().item() == pytest.approx(red_luma / 127.5 - 1, abs=0.02)
    swapped = build_dataset(config(root=str(tmp_path), input_nc=1, direction="BtoA",
                                   crop_size=16, load_size=16), "test")[0]
    blue_luma = 0.299 * 10 + 0.587 * 10 + 0.114 * 200
    assert swapped["A"].shape == (1, 16, 16) and swapped["B"].shape == (3, 16, 16)
    assert swapped["A"].mean().item() == pytest.approx(blue_luma / 127.5 - 1, abs=0.02)


def test_unaligned_grayscale_domain(unaligned_root):
    cfg = config(root=str(unaligned_root), mode="unaligned", output_nc=1)
    sample = build_dataset(cfg, "test")[0]
    assert sample["A"].shape[0] == 3 and sample["B"].shape[0] == 1


def test_procedural_task_refuses_grayscale():
    with pytest.raises(ValueError, match="procedural dataset is RGB"):
        build_dataset(config(input_nc=1), "test")


# --- errors -----------------------------------------------------------------------------------


def test_missing_root_and_split_folders_are_named(tmp_path, unaligned_root):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset(config(root=str(tmp_path / "nowhere")), "train")
    (tmp_path / "train").mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError, match=r"val.*folders in"):
        AlignedDataset(tmp_path, "val", config())
    (unaligned_root / "testB" / "testB_0.jpg").unlink()
    (unaligned_root / "testB").rmdir()
    with pytest.raises(FileNotFoundError, match="testB"):
        UnalignedDataset(unaligned_root, "test", config())


def test_empty_folder_is_named(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    with pytest.raises(EmptyFolderError, match=str(tmp_path / "train")):
        AlignedDataset(tmp_path, "train", config())


def test_garbage_image_error_names_the_file(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "x.jpg").write_bytes(b"\x00garbage, not a jpeg" * 10)
    ds = AlignedDataset(tmp_path, "train", config())
    with pytest.raises(ImageLoadError, match="x.jpg"):
        ds[0]


def test_truncated_jpeg_error_names_the_file(tmp_path):
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)).save(buffer, "JPEG")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="cut.jpg"):
        AlignedDataset(tmp_path, "train", config())[0]


# --- downloads --------------------------------------------------------------------------------


def make_archive(tmp_path: Path, top: str, members: list[str], kind: str) -> Path:
    """A tiny tar.gz or zip holding ``top/<member>`` JPEGs (64x32 pairs)."""
    data = io.BytesIO()
    Image.fromarray(solid(32, 64, (10, 20, 30))).save(data, "JPEG")
    payload = data.getvalue()
    path = tmp_path / f"{top}.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for member in members:
                zf.writestr(f"{top}/{member}", payload)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for member in members:
                info = tarfile.TarInfo(f"{top}/{member}")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    return path


class FakeResponse(io.BytesIO):
    """What ``urlopen`` returns, minus the network."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


@pytest.fixture
def offline(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize(
    "error",
    [
        urllib.error.URLError("no route to host"),
        urllib.error.HTTPError("http://x", 404, "Not Found", {}, None),
        TimeoutError("timed out"),
    ],
)
def test_download_failure_explains_how_to_get_it(tmp_path, monkeypatch, error):
    def fail(url, *args, **kwargs):
        raise error

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    with pytest.raises(download.DownloadError) as info:
        download.download_dataset("facades", tmp_path, progress=False)
    message = str(info.value)
    assert "facades" in message and download.SOURCES["facades"].url in message
    assert "manually" in message and str(tmp_path / "facades") in message
    assert str(getattr(error, "reason", error)) in message
    assert list(tmp_path.iterdir()) == []  # no temp files or half datasets left behind


def test_download_cli_offline(tmp_path, offline, capsys):
    assert download.main(["maps", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "maps" in err and "name resolution" in err


def test_download_extracts_tar_gz_atomically(tmp_path):
    members = ["train/1.jpg", "train/2.jpg", "test/1.jpg"]
    archive = make_archive(tmp_path, "facades", members, "tar.gz")
    root = tmp_path / "datasets"
    path = download.download_dataset("facades", root, url=archive.as_uri(), progress=False)
    assert path == root / "facades" and sorted(p.name for p in root.iterdir()) == ["facades"]
    assert len(AlignedDataset(path, "train", config())) == 2


def test_download_extracts_zip_via_urlopen(tmp_path, monkeypatch):
    archive = make_archive(tmp_path, "horse2zebra", ["trainA/a.jpg", "trainB/b.jpg"], "zip")
    requested = []

    def serve(url, *args, **kwargs):
        requested.append(url)
        return FakeResponse(archive.read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    path = download.download_dataset("horse2zebra", tmp_path / "d", progress=False)
    assert requested == [download.SOURCES["horse2zebra"].url]
    assert (path / "trainA" / "a.jpg").is_file() and (path / "trainB" / "b.jpg").is_file()


def test_download_checks_sha256(tmp_path):
    archive = make_archive(tmp_path, "maps", ["train/1.jpg"], "tar.gz")
    root = tmp_path / "datasets"

    def fetch(sha256: str) -> Path:
        return download.download_dataset(
            "maps", root, url=archive.as_uri(), sha256=sha256, progress=False
        )

    with pytest.raises(download.DownloadError, match="sha256"):
        fetch("0" * 64)
    assert not (root / "maps").exists()
    assert fetch(hashlib.sha256(archive.read_bytes()).hexdigest()).is_dir()


def test_download_rejects_path_traversal(tmp_path):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(download.DownloadError, match="extract"):
        download.download_dataset("facades", tmp_path / "d", url=path.as_uri(), progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "d" / "facades").exists()


def test_existing_dataset_is_not_downloaded_again(tmp_path, offline):
    (tmp_path / "facades" / "train").mkdir(parents=True)
    assert download.download_dataset("facades", tmp_path) == tmp_path / "facades"


def test_unknown_dataset_lists_known_names(tmp_path, capsys):
    with pytest.raises(ValueError, match="horse2zebra"):
        download.download_dataset("imagenet", tmp_path)
    assert download.main(["imagenet", "--root", str(tmp_path)]) == 2
    assert "edges2shoes" in capsys.readouterr().err


def test_cityscapes_prints_preparation_notes(tmp_path, offline, capsys):
    with pytest.raises(download.ManualDownloadRequired):
        download.download_dataset("cityscapes", tmp_path)
    assert download.main(["cityscapes", "--root", str(tmp_path)]) == 1
    notes = capsys.readouterr().out
    target = str(tmp_path / "cityscapes")
    for needle in ("cityscapes-dataset.com", "gtFine", "leftImg8bit", "512x256", target):
        assert needle in notes


def test_download_runs_as_module(tmp_path):
    command = ["-m", "gan_prune_env.data.download", "cityscapes", "--root", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=60,
    )
    assert result.returncode == 1 and "gtFine" in result.stdout
    assert "Warning" not in result.stderr


# --- real data: facades -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def facades_root() -> Path:
    base = os.environ.get("GAN_PRUNE_DATA")
    if not base or not (Path(base) / "facades").is_dir():
        pytest.skip("set GAN_PRUNE_DATA to a folder holding facades/ to run real-data tests")
    return Path(base) / "facades"


def saturation(x: torch.Tensor) -> float:
    """Mean max-min channel spread in [0, 1]: label maps are vivid, facade photos nearly grey.

    (Distinct-colour counts do not separate them: JPEG chroma bleeding at label borders gives
    the label maps more distinct colours than the greyish photos.)
    """
    return float((x.amax(dim=0) - x.amin(dim=0)).mean() / 2)


def test_facades_counts_and_shapes(facades_root):
    cfg = DataConfig(root=str(facades_root))
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert (len(train), len(test)) == (400, 106)
    for sample in (train[0], test[0]):
        assert sample["A"].shape == sample["B"].shape == (3, 256, 256)
    small = build_dataset(DataConfig(root=str(facades_root), load_size=143, crop_size=128), "train")
    assert small[5]["A"].shape == small[5]["B"].shape == (3, 128, 128)


def test_facades_btoa_feeds_the_label_map(facades_root):
    btoa = build_dataset(DataConfig(root=str(facades_root), direction="BtoA"), "test")
    atob = build_dataset(DataConfig(root=str(facades_root)), "test")
    for i in (0, 50, 105):
        labels_first, photo_first = btoa[i], atob[i]
        assert saturation(labels_first["A"]) > 0.5 > 0.3 > saturation(labels_first["B"])
        assert torch.equal(labels_first["A"], photo_first["B"])


class _PidPairs(ProceduralPairs):
    """Procedural pairs whose B path names the process that made them."""

    def _pair(self, index, rng):
        a, b, a_path, _ = super()._pair(index, rng)
        return a, b, a_path, str(os.getpid())


def _batches_epoch_by_epoch(ds, batch_size: int, seed: int, start_step: int, count: int):
    """The stream as a loop over epochs makes it: each epoch's shuffle, whole batches only."""
    from gan_prune_env.teacher.batches import epoch_order

    per_epoch = len(ds) // batch_size
    keys = [(epoch, int(i)) for epoch in range(8)
            for i in epoch_order(len(ds), seed, epoch)[:per_epoch * batch_size]]
    keys = keys[start_step * batch_size:(start_step + count) * batch_size]
    return [[ds.item(*key) for key in keys[k:k + batch_size]]
            for k in range(0, len(keys), batch_size)]


@pytest.mark.parametrize("workers", [0, 2])
def test_the_batch_stream_serves_every_epoch_from_one_loader(workers):
    # 10 items, batches of 4: 2 batches an epoch, 2 items left out of each; start mid-epoch
    ds = _PidPairs("train", config(crop_size=32, load_size=32, max_items=10))
    from gan_prune_env.teacher.batches import batch_stream

    stream = batch_stream(ds, 4, seed=3, start_step=1, num_workers=workers)
    got = [next(stream) for _ in range(5)]  # steps 1-5: epochs 0-2
    for batch, expected in zip(got, _batches_epoch_by_epoch(ds, 4, 3, 1, 5), strict=True):
        assert torch.equal(batch["A"], torch.stack([item["A"] for item in expected]))
        assert batch["A_path"] == [item["A_path"] for item in expected]
    makers = {pid for batch in got for pid in batch["B_path"]}
    # one worker process makes every epoch's items (a loader per epoch would start new ones)
    assert len(makers) == max(workers, 1) and (workers == 0) == (makers == {str(os.getpid())})
