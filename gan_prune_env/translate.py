"""Run a generator over a folder of images and write the results with a side-by-side web page.

The counterpart of the reference pytorch-CycleGAN-and-pix2pix ``test.py`` for a model you have
just pruned: it reads our checkpoints (teacher or pruned), and the TorchScript and ONNX files of
:mod:`gan_prune_env.export`.

Examples::

    # a pruned checkpoint on a folder of images, at the size it was pruned at
    python -m gan_prune_env.translate --checkpoint runs/r1/pruned.pt --input photos/ --out out/

    # pix2pix facades, labels -> photo (the B half of each pair), next to the teacher's output
    # and the real photo
    python -m gan_prune_env.translate --checkpoint pruned.pt --teacher teacher.pt \\
        --input data/facades/test --aligned BtoA --out out/facades

    # exports record their image size (a TorchScript file from elsewhere needs --size)
    python -m gan_prune_env.translate --checkpoint export/generator.onnx --input photos/ --out o/
    python -m gan_prune_env.translate --checkpoint export/generator.ts --input photos/ --out o/

    # CycleGAN: the B -> A generator of the checkpoint
    python -m gan_prune_env.translate --checkpoint cyclegan.pt --which generator_BA \\
        --input testB/ --out out/BA

Written under ``--out``: ``images/<stem>.png`` (the model's outputs), ``inputs/<stem>.png`` (each
input as the model saw it: resized, one half of an aligned pair), ``teacher/`` (with
``--teacher``), ``targets/`` (with ``--aligned``) and ``index.html``, one row per input. Images
are resized bicubically to the model's size, as the evaluation transform does; ``--size``
overrides it. An image file must have the model's channel count (grayscale for 1, colour for 3)
unless ``--convert`` converts it as the reference code does.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from gan_prune_env import devices
from gan_prune_env.atomic import write_atomically
from gan_prune_env.checkpoint import (
    CheckpointError,
    embedded_configs,
    load_generator,
    read_checkpoint,
)
from gan_prune_env.data.datasets import split_pair
from gan_prune_env.data.images import CHANNEL_MODES, ImageLoadError, list_images, load_image
from gan_prune_env.data.transforms import to_tensor
from gan_prune_env.evaluation.metrics import to_uint8
from gan_prune_env.export import INPUT_SHAPE_FILE
from gan_prune_env.families import network_config, network_names

__all__ = ["LoadedModel", "TranslateError", "TranslateReport", "check_device", "image_channels",
           "load_model", "main", "translate_folder"]

DIRECTIONS = ("AtoB", "BtoA")
EXPECTED_MODEL = ("a gan_prune_env checkpoint (teacher or pruned), a TorchScript file or an "
                  "ONNX file written by gan_prune_env.export")
CHANNEL_NAMES = {1: "grayscale", 3: "RGB"}


class TranslateError(ValueError):
    """A model, image or option this command cannot use; the message names it and the fix."""


@dataclass
class LoadedModel:
    """A generator from any supported file, reduced to what translating a folder needs."""

    path: Path
    kind: str
    """``"<kind> checkpoint"``, ``"TorchScript"`` or ``"ONNX"`` (for messages)."""
    input_nc: int
    forward: Callable[[torch.Tensor], torch.Tensor]
    """A CPU float batch in [-1, 1] -> the generated CPU float batch."""
    size: int | None = None
    """Native (square) image size; None when the file does not record one."""
    fixed_size: bool = False
    """The file runs no other size (ONNX exports fix H and W)."""
    multiple: int = 1
    """Image sizes must be multiples of this (2**levels for a U-Net)."""
    arch: str = "generator"


# --- models -----------------------------------------------------------------------------------


def check_device(device: str) -> torch.device:
    """The parsed ``--device``, or a one-line TranslateError before any work."""
    try:
        return devices.check_device(device, "--device")
    except devices.DeviceError as err:
        raise TranslateError(str(err)) from err


def _file_kind(path: Path) -> str:
    """``"checkpoint"``, ``"torchscript"`` or ``"onnx"`` from the file's contents, not its name:
    both torch formats are zip archives (TorchScript's holds a ``code/`` folder), the legacy
    ``torch.save`` format is a pickle, and anything else is left for onnxruntime to parse."""
    if not path.is_file():
        raise TranslateError(f"model file not found: {path} (expected {EXPECTED_MODEL})")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in name for name in names):
            return "torchscript"
        if any(name.endswith("data.pkl") for name in names):
            return "checkpoint"
        raise TranslateError(f"{path}: a zip archive, not a model (expected {EXPECTED_MODEL})")
    with open(path, "rb") as handle:
        return "checkpoint" if handle.read(1) == b"\x80" else "onnx"


def _torch_forward(module: nn.Module, device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda batch: module(batch.to(device)).float().cpu()


def _downsamplings(module: nn.Module) -> int:
    """Stride-2 convolutions of a generator: 8 for ``unet_256``, 2 for a ResNet."""
    return sum(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in module.modules())


def _load_checkpoint(path: Path, which: str | None, device: str) -> LoadedModel:
    payload = read_checkpoint(path)
    family = payload["family"]
    module = load_generator(payload, which, device)
    name = which or network_names(family, "generator")[0]
    config = network_config(family, name, *embedded_configs(payload))
    levels = _downsamplings(module)
    shape = payload.get("input_shape", {}).get(name)
    # A U-Net is built for 2**levels pixels (unet_256, unet_128, unet_auto's image_size).
    native = 2**levels if config.arch.startswith("unet") else config.image_size
    return LoadedModel(path, f"{payload['kind']} checkpoint", config.input_nc,
                       _torch_forward(module, device), size=int(shape[-1]) if shape else native,
                       multiple=2**levels, arch=f"{config.arch} generator ({levels} stride-2 "
                                               "downsamplings)")


def _load_torchscript(path: Path, device: str) -> LoadedModel:
    extra = {INPUT_SHAPE_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra).eval()
    except Exception as err:  # torch raises RuntimeError, ValueError, ... for broken archives
        raise TranslateError(f"{path}: not a loadable TorchScript file: {err}") from err
    convs = [p for p in module.parameters() if p.dim() == 4]
    if not convs:
        raise TranslateError(f"{path}: a TorchScript module without convolutions, not a "
                             "generator")
    shape = json.loads(extra[INPUT_SHAPE_FILE]) if extra[INPUT_SHAPE_FILE] else None
    return LoadedModel(path, "TorchScript", int(convs[0].shape[1]), _torch_forward(module, device),
                       size=int(shape[-1]) if shape else None)


def _onnx_providers(device: str) -> list:
    import onnxruntime as ort

    parsed = torch.device(device)
    if parsed.type == "cpu":
        return ["CPUExecutionProvider"]
    if parsed.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": parsed.index or 0})]
    raise TranslateError(f"--device {device}: this onnxruntime runs ONNX files on "
                         f"{ort.get_available_providers()} only; use --device cpu")


def _load_onnx(path: Path, device: str) -> LoadedModel:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=_onnx_providers(device))
    except TranslateError:
        raise
    except Exception as err:  # onnxruntime's errors derive from Exception only
        raise TranslateError(f"{path}: not a model file this command reads (expected "
                             f"{EXPECTED_MODEL}); onnxruntime: {err}") from err
    spec = session.get_inputs()[0]
    if len(spec.shape) != 4 or not isinstance(spec.shape[1], int):
        raise TranslateError(f"{path}: ONNX input {spec.name!r} has shape {spec.shape}; an image "
                             "generator takes [batch, channels, height, width]")
    batch, channels, height, width = spec.shape
    if isinstance(height, int) and height != width:
        raise TranslateError(f"{path}: ONNX input is {height}x{width}; this command feeds square "
                             "images")
    if isinstance(batch, int) and batch != 1:
        raise TranslateError(f"{path}: ONNX input has a fixed batch of {batch}; export with a "
                             "dynamic batch axis (gan_prune_env.export does) or a batch of 1")
    pieces = (lambda x: x.split(1)) if isinstance(batch, int) else (lambda x: (x,))

    def forward(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.from_numpy(session.run(None, {spec.name: part.numpy()})[0])
                          for part in pieces(images)])

    fixed = isinstance(height, int)
    return LoadedModel(path, "ONNX", channels, forward, size=height if fixed else None,
                       fixed_size=fixed)


def load_model(path: str | os.PathLike, which: str | None = None,
               device: str = "cpu") -> LoadedModel:
    """Load a generator from a checkpoint, TorchScript or ONNX file, told apart by content.

    Args:
        which: a checkpoint's network name (e.g. ``generator_BA``); default its main generator.
            Exported files hold one network, so it must be None for them.

    Raises:
        TranslateError: the file is none of the three kinds (naming the file and the kinds), or
            its input is not 1 (grayscale) or 3 (RGB) channels.
        CheckpointError: a checkpoint that is broken or has no such network.
    """
    path = Path(path)
    kind = _file_kind(path)
    if which is not None and kind != "checkpoint":
        raise TranslateError(f"--which picks a network of a checkpoint; {path} is a {kind} file "
                             "holding one generator")
    if kind == "checkpoint":
        model = _load_checkpoint(path, which, device)
    else:
        model = (_load_torchscript if kind == "torchscript" else _load_onnx)(path, device)
    if model.input_nc not in CHANNEL_NAMES:
        raise TranslateError(f"{path}: the generator takes {model.input_nc} input channels; only "
                             "1 (grayscale) or 3 (RGB) can be read from image files")
    return model


def _load_teacher(path: str | os.PathLike, net: LoadedModel, which: str | None,
                  device: str) -> LoadedModel:
    """The teacher, which must read the same images as the model it is compared with."""
    teacher = load_model(path, which, device)
    if teacher.input_nc != net.input_nc:
        raise TranslateError(f"teacher {path} reads {teacher.input_nc}-channel images but "
                             f"{net.path} reads {net.input_nc}-channel ones")
    return teacher


def _resolve_size(models: Sequence[LoadedModel], size: int | None) -> int:
    """``size`` or the first model's recorded one, checked against every model."""
    size = size or next((m.size for m in models if m.size), None)
    if size is None:
        raise TranslateError(f"{models[0].path} ({models[0].kind}) does not record its image "
                             "size; pass --size N, the size it was trained or pruned at")
    for model in models:
        if model.fixed_size and size != model.size:
            raise TranslateError(f"{model.path} is an {model.kind} file for {model.size}x"
                                 f"{model.size} images only; leave out --size {size}")
        if size % model.multiple:
            fit = max(1, round(size / model.multiple)) * model.multiple
            raise TranslateError(f"image size {size} does not fit {model.path}: its {model.arch} "
                                 f"needs a multiple of {model.multiple}; use e.g. --size {fit}")
    return size


def _run(model: LoadedModel, batch: torch.Tensor) -> torch.Tensor:
    try:
        output = model.forward(batch)
    except Exception as err:  # torch: RuntimeError; onnxruntime: its own Exception subclasses
        raise TranslateError(f"{model.path} failed on a batch of shape {list(batch.shape)}: "
                             f"{err}") from err
    if output.dim() != 4 or len(output) != len(batch) or output.shape[1] not in CHANNEL_NAMES:
        raise TranslateError(f"{model.path} returned shape {list(output.shape)}; images need "
                             "[batch, 1 or 3, height, width]")
    return output


# --- images -----------------------------------------------------------------------------------


def image_channels(path: Path) -> int:
    """1 for a grayscale file, 3 for a colour one (alpha ignored), read from the header alone so
    a whole folder is checked before any work."""
    try:
        with Image.open(path) as image:
            mode = image.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageLoadError(f"cannot read image {path}: {err}") from err
    return 1 if Image.getmodebase(mode) == "L" else 3


def _check_inputs(files: Sequence[Path], input_nc: int, convert: bool) -> None:
    """Every file readable, of the model's channel count unless ``convert``, with unique stems
    (their outputs are ``<stem>.png``)."""
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise TranslateError(f"{stems[path.stem]} and {path} would both be written as "
                                 f"{path.stem}.png; rename one")
        stems[path.stem] = path
        found = image_channels(path)
        if found != input_nc and not convert:
            want = CHANNEL_NAMES[input_nc]
            raise TranslateError(
                f"{path}: {CHANNEL_NAMES[found]} image, but the model reads {want} images "
                f"({input_nc} channel{'s' if input_nc > 1 else ''}); pass --convert to convert "
                f"every image to {want} as the reference code does, or use {want} images")


def _resize(image: Image.Image, size: int) -> Image.Image:
    """Bicubic resize to ``size`` x ``size``, as the evaluation ImageTransform does."""
    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BICUBIC)


