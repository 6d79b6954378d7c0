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


def check_one_teacher(path: Path, task: str, teacher_sha1: str, records: list[dict[str, Any]]
                      | None = None) -> None:
    """Stop before anything runs when ``path`` already holds ``task``'s results of another
    teacher (by the teacher file's SHA-1): its rows would mix two teachers in one mean, and no
    pair across them is fair. The same recipe and seed give the same weights only on the same
    kind of CPU (floating point): the wide task's teacher trained on AMD EPYC machines in
    sessions 21 and 36 scores PSNR 18.67 on the test images, session 28's on an Intel Xeon
    18.86. Teacher files written since session 36 hold nothing else that varies (no training
    time), so a retrain there is the same file; older ones differ in that too."""
    records = read_records(path) if records is None else records
    others = sorted({r["teacher_sha1"] for r in records if r.get("task") == task
                     and r.get("teacher_sha1") not in (None, teacher_sha1)})
    if others:
        raise SystemExit(
            f"error: {path} holds {task} results of another teacher (SHA-1 "
            f"{', '.join(s[:12] for s in others)}), not of the one this run would use "
            f"({teacher_sha1[:12]}); restore that teacher, or write these results to another "
            "file (--results/--out) to start the task's comparison afresh on this one")
