"""The results store: one JSON record per finished cell, appended and fsynced at once, so a
stopped run loses at most the cell in progress and a torn last line is ignored."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (interrupted write) is ignored."""
    if not path.is_file():
        return []
    records = []
    with path.open() as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"warning: {path}:{number} is not valid JSON (interrupted write?); "
                      "ignored", file=sys.stderr)
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.is_file() and path.stat().st_size > 0 and \
        path.read_bytes()[-1:] != b"\n"
    with path.open("a") as fh:
        # a torn last line (interrupted write) must not swallow this record
        fh.write(("\n" if torn else "") + json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
