"""Fetch the standard pix2pix / CycleGAN datasets into ``<root>/<name>``.

Usage::

    python -m gan_prune_env.data.download facades --root ./datasets

The archive is streamed to a temporary file and extracted into a temporary folder beside the
target, which is renamed into place only when complete: an interrupted download never leaves a
half-extracted dataset that later looks valid.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
CHUNK_BYTES = 1 << 20
LAYOUTS = {
    "aligned": "train/, test/ (A|B side-by-side images)",
    "unaligned": "trainA/, trainB/, testA/, testB/",
}


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset lives and which ``DataConfig.mode`` reads it."""

    name: str
    url: str
    mode: str

    @property
    def layout(self) -> str:
        """The folders a correctly extracted copy has, for messages."""
        return LAYOUTS[self.mode]


def _source(name: str, template: str, mode: str) -> DatasetSource:
    return DatasetSource(name, template.format(name=name), mode)


SOURCES = {
    **{
        name: _source(name, PIX2PIX_URL, "aligned")
        for name in ("facades", "edges2shoes", "maps", "night2day", "edges2handbags")
    },
    **{
        name: _source(name, CYCLEGAN_URL, "unaligned")
        for name in ("horse2zebra", "summer2winter_yosemite")
    },
}
MANUAL = ("cityscapes",)
KNOWN = tuple(SOURCES) + MANUAL

CITYSCAPES_NOTES = """\
cityscapes cannot be downloaded automatically: its licence requires a registered login at
https://www.cityscapes-dataset.com. To prepare it for pix2pix-style training:
  1. Log in, download gtFine_trainvaltest.zip (fine annotations) and
     leftImg8bit_trainvaltest.zip (photos), and unzip both.
  2. For every photo leftImg8bit/<phase>/<city>/<id>_leftImg8bit.png take its colour label map
     gtFine/<phase>/<city>/<id>_gtFine_color.png, resize both to 256x256 and paste them side by
     side (photo left = A, labels right = B) into one aligned 512x256 JPEG per pair (quality 100,
     no chroma subsampling), as the pix2pix script datasets/prepare_cityscapes_dataset.py does.
  3. Save the train phase as <target>/train/<i>.jpg and the val phase as <target>/test/<i>.jpg,
     where <target> is {target}
  4. Train labels -> photo with root=<target>, mode=aligned, direction=BtoA.
"""


class DownloadError(RuntimeError):
    """A dataset could not be fetched or unpacked; the message says how to get it by hand."""


class ManualDownloadRequired(DownloadError):
    """The dataset cannot be downloaded automatically (licence); the message holds the notes."""


def download_dataset(
    name: str,
    root: str | Path,
    *,
    timeout: float = 30.0,
    sha256: str | None = None,
    url: str | None = None,
    progress: bool = True,
) -> Path:
    """Download and extract dataset ``name`` into ``root/name`` and return that folder.

    A folder that already exists is returned untouched. ``timeout`` is the socket timeout in
    seconds, ``sha256`` an optional hex digest the archive must match, ``url`` overrides the
    official mirror (any URL urllib opens, including ``file://``).
    """
    target = Path(root) / name
    if name not in KNOWN:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN)}")
    if target.is_dir() and any(target.iterdir()):
        return target
    if name in MANUAL:
        raise ManualDownloadRequired(CITYSCAPES_NOTES.format(target=target))
    source = SOURCES[name]
    url = url or source.url
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / f"{name}.download"
        try:
            digest = _fetch(url, archive, timeout=timeout, progress=progress)
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(_offline_message(source, url, target, err)) from err
        if sha256 is not None and digest != sha256.lower():
            raise DownloadError(f"{name}: sha256 of {url} is {digest}, expected {sha256}")
        _extract_into(archive, Path(tmp) / "extracted", target)
    return target


def _offline_message(source: DatasetSource, url: str, target: Path, err: Exception) -> str:
    reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
    return (
        f"could not download dataset {source.name!r} from {url}: {reason}\n"
        f"To get it manually, download {url} on a machine with network access, extract it and "
        f"place the folder at {target} so that it holds {source.layout}"
    )


def _fetch(url: str, destination: Path, *, timeout: float, progress: bool) -> str:
    """Stream ``url`` into ``destination`` with a progress bar; return the sha256 hex digest."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, destination.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, disable=not progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _extract_into(archive: Path, scratch: Path, target: Path) -> None:
    """Unpack ``archive`` into ``scratch`` and rename its dataset folder to ``target``.

    Archives usually hold one top-level folder (``facades/``); that folder becomes ``target``.
    Otherwise the unpacked contents themselves do. Member paths cannot escape ``scratch``.
    """
    scratch.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(scratch)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(scratch, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as err:
        raise DownloadError(f"cannot extract {archive.name}: {err}") from err
    entries = [p for p in scratch.iterdir() if p.name != "__MACOSX"]
    content = entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    content.rename(target)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m gan_prune_env.data.download",
        description="Download a pix2pix / CycleGAN dataset into ROOT/NAME.",
        epilog=f"known datasets: {', '.join(KNOWN)}",
    )
    parser.add_argument("name", help="dataset name")
    parser.add_argument("--root", default="./datasets", help="parent folder (default ./datasets)")
    parser.add_argument("--sha256", default=None, help="expected sha256 of the archive")
    parser.add_argument("--timeout", type=float, default=30.0, help="socket timeout, seconds")
    parser.add_argument("--url", default=None, help="override the download URL (mirror)")
    args = parser.parse_args(argv)
    try:
        path = download_dataset(
            args.name, args.root, timeout=args.timeout, sha256=args.sha256, url=args.url
        )
    except ManualDownloadRequired as err:
        print(err)
        return 1
    except (ValueError, DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 1
    print(f"{args.name} is ready at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