def _load_item(path: Path, input_nc: int, size: int,
               aligned: str | None) -> tuple[Image.Image, Image.Image | None]:
    """The resized model input of ``path`` and, for an aligned pair, the resized other half."""
    if aligned is None:
        return _resize(load_image(path, input_nc), size), None
    try:
        left, right = split_pair(load_image(path, 3), path)
    except ValueError as err:
        raise TranslateError(f"{err} (leave out --aligned for plain images)") from err
    source, target = (left, right) if aligned == "AtoB" else (right, left)
    return _resize(source.convert(CHANNEL_MODES[input_nc]), size), _resize(target, size)


def _to_image(tensor: torch.Tensor) -> Image.Image:
    """A generated [C, H, W] image in [-1, 1] -> 8-bit PIL (grayscale when C is 1), quantised
    as the evaluation metrics do."""
    array = to_uint8(tensor).permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def _save_png(image: Image.Image, path: Path) -> None:
    write_atomically(path, lambda handle: image.save(handle, format="PNG"))


# --- the run ----------------------------------------------------------------------------------


@dataclass
class TranslateReport:
    """What a run wrote, for the summary it prints and for callers that use the images."""

    n_images: int
    size: int
    seconds: float
    model: str
    index_html: Path
    folders: dict[str, Path]
    """Column heading of the web page -> folder of its ``<stem>.png`` files."""

    def summary(self) -> str:
        """One paragraph: how many images, of what size, how fast, and where they are."""
        per_image = self.seconds / max(self.n_images, 1)
        where = "; ".join(f"{label}: {folder}" for label, folder in self.folders.items())
        return (f"Translated {self.n_images} image{'s' if self.n_images != 1 else ''} at "
                f"{self.size}x{self.size} px with {self.model} in {self.seconds:.1f} s "
                f"({per_image:.3f} s per image, reading and writing included). Wrote {where}. "
                f"Open {self.index_html} to compare them side by side.")


