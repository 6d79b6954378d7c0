"""Import a model trained with the reference pytorch-CycleGAN-and-pix2pix code.

Examples::

    python -m gan_prune_env.import_reference checkpoints/facades_label2photo --out runs/facades
    python -m gan_prune_env.import_reference checkpoints/horse2zebra --epoch 200 \\
        --dataroot datasets/horse2zebra --out runs/horse2zebra

The folder is what the reference's ``train.py`` writes: ``<epoch>_net_G.pth`` and
``<epoch>_net_D.pth`` (Pix2Pix) or ``<epoch>_net_G_A.pth``, ``_G_B``, ``_D_A``, ``_D_B``
(CycleGAN), and ``train_opt.txt``. The architecture is read from ``train_opt.txt`` (netG, ngf,
norm, no_dropout, input_nc, output_nc, netD, ndf, n_layers_D) and inferred from the weights; the
two must agree, and the weights then load strictly (our networks use the reference's parameter
names). The dataset settings come from ``train_opt.txt`` too (dataroot, dataset_mode, direction,
load_size, crop_size, preprocess, no_flip); ``--dataroot`` and ``--direction`` override them.

Writes ``OUT/teacher.pt`` (a teacher checkpoint of ours) and ``OUT/task.yaml`` (a task that
``train_agents.py --env-kwargs task:OUT/task.yaml``, ``gym.make(..., task=...)`` and the
evaluation CLI accept). A folder with generators but no discriminator files gets discriminators
fitted for ``--d-steps`` steps against the frozen generators on the task's training images
(:mod:`gan_prune_env.teacher.discriminator`); the summary and the teacher's metadata say so.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from gan_prune_env.atomic import write_atomically
from gan_prune_env.checkpoint import (
    CheckpointError,
    load_reference_state_dict,
    make_checkpoint,
    read_reference_state_dict,
    save_checkpoint,
)
from gan_prune_env.config import ConfigError, to_dict
from gan_prune_env.data import DataConfig, evaluation_split
from gan_prune_env.envs.registration import ENV_IDS
from gan_prune_env.families import (
    REFERENCE_NAMES,
    build_network,
    network_config,
    network_names,
)
from gan_prune_env.models import DiscriminatorConfig, GeneratorConfig
from gan_prune_env.pruning import count_macs
from gan_prune_env.tasks import BUILTIN_TASKS, TaskConfig
from gan_prune_env.teacher import TEACHER_FILE, TeacherTrainConfig, train_teacher
from gan_prune_env.teacher.discriminator import DiscriminatorFitter

TASK_FILE = "task.yaml"
OPTIONS_FILE = "train_opt.txt"
REFERENCE_MODELS = {"pix2pix": "pix2pix", "cycle_gan": "cyclegan"}
"""The reference's ``--model`` -> our family."""
DATASET_MODES = {"aligned": "aligned", "unaligned": "unaligned"}
PREPROCESS = {"resize_and_crop": "resize_and_crop", "none": "none"}
"""The reference's ``--preprocess`` values that mean the same here."""
GENERATOR_OPTIONS = {"netG": "arch", "ngf": "ngf", "norm": "norm", "input_nc": "input_nc",
                     "output_nc": "output_nc"}
_OPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w]*):\s*(.*?)\s*(?:\[default: .*\])?\s*$")


# --- reading the folder ---------------------------------------------------------------------


def read_train_options(path: str | os.PathLike) -> dict[str, str]:
    """``key -> value`` of a reference ``train_opt.txt`` (``  netG: unet_256  [default: ...]``)."""
    options = {}
    for line in Path(path).read_text().splitlines():
        match = _OPTION_LINE.match(line)
        if match and not line.lstrip().startswith("---"):
            options[match.group(1)] = match.group(2)
    return options


def reference_files(folder: Path, epoch: str, family: str | None) -> tuple[str, dict[str, Path]]:
    """The family whose ``<epoch>_net_*.pth`` files ``folder`` holds, and our network name ->
    file for those present. Generators are required; discriminators are optional."""
    found = {fam: {name: folder / f"{epoch}_net_{ref}.pth"
                   for name, ref in REFERENCE_NAMES[fam].items()
                   if (folder / f"{epoch}_net_{ref}.pth").is_file()}
             for fam in REFERENCE_NAMES}
    complete = [fam for fam, files in found.items()
                if set(network_names(fam, "generator")) <= set(files)]
    if not complete:
        present = sorted(p.name for p in folder.glob("*.pth"))
        epochs = sorted({p.split("_net_")[0] for p in present if "_net_" in p})
        raise CheckpointError(
            f"{folder}: no {epoch}_net_G.pth (Pix2Pix) or {epoch}_net_G_A.pth + "
            f"{epoch}_net_G_B.pth (CycleGAN); .pth files there: {present or 'none'}"
            + (f"; choose one of the epochs {epochs} with --epoch" if epochs else ""))
    detected = "cyclegan" if "cyclegan" in complete else "pix2pix"
    if family is not None and family != detected:
        raise ConfigError(f"{folder} holds a {detected} model ({sorted(found[detected].values())[0].name}"
                          f", ...), not {family}: drop --family or pass --family {detected}")
    return detected, found[detected]


