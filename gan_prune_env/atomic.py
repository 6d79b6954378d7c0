"""Files that are never half-written: the one atomic-write helper of the project."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def fsync_directory(directory: Path) -> None:
    """Persist a rename on POSIX file systems (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, flush and fsync it, then rename it over
    ``path``: a reader sees the old file or the new one, never a part. On any failure the
    temporary file is removed and a previous file at ``path`` stays intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)
    return path


def check_writable_folder(folder: str | os.PathLike, flag: str) -> None:
    """Raise ValueError unless ``folder`` is, or can be created as, a writable folder: before a
    long job starts, not at its first save. ``flag`` names the option in the message."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {folder}: {existing} is a file; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {folder}: {existing} is not writable; give a folder you can "
                         "write to")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the block: two
    processes that would build the same cached file take turns, and the second finds it built.
    POSIX ``flock``; where it does not exist the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_folder_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Build a folder with ``write(tmp)`` in a temporary sibling and move it to ``path`` only
    once complete. A directory cannot be replaced atomically, so an existing ``path`` is first
    renamed to ``<path>.old``: at any instant one of the two names holds a complete folder, and
    :func:`complete_folder` finds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(tmp)
        backup = path.with_name(path.name + ".old")
        if path.exists():
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(path, backup)
        os.replace(tmp, path)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def complete_folder(path: str | os.PathLike, marker: str, what: str) -> Path:
    """``path``, or its ``.old`` backup when a :func:`write_folder_atomically` was interrupted
    between its two renames; a complete folder holds ``marker`` (its last-written file)."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(f"no {what} at {path}")