def _columns(teacher: bool, aligned: bool) -> dict[str, str]:
    """Web page column heading -> output sub-folder, in display order."""
    columns = {"input": "inputs"}
    if teacher:
        columns["teacher"] = "teacher"
    columns["pruned" if teacher else "output"] = "images"
    if aligned:
        columns["target"] = "targets"
    return columns


def _index_html(title: str, stems: Sequence[str], columns: dict[str, str]) -> str:
    """The reference ``util/html.py`` page: a table, one row per input, each cell the image
    (linked to the file) and its file name."""
    def cell(relative: str) -> str:
        href = quote(relative)
        return (f'<td style="word-wrap: break-word;" valign="top"><a href="{href}">'
                f'<img src="{href}" style="width:256px"></a><p>{html.escape(relative)}</p></td>')

    head = "".join(f"<th>{html.escape(label)}</th>" for label in columns)
    rows = "\n".join("<tr>" + "".join(cell(f"{folder}/{stem}.png")
                                      for folder in columns.values()) + "</tr>"
                     for stem in stems)
    title = html.escape(title)
    return (f'<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8"><title>{title}</title></head>'
            f'\n<body>\n<h3>{title}</h3>\n<table border="1" style="table-layout: fixed;">\n'
            f"<tr>{head}</tr>\n{rows}\n</table>\n</body>\n</html>\n")


