"""The README's "Compress your own model" walkthrough, end to end, as a new user runs it.

A tiny aligned dataset in the edges2shoes layout (``train/`` and ``val/``, no ``test/``) and a
tiny Pix2Pix model saved as the reference code saves it (bare state dicts
``latest_net_G.pth``/``latest_net_D.pth`` and ``train_opt.txt``, built with the reference's own
classes) go through the walkthrough's commands with the same flags, only shorter: import,
search + fine-tune + evaluate + export (``train_agents.py``), evaluate, translate (checkpoint and
ONNX export).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from agents.run.cli import main as train_agents
from gan_prune_env.evaluation.cli import main as evaluate
from gan_prune_env.import_reference import main as import_reference
from gan_prune_env.translate import main as translate
from tests import reference_networks as ref
from tests.test_import_reference import write_options

SIZE = 128  # unet_128, the reference's smallest named U-Net


def make_dataset(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("val", 6)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            pair = rng.integers(0, 255, (SIZE, 2 * SIZE, 3), dtype=np.uint8)
            Image.fromarray(pair).save(root / split / f"{i}.jpg")


def make_reference_folder(folder: Path, dataroot: Path) -> None:
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    batch = ref.get_norm_layer("batch")
    torch.save(ref.UnetGenerator(3, 3, 7, ngf=4, norm_layer=batch, use_dropout=True).state_dict(),
               folder / "latest_net_G.pth")
    torch.save(ref.NLayerDiscriminator(6, 4, n_layers=3, norm_layer=batch).state_dict(),
               folder / "latest_net_D.pth")
    write_options(folder, model="pix2pix", netG="unet_128", ngf=4, norm="batch", no_dropout=False,
                  input_nc=3, output_nc=3, netD="basic", ndf=4, n_layers_D=3, direction="AtoB",
                  dataset_mode="aligned", load_size=143, crop_size=SIZE,
                  preprocess="resize_and_crop", no_flip=False, dataroot=str(dataroot))


def run_config(path: Path, task_file: Path) -> Path:
    """The walkthrough's search and fine-tune, shortened (a few rounds and steps)."""
    path.write_text(yaml.safe_dump({
        "env": "Pix2PixPrune-v0",
        "env_kwargs": {"task": str(task_file), "budget_g": 0.25, "eval_size": 4, "pool_size": 8,
                       "k": 2, "rounds": 2, "calibration_size": 4},
        "search": {"algo": "uniform", "n_rounds": 2, "save_freq": 2, "eval_freq": 2},
        "finetune": {"steps": 2, "batch_size": 2, "save_every": 2, "image_every": 2},
        "evaluation": {"max_images": 4, "latency_runs": 2, "fid": False},
        "progress": False,
    }))
    return path


def test_compress_your_own_model(tmp_path, capsys):
    data, checkpoints = tmp_path / "datasets" / "shoes", tmp_path / "checkpoints" / "shoes_pix2pix"
    make_dataset(data)
    make_reference_folder(checkpoints, data)
    imported = tmp_path / "runs" / "shoes"

    assert import_reference([str(checkpoints), "--out", str(imported), "--quiet"]) == 0
    summary = capsys.readouterr().out
    task_file = imported / "task.yaml"
    assert f"--env-kwargs task:{task_file}" in summary and "unet_128" in summary

    logs = tmp_path / "logs"
    assert train_agents(["-conf", str(run_config(tmp_path / "run.yaml", task_file)),
                         "-f", str(logs)]) == 0
    run = logs / "uniform" / "Pix2PixPrune-v0_1"
    results = json.loads((run / "results.json").read_text())
    assert results["compute"]["generator/pruned"]["macs"] < \
        0.3 * results["compute"]["generator/teacher"]["macs"]
    capsys.readouterr()

    assert evaluate(["evaluate", "--checkpoint", str(run / "pruned.pt"), "--task", str(task_file),
                     "--no-fid", "--max-images", "4", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["split"] == "val" and record["metrics"]["num_images"] == 4  # no test/ here

    for model, out in ((run / "pruned.pt", "translated"),
                       (run / "export" / "generator.onnx", "translated_onnx")):
        assert translate(["--checkpoint", str(model), "--teacher", str(imported / "teacher.pt"),
                          "--input", str(data / "val"), "--aligned", "AtoB",
                          "--out", str(tmp_path / out)]) == 0
        assert len(list((tmp_path / out / "images").glob("*.png"))) == 6
        assert (tmp_path / out / "index.html").is_file()
