"""The results store: one JSON record per finished cell, appended and fsynced at once, so a
stopped run loses at most the cell in progress and a torn last line is ignored."""

from __future__ import annotations

import functools
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


TEACHER_ALIASES = Path(__file__).resolve().parents[1] / "results" / "teacher_aliases.json"
"""Teacher files shown to hold the weights of a file that results recorded under another SHA-1
(``compare_methods.py same-teacher``): a list of ``{"task", "teacher_sha1", "same_as",
"evidence", ...}``."""


def teacher_aliases(path: Path | None = None) -> dict[str, str]:
    """``{SHA-1 of a teacher file: SHA-1 recorded for the same weights}`` (default file:
    ``TEACHER_ALIASES``)."""
    path = TEACHER_ALIASES if path is None else path
    if not path.is_file():
        return {}
    return _read_aliases(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_aliases(path: Path, mtime_ns: int) -> dict[str, str]:
    """Read once per version of the file (a report compares teachers for every pair)."""
    return {alias["teacher_sha1"]: alias["same_as"] for alias in json.loads(path.read_text())}


def same_teacher(a: str | None, b: str | None, aliases: dict[str, str] | None = None) -> bool:
    """Whether two recorded teacher SHA-1s name the same weights: equal, or one an alias of the
    other (``teacher_aliases``)."""
    aliases = teacher_aliases() if aliases is None else aliases
    return aliases.get(a, a) == aliases.get(b, b)


def add_teacher_alias(alias: dict[str, Any], path: Path) -> None:
    """Record that ``alias["teacher_sha1"]`` holds the weights recorded as ``alias["same_as"]``
    (written whole, atomically)."""
    from gan_prune_env.atomic import write_atomically

    aliases = json.loads(path.read_text()) if path.is_file() else []
    text = json.dumps([*aliases, alias], indent=1).encode()
    write_atomically(path, lambda handle: handle.write(text))


def check_one_teacher(path: Path, task: str, teacher_sha1: str, records: list[dict[str, Any]]
                      | None = None, aliases: dict[str, str] | None = None) -> None:
    """Stop before anything runs when ``path`` already holds ``task``'s results of another
    teacher (by the teacher file's SHA-1): its rows would mix two teachers in one mean, and no
    pair across them is fair. The same recipe and seed give the same weights only on the same
    kind of CPU (floating point): the wide task's teacher trained on AMD EPYC machines in
    sessions 21 and 36 scores PSNR 18.67 on the test images, session 28's on an Intel Xeon
    18.86. Teacher files written since session 36 hold nothing else that varies (no training
    time), so a retrain there is the same file; an older one differs in that too, and
    ``compare_methods.py same-teacher`` shows a retrain to hold its weights (an alias)."""
    records = read_records(path) if records is None else records
    aliases = teacher_aliases() if aliases is None else aliases
    others = sorted({r["teacher_sha1"] for r in records if r.get("task") == task
                     and r.get("teacher_sha1") is not None
                     and not same_teacher(r["teacher_sha1"], teacher_sha1, aliases)})
    if others:
        raise SystemExit(
            f"error: {path} holds {task} results of another teacher (SHA-1 "
            f"{', '.join(s[:12] for s in others)}), not of the one this run would use "
            f"({teacher_sha1[:12]}); restore that teacher (a retrain on the same kind of CPU "
            "may hold its weights: python benchmarks/compare_methods.py same-teacher --task "
            f"{task} --results {path} checks and records it), or write these results to "
            "another file (--results/--out) to start the task's comparison afresh on this one")