# --- architectures ----------------------------------------------------------------------------


def _norm(state: dict[str, torch.Tensor], biased_conv: str) -> str:
    """BatchNorm leaves running statistics; without them a biased inner conv means InstanceNorm
    (the reference adds conv biases exactly when the norm is InstanceNorm)."""
    if any(k.endswith("running_mean") for k in state):
        return "batch"
    return "instance" if biased_conv in state else "none"


def infer_generator(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The generator fields a reference state dict determines (dropout is invisible in a U-Net's
    weights, so it is not among them; ``levels`` is a U-Net's depth)."""
    if "model.model.0.weight" in state:
        first = state["model.model.0.weight"]
        levels = max(k.count("model.") for k in state) - 1
        arch = {8: "unet_256", 7: "unet_128"}.get(levels, f"unet_auto ({levels} levels)")
        return {"arch": arch, "ngf": first.shape[0], "input_nc": first.shape[1],
                "output_nc": state["model.model.3.weight"].shape[1],
                "norm": _norm(state, "model.model.1.model.1.bias"), "levels": levels}
    blocks = {k.split(".")[1] for k in state if ".conv_block." in k}
    if "model.1.weight" in state and blocks:
        convs = [k for k in state if k.endswith(".weight") and state[k].dim() == 4]
        last = max(convs, key=lambda k: int(k.split(".")[1]))
        dropout = any(".conv_block.6.weight" in k for k in state)
        arch = {6: "resnet_6blocks", 9: "resnet_9blocks"}.get(len(blocks))
        if arch is None:
            raise CheckpointError(f"a ResNet generator with {len(blocks)} blocks: only 6 and 9 "
                                  "(resnet_6blocks, resnet_9blocks) are supported")
        return {"arch": arch, "ngf": state["model.1.weight"].shape[0],
                "input_nc": state["model.1.weight"].shape[1], "output_nc": state[last].shape[0],
                "norm": _norm(state, "model.1.bias"), "use_dropout": dropout}
    raise CheckpointError("not a reference U-Net or ResNet generator (no model.model.0.weight "
                          "or model.1.weight / conv_block keys)")


def infer_discriminator(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The PatchGAN fields a reference discriminator state dict determines."""
    if "model.0.weight" not in state or state["model.0.weight"].dim() != 4:
        raise CheckpointError("not a reference PatchGAN discriminator (no model.0.weight)")
    convs = [k for k in state if k.endswith(".weight") and state[k].dim() == 4]
    first = state["model.0.weight"]
    return {"ndf": first.shape[0], "input_nc": first.shape[1], "n_layers": len(convs) - 2,
            "norm": _norm(state, "model.2.bias")}


def _options_generator(options: dict[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {ours: options[ref] for ref, ours in GENERATOR_OPTIONS.items()
                              if ref in options}
    for key in ("ngf", "input_nc", "output_nc"):
        if key in fields:
            fields[key] = int(fields[key])
    if "no_dropout" in options:
        fields["use_dropout"] = options["no_dropout"] != "True"
    return fields


def _options_discriminator(options: dict[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "netD" in options:
        if options["netD"] not in ("basic", "n_layers"):
            raise ConfigError(f"netD {options['netD']!r} is not supported (basic, n_layers)")
        layers = int(options.get("n_layers_D", 3))
        fields["n_layers"] = 3 if options["netD"] == "basic" else layers
    if "ndf" in options:
        fields["ndf"] = int(options["ndf"])
    if "norm" in options:
        fields["norm"] = options["norm"]
    return fields


def _disagreements(what: str, read: dict[str, Any], inferred: dict[str, Any]) -> list[str]:
    return [f"{what}.{key}: {OPTIONS_FILE} says {read[key]!r}, the weights say {inferred[key]!r}"
            for key in sorted(set(read) & set(inferred)) if read[key] != inferred[key]]


def _generator_config(inferred: dict[str, Any], read: dict[str, Any], family: str,
                      crop_size: int | None) -> GeneratorConfig:
    fields = {**{k: v for k, v in inferred.items() if k != "levels"}, **read}
    fields.setdefault("use_dropout", family == "pix2pix")  # the reference's default per model
    if fields["arch"] not in ("unet_256", "unet_128", "resnet_6blocks", "resnet_9blocks"):
        fields["arch"] = "unet_auto"
    natural = 2 ** inferred["levels"] if "levels" in inferred else 256  # bottleneck 1x1
    fields["image_size"] = natural if fields["arch"] == "unet_auto" else crop_size or natural
    return GeneratorConfig(**fields)


def architectures(states: dict[str, dict[str, torch.Tensor]], family: str,
                  options: dict[str, str]) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    """The main generator's and discriminator's configs: ``train_opt.txt`` where it speaks,
    checked against the weights; ConfigError listing every disagreement. Without a
    discriminator file or options, the reference's default PatchGAN (ndf 64, 3 layers, the
    generator's norm)."""
    main_g, main_d = network_names(family, "generator")[0], network_names(family, "discriminator")[0]
    inferred_g = infer_generator(states[main_g])
    read_g = _options_generator(options)
    problems = _disagreements("generator", read_g, inferred_g)
    inferred_d = infer_discriminator(states[main_d]) if main_d in states else None
    read_d = _options_discriminator(options)
    if inferred_d is not None:
        problems += _disagreements("discriminator", read_d, inferred_d)
    if problems:
        raise ConfigError("the weights do not match the architecture in "
                          f"{OPTIONS_FILE}: " + "; ".join(problems))
    crop = int(options["crop_size"]) if "crop_size" in options else None
    generator = _generator_config(inferred_g, read_g, family, crop)
    fields = {"input_nc": generator.output_nc + (generator.input_nc if family == "pix2pix" else 0),
              "ndf": 64, "n_layers": 3, "norm": generator.norm,
              **(inferred_d or {}), **read_d}
    fields["arch"] = "basic" if fields["n_layers"] == 3 else "n_layers"
    return generator, DiscriminatorConfig(**fields)


# --- the task --------------------------------------------------------------------------------


def data_config(options: dict[str, str], family: str, generator: GeneratorConfig,
                dataroot: str | None, direction: str | None) -> DataConfig:
    """The dataset as the reference trained on it (``--dataroot``/``--direction`` win)."""
    root = dataroot or options.get("dataroot")
    if root is None:
        raise ConfigError(f"no dataset folder: {OPTIONS_FILE} names none; pass --dataroot DIR")
    if not Path(root).is_dir():
        raise ConfigError(f"dataset folder not found: {root}"
                          + ("" if dataroot else f" (the dataroot of {OPTIONS_FILE}, relative to "
                             "where the reference ran)") + "; pass --dataroot DIR")
    mode = options.get("dataset_mode", "aligned" if family == "pix2pix" else "unaligned")
    preprocess = options.get("preprocess", "resize_and_crop")
    if mode not in DATASET_MODES or preprocess not in PREPROCESS:
        raise ConfigError(f"dataset_mode {mode!r} / preprocess {preprocess!r} of {OPTIONS_FILE}: "
                          f"supported are {sorted(DATASET_MODES)} / {sorted(PREPROCESS)}")
    crop = int(options.get("crop_size", generator.image_size))
    config = DataConfig(
        root=str(Path(root).resolve()), mode=mode,
        direction=direction or options.get("direction", "AtoB"),
        load_size=int(options.get("load_size", round(crop * 286 / 256))), crop_size=crop,
        preprocess=PREPROCESS[preprocess], flip=options.get("no_flip", "False") != "True",
        input_nc=generator.input_nc, output_nc=generator.output_nc)
    evaluation_split(config)  # a dataset without test/ or val/ fails here, not later
    return config


def _task_name(folder: Path, name: str | None) -> str:
    name = name or folder.resolve().name
    return f"{name}_imported" if name in BUILTIN_TASKS else name


# --- the command -----------------------------------------------------------------------------


def _env_id(family: str) -> str:
    """The registered env id of a family (``gan_prune_env.envs.ENV_IDS``)."""
    return next(env_id for env_id, (fam, _) in ENV_IDS.items() if fam == family)


@dataclass
class ImportReport:
    """What was imported and written."""

    family: str
    task: TaskConfig
    teacher: Path
    task_file: Path
    files: dict[str, str]
    discriminator: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        g = self.task.generator
        macs = count_macs(build_network(g), torch.zeros(1, *self.task.input_shape))
        lines = [f"imported a {self.family} teacher: generator {g.arch} (ngf {g.ngf}, "
                 f"{g.input_nc} -> {g.output_nc} channels, {g.norm} norm, "
                 f"{macs / 1e6:.1f} M MACs at {self.task.image_size} px)",
                 f"  weights: {', '.join(self.files.values())}",
                 f"  discriminator: {self.discriminator}",
                 *[f"  note: {note}" for note in self.notes],
                 f"  teacher: {self.teacher}", f"  task:    {self.task_file}",
                 f"next: python train_agents.py --env {_env_id(self.family)} "
                 f"--env-kwargs task:{self.task_file}"]
        return "\n".join(lines)


def _load_networks(family: str, files: dict[str, Path], states: dict[str, dict],
                   generator: GeneratorConfig, discriminator: DiscriminatorConfig
                   ) -> dict[str, torch.nn.Module]:
    networks = {}
    for name in network_names(family):
        net = build_network(network_config(family, name, generator, discriminator))
        if name in states:
            load_reference_state_dict(states[name], net)
        networks[name] = net
    return networks


def _fit_discriminators(family: str, networks: dict[str, torch.nn.Module], task: TaskConfig,
                        out: Path, steps: int, metadata: dict[str, Any], progress: bool) -> Path:
    config = TeacherTrainConfig(family=family, data=task.data, generator=task.generator,
                                discriminator=task.discriminator, n_steps=steps, batch_size=4,
                                lr_decay_steps=0, image_every=0, save_every=max(1, steps // 4),
                                progress=progress)
    fitter = DiscriminatorFitter(family, networks, config.lr, config.betas,
                                 config.resolved_gan_mode)
    return train_teacher(config, out, resume=True, trainer=fitter, final_metadata=metadata)


def import_reference(folder: str | os.PathLike, out: str | os.PathLike, epoch: str = "latest",
                     dataroot: str | None = None, direction: str | None = None,
                     family: str | None = None, name: str | None = None, d_steps: int = 500,
                     progress: bool = True) -> ImportReport:
    """Import the reference checkpoint ``folder`` (see the module docstring); returns what was
    written. Everything is checked before anything is written; the teacher file and the task
    file are each written atomically, the task file last."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise ConfigError(f"checkpoint folder not found: {folder}")
    if d_steps < 1:
        raise ConfigError(f"--d-steps must be >= 1, got {d_steps}")
    family, files = reference_files(folder, epoch, family)
    options_file = folder / OPTIONS_FILE
    options = read_train_options(options_file) if options_file.is_file() else {}
    notes = [] if options else [f"no {OPTIONS_FILE}: the architecture is inferred from the weights"
                                " (U-Net dropout cannot be seen in weights; the reference's "
                                f"default for {family} is assumed)"]
    model = options.get("model")
    if model is not None and REFERENCE_MODELS.get(model) != family:
        raise ConfigError(f"{OPTIONS_FILE} says model {model!r}, but the weights are a {family} "
                          "model's")
    states = {net: read_reference_state_dict(path) for net, path in files.items()}
    generator, discriminator = architectures(states, family, options)
    data = data_config(options, family, generator, dataroot, direction)
    task = TaskConfig(name=_task_name(folder, name), family=family, data=data,
                      generator=generator, discriminator=discriminator,
                      image_size=data.crop_size, teacher_checkpoint=str((out / TEACHER_FILE)
                                                                         .resolve()))
    networks = _load_networks(family, files, states, generator, discriminator)
    missing_d = [n for n in network_names(family, "discriminator") if n not in files]
    metadata = {"imported_from": str(folder.resolve()), "epoch": epoch,
                "files": {n: p.name for n, p in files.items()}, "train_opt": options or None}
    out.mkdir(parents=True, exist_ok=True)
    if missing_d:
        how = (f"fitted for {d_steps} steps against the frozen imported generator(s) on the "
               f"training images (no {', '.join(REFERENCE_NAMES[family][n] for n in missing_d)} "
               "file)")
        metadata["discriminator"] = how
        teacher = _fit_discriminators(family, networks, task, out, d_steps, metadata, progress)
    else:
        how = "imported"
        metadata["discriminator"] = how
        teacher = save_checkpoint(out / TEACHER_FILE, make_checkpoint(
            "teacher", family, networks, generator, discriminator, metadata=metadata))
    task_file = out / TASK_FILE
    write_atomically(task_file, lambda handle: handle.write(
        yaml.safe_dump(to_dict(task), sort_keys=False).encode()))
    return ImportReport(family, task, teacher, task_file,
                        {n: p.name for n, p in files.items()}, how, notes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gan_prune_env.import_reference",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the reference checkpoint folder (checkpoints/<name>)")
    parser.add_argument("--out", required=True, help="folder for teacher.pt and task.yaml")
    parser.add_argument("--epoch", default="latest", help="which <epoch>_net_*.pth (latest)")
    parser.add_argument("--dataroot", help="dataset folder (default: train_opt.txt's dataroot)")
    parser.add_argument("--direction", choices=("AtoB", "BtoA"),
                        help="default: train_opt.txt's, else AtoB")
    parser.add_argument("--family", choices=tuple(REFERENCE_NAMES),
                        help="check the folder holds this family (default: detected)")
    parser.add_argument("--name", help="task name (default: the folder's name)")
    parser.add_argument("--d-steps", type=int, default=500,
                        help="steps that fit a discriminator when the folder has none (500)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = import_reference(args.folder, args.out, args.epoch, args.dataroot,
                                  args.direction, args.family, args.name, args.d_steps,
                                  progress=not args.quiet)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
