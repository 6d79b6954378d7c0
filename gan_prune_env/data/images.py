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
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if _is_image(p))
    if not files:
        raise EmptyFolderError(
            f"no image files ({', '.join(IMG_EXTENSIONS)}) found in dataset folder: {folder}"
        )
    return files


def load_rgb(path: str | Path) -> Image.Image:
    """Fully decode ``path`` as RGB.

    Decoding is forced here (``convert`` reads every pixel) so a truncated JPEG fails now, with
    its path in the message, instead of deep inside a DataLoader worker later.
    """
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageLoadError(f"cannot read image {path}: {err}") from err
