"""Train-state checkpoints of one run directory: numbered files, the newest wins on resume."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from gan_prune_env.checkpoint import CheckpointError, read_checkpoint, save_checkpoint

_NAME = re.compile(r"^train_state_(\d{8})\.pt$")
logger = logging.getLogger(__name__)


class TrainStateStore:
    """``<directory>/train_state_<step>.pt`` files, keeping the ``keep`` most recent."""

    def __init__(self, directory: str | Path, keep: int = 2) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def path(self, step: int) -> Path:
        return self.directory / f"train_state_{step:08d}.pt"

    def steps(self) -> list[int]:
        """Steps of the stored train states, ascending."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self) -> dict[str, Any] | None:
        """The newest readable train-state payload, or None when there is none.

        A newest file that does not read (a disk error, a copy cut short) is set aside as
        ``*.unreadable`` with a warning, and the next older one is used: a run then repeats the
        steps since that save instead of stopping. Only when none reads is it an error."""
        failures = []
        for step in reversed(self.steps()):
            path = self.path(step)
            try:
                payload = read_checkpoint(path)
                if payload["kind"] != "train_state" or "train_state" not in payload:
                    raise CheckpointError(f"{path}: not a train-state checkpoint")
            except CheckpointError as err:
                failures.append(str(err))
                continue
            for bad in failures:
                logger.warning("%s; resuming from the older %s instead (the unreadable file is "
                               "kept as *.unreadable)", bad, path.name)
            for newer in self.steps():
                if newer > step:
                    self.path(newer).rename(self.path(newer).with_suffix(".unreadable"))
            return payload
        if failures:
            raise CheckpointError("no readable train state: " + "; ".join(failures))
        return None

    def save(self, step: int, payload: dict[str, Any]) -> Path:
        """Write atomically, then delete all but the ``keep`` newest train states."""
        path = save_checkpoint(self.path(step), payload)
        for old in self.steps()[:-self.keep]:
            self.path(old).unlink(missing_ok=True)
        return path
