"""Train-state checkpoints of one run directory: numbered files, the newest wins on resume."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gan_prune_env.checkpoint import CheckpointError, read_checkpoint, save_checkpoint

_NAME = re.compile(r"^train_state_(\d{8})\.pt$")


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
        """The newest train-state payload, or None when there is none."""
        steps = self.steps()
        if not steps:
            return None
        payload = read_checkpoint(self.path(steps[-1]))
        if payload["kind"] != "train_state" or "train_state" not in payload:
            raise CheckpointError(f"{self.path(steps[-1])}: not a train-state checkpoint")
        return payload

    def save(self, step: int, payload: dict[str, Any]) -> Path:
        """Write atomically, then delete all but the ``keep`` newest train states."""
        path = save_checkpoint(self.path(step), payload)
        for old in self.steps()[:-self.keep]:
            self.path(old).unlink(missing_ok=True)
        return path
