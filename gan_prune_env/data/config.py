"""Configuration of the image-to-image data pipeline."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("aligned", "unaligned")
DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS = ("resize_and_crop", "resize", "none")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class DataConfig:
    """Where the images come from and how they are turned into training tensors.

    Sizes are in pixels (square images). With the default ``resize_and_crop`` the train split is
    resized to ``load_size`` and randomly cropped to ``crop_size`` (the pix2pix "jitter"), while
    every other split is resized straight to ``crop_size``.
    """

    root: str | None = None
    """Dataset folder; ``None`` selects the built-in procedural label-map -> photo task."""
    mode: str = "aligned"
    """``"aligned"``: pix2pix A|B side-by-side pairs; ``"unaligned"``: CycleGAN trainA/trainB."""
    direction: str = "AtoB"
    """``"BtoA"`` swaps the domains so that ``sample["A"]`` is always the generator input."""
    load_size: int = 286
    """Train-time resize (pixels) before the random crop; only used by ``resize_and_crop``."""
    crop_size: int = 256
    """Network input size (pixels); also the procedural generation resolution."""
    flip: bool = True
    """Random horizontal flip on the train split."""
    preprocess: str = "resize_and_crop"
    """``"resize_and_crop"``, ``"resize"`` (to ``crop_size``) or ``"none"`` (native size)."""
    max_items: int | None = None
    """Cap on the number of items per split (quick experiments); ``None`` means all."""
    procedural_size: int = 1000
    """Number of items in the procedural train split (its test split always has 100)."""
    seed: int = 0
    """Non-negative seed of every random choice (crops, flips, unaligned pairing, scenes)."""

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_choice("direction", self.direction, DIRECTIONS)
        _check_choice("preprocess", self.preprocess, PREPROCESS)
        for name in ("load_size", "crop_size", "max_items", "procedural_size"):
            _check_positive(name, getattr(self, name))
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.preprocess == "resize_and_crop" and self.crop_size > self.load_size:
            raise ValueError(
                f"crop_size ({self.crop_size}) must be <= load_size ({self.load_size}) "
                "when preprocess is 'resize_and_crop'"
            )