def _check_options(aligned: str | None, size: int | None, batch_size: int) -> None:
    if aligned is not None and aligned not in DIRECTIONS:
        raise TranslateError(f"--aligned must be one of {list(DIRECTIONS)}, got {aligned!r}")
    if size is not None and size < 1:
        raise TranslateError(f"--size must be a positive number of pixels, got {size}")
    if batch_size < 1:
        raise TranslateError(f"--batch-size must be >= 1, got {batch_size}")


def _prepare_out(out_dir: Path, columns: dict[str, str]) -> None:
    """Create the output folders and drop an older index.html, so that a run failing midway
    leaves no page describing images it did not write."""
    for folder in columns.values():
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    (out_dir / "index.html").unlink(missing_ok=True)


def _translate_batch(files: Sequence[Path], models: dict[str, LoadedModel], size: int,
                     aligned: str | None, out_dir: Path) -> None:
    """Load, run and save one batch: inputs, each model's outputs and the targets."""
    items = [_load_item(path, models["images"].input_nc, size, aligned) for path in files]
    batch = torch.stack([to_tensor(source) for source, _ in items])
    for folder, model in models.items():
        for path, output in zip(files, _run(model, batch)):
            _save_png(_to_image(output), out_dir / folder / f"{path.stem}.png")
    for path, (source, target) in zip(files, items):
        _save_png(source, out_dir / "inputs" / f"{path.stem}.png")
        if target is not None:
            _save_png(target, out_dir / "targets" / f"{path.stem}.png")


