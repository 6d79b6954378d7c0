"""Finding and decoding image files, with errors that name the offending path."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class ImageLoadError(OSError):
    """An image file exists but cannot be decoded (corrupt, truncated or not an image)."""


class EmptyFolderError(FileNotFoundError):
    """A dataset folder exists but holds no image files."""


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS and path.is_file()


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name so indices are reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if _is_image(p))
    if not files:
        raise EmptyFolderError(
            f"no image files ({', '.join(IMG_EXTENSIONS)}) found in image folder: {folder}"
        )
    return files


def check_image_files(files: list[Path]) -> None:
    """Raise ImageLoadError naming every file whose header does not parse (PNG: whose chunks
    fail their checksums too). Seconds for thousands of files, so a run checks all the files of
    its splits before it starts, instead of meeting a broken one in fine-tuning, after the
    search. Pixel data is decoded later (a JPEG cut short inside its pixels passes here)."""
    broken = []
    for path in files:
        try:
            with Image.open(path) as img:
                img.verify()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            broken.append(f"{path} ({err})")
    if broken:
        shown = "; ".join(broken[:5]) + (f"; and {len(broken) - 5} more" if len(broken) > 5
                                         else "")
        raise ImageLoadError(f"{len(broken)} of {len(files)} image files cannot be read: {shown}."
                             " Remove or replace them")


CHANNEL_MODES = {1: "L", 3: "RGB"}
"""PIL mode of a network input or output with this many channels."""


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Fully decode ``path`` as a ``channels``-channel image (1: grayscale, 3: RGB).

    As in the reference code, any file is converted: a colour image read for a 1-channel network
    becomes grayscale, a grayscale one read for a 3-channel network is replicated, an alpha
    channel is dropped. Decoding is forced here (``convert`` reads every pixel) so a truncated
    JPEG fails now, with its path in the message, instead of deep inside a DataLoader worker.
    """
    if channels not in CHANNEL_MODES:
        raise ValueError(f"images have 1 (grayscale) or 3 (RGB) channels; a network with "
                         f"{channels} input/output channels cannot be fed image files")
    try:
        with Image.open(path) as img:
            return img.convert(CHANNEL_MODES[channels])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageLoadError(f"cannot read image {path}: {err}") from err


def load_rgb(path: str | Path) -> Image.Image:
    """Fully decode ``path`` as RGB (see :func:`load_image`)."""
    return load_image(path, 3)
