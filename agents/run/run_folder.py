"""Run folders: created atomically, their recorded config never rewritten once work starts.

A run folder (``LOG_FOLDER/ALGO/ENV_N``) holds ``config.yaml``, written once when the folder is
created, and everything the run produces. ``-i RUN`` continues it with exactly that config. A
resume that asks for another config either continues in a *fork* (a new run folder holding a
copy of the work that stays valid under the new config) or is refused, naming every differing
key: nothing in the original folder changes either way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from gan_prune_env.atomic import write_atomically
from gan_prune_env.config import ConfigError

CONFIG_FILE = "config.yaml"
FORK_NOTE = "forked_from.txt"
SEARCH_DIR, SCREEN_DIR, FINETUNE_DIR = "search", "screen", "finetune"

DISPLAY_ONLY = ("progress",)
"""Keys a resume may change freely: they do not touch any result."""
AFTER_SEARCH = ("screen", "finetune", "finetune_processes", "evaluation", "onnx", "torchscript",
                "slice_from", "device", "search.save_freq", "search.eval_freq")
"""Keys (or key prefixes) whose change leaves the saved search valid: a fork keeps it."""


def find_run_folder(path: str | os.PathLike) -> Path:
    """The run folder ``path`` names: the folder itself or the nearest one above a file or
    folder inside it. ``path`` must exist, so a mistyped path is an error rather than a walk up
    to some ancestor that happens to hold a ``config.yaml``."""
    given = Path(path)
    if not given.exists():
        raise ConfigError(f"-i {path}: no such file or folder (give a run folder, "
                          f"LOG_FOLDER/ALGO/ENV_N, holding {CONFIG_FILE})")
    folder = given.resolve() if given.is_dir() else given.resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise ConfigError(f"-i {path}: not inside a run folder (no {CONFIG_FILE} in it or above it)")


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the config keys a difference is reported by."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def differences(recorded: dict[str, Any], requested: dict[str, Any]
                ) -> dict[str, tuple[Any, Any]]:
    """``{key: (recorded, requested)}`` for every dotted key whose value differs, display-only
    keys left out."""
    old, new = flatten(recorded), flatten(requested)
    return {key: (old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key) and key not in DISPLAY_ONLY}


def _keeps_search(key: str, recorded: Any, requested: Any) -> bool:
    if key == "search.n_rounds":  # more rounds continue the saved search; fewer would not
        return isinstance(recorded, int) and isinstance(requested, int) and requested >= recorded
    return any(key == prefix or key.startswith(f"{prefix}.") for prefix in AFTER_SEARCH)


def describe(changed: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changed.items())


def check_resumable(run_dir: Path, changed: dict[str, tuple[Any, Any]]) -> None:
    """Raise ConfigError unless every change keeps the saved search valid (then a fork can
    continue it); the message names the keys that do not."""
    blocking = {k: v for k, v in changed.items() if not _keeps_search(k, *v)}
    if blocking:
        raise ConfigError(
            f"-i {run_dir}: the run was recorded with another config, and its search cannot "
            f"continue under this one ({describe(blocking)}). Resume it without these changes, "
            "or start a new run (leave out -i)")


def create_run_folder(parent: Path, stem: str) -> Path:
    """``parent/stem_N`` with the next free N, created atomically (``mkdir`` fails on a folder
    that exists), so two runs started at the same instant never share a folder."""
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.rsplit("_", 1)[1]) for p in parent.glob(f"{stem}_*")
             if p.name.rsplit("_", 1)[1].isdigit()]
    number = max(taken, default=0) + 1
    while True:
        folder = parent / f"{stem}_{number}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    text = yaml.safe_dump(config, sort_keys=False).encode()
    write_atomically(run_dir / CONFIG_FILE, lambda handle: handle.write(text))


def fork_run(source: Path, config: dict[str, Any], changed: dict[str, tuple[Any, Any]]) -> Path:
    """A new run folder beside ``source`` with ``config`` and a copy of the work that stays
    valid under it: the search and the screen's scores always (they are kept per protocol),
    the fine-tuning states only when no fine-tuning key changed. ``source`` is only read."""
    stem = source.name.rsplit("_", 1)[0]
    fork = create_run_folder(source.parent, stem)
    for folder in (SEARCH_DIR, SCREEN_DIR):
        if (source / folder).is_dir():
            shutil.copytree(source / folder, fork / folder)
    finetune_changed = any(k.startswith("finetune.") or k in ("slice_from", "device")
                           for k in changed)
    if (source / FINETUNE_DIR).is_dir() and not finetune_changed:
        shutil.copytree(source / FINETUNE_DIR, fork / FINETUNE_DIR)
    (fork / FORK_NOTE).write_text(f"forked from {source}\nchanged: {describe(changed)}\n")
    write_config(fork, config)
    return fork