def translate_folder(
    model: str | os.PathLike,
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    teacher: str | os.PathLike | None = None,
    which: str | None = None,
    aligned: str | None = None,
    size: int | None = None,
    convert: bool = False,
    batch_size: int = 8,
    device: str = "cpu",
    progress: bool = True,
) -> TranslateReport:
    """Run ``model`` (and ``teacher``) over every image of ``input_dir``; see the module docstring
    for what is written under ``out_dir``.

    Everything that can be checked up front is (device, models, image size, every file's header
    and channel count), so most mistakes fail before any output is written. ``index.html`` is
    written last; a run that fails midway leaves the images written so far and no page.

    Args:
        which: network of a CycleGAN checkpoint (``generator_AB`` or ``generator_BA``), used for
            both model and teacher; default the main one.
        aligned: ``"AtoB"``/``"BtoA"``: the files are pix2pix A|B pairs; the model reads the A
            (resp. B) half and the other half is written as the target.
        size: square image size; default the model's own.
        convert: convert images of the wrong channel count instead of refusing them.
        progress: show a tqdm bar (only on a terminal).
    """
    _check_options(aligned, size, batch_size)
    check_device(device)
    net = load_model(model, which, device)
    ref = _load_teacher(teacher, net, which, device) if teacher is not None else None
    models = {"teacher": ref, "images": net} if ref is not None else {"images": net}
    files = list_images(input_dir)
    size = _resolve_size([net] if ref is None else [net, ref], size)
    _check_inputs(files, net.input_nc, convert)
    out_dir, columns = Path(out_dir), _columns(teacher is not None, aligned is not None)
    _prepare_out(out_dir, columns)
    start = time.perf_counter()
    with torch.no_grad(), tqdm(total=len(files), unit="img", disable=None if progress else True,
                               desc="translate") as bar:
        for first in range(0, len(files), batch_size):
            chunk = files[first:first + batch_size]
            _translate_batch(chunk, models, size, aligned, out_dir)
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    index = out_dir / "index.html"
    page = _index_html(f"{net.path.name} on {input_dir}", [p.stem for p in files], columns)
    write_atomically(index, lambda handle: handle.write(page.encode("utf-8")))
    return TranslateReport(len(files), size, seconds, f"{net.path} ({net.kind})", index,
                           {label: out_dir / folder for label, folder in columns.items()})


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m gan_prune_env.translate``."""
    parser = argparse.ArgumentParser(prog="python -m gan_prune_env.translate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, metavar="MODEL",
                        help="generator to run: a checkpoint (teacher or pruned), or a "
                             "TorchScript / ONNX file of gan_prune_env.export")
    parser.add_argument("--input", required=True, metavar="DIR", help="folder of images")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (images/, inputs/, teacher/, targets/, index.html)")
    parser.add_argument("--teacher", metavar="PATH",
                        help="also run this teacher and show it next to the model")
    parser.add_argument("--which", metavar="NAME",
                        help="network of a CycleGAN checkpoint (generator_AB or generator_BA; "
                             "default the main one)")
    parser.add_argument("--aligned", choices=DIRECTIONS,
                        help="inputs are pix2pix A|B pairs; run the A (AtoB) or B (BtoA) half "
                             "and show the other half as the target")
    parser.add_argument("--size", type=int,
                        help="square image size (default: the model's own)")
    parser.add_argument("--convert", action="store_true",
                        help="convert images to the model's channel count (grayscale/RGB) "
                             "instead of refusing them")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 on success, 2 with ``error: ...`` on stderr for a user error."""
    args = parse_args(argv)
    try:
        report = translate_folder(
            args.checkpoint, args.input, args.out, teacher=args.teacher, which=args.which,
            aligned=args.aligned, size=args.size, convert=args.convert,
            batch_size=args.batch_size, device=args.device)
    except (TranslateError, CheckpointError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
