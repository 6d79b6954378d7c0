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
    input_nc: int = 3
    """Channels of the generator input ``sample["A"]`` (after ``direction``): 1 reads the files
    as grayscale (e.g. edge maps), 3 as RGB; must equal the generator's ``input_nc``."""
    output_nc: int = 3
    """Channels of the target ``sample["B"]``, as ``input_nc``."""
    eval_split: str | None = None
    """The held-out split that evaluates models (FID, the env's evaluation inputs, previews).
    ``None``: ``test`` where the dataset has it, else ``val`` (edges2shoes ships ``train/`` and
    ``val/`` only); see :func:`gan_prune_env.data.evaluation_split`."""

    @property
    def channels(self) -> dict[str, int]:
        """Channels of the dataset's native halves/domains ``A`` and ``B`` (before
        ``direction`` swaps them into generator input and target)."""
        swap = self.direction == "BtoA"
        return {"A": self.output_nc if swap else self.input_nc,
                "B": self.input_nc if swap else self.output_nc}

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_choice("direction", self.direction, DIRECTIONS)
        _check_choice("preprocess", self.preprocess, PREPROCESS)
        for name in ("load_size", "crop_size", "max_items", "procedural_size"):
            _check_positive(name, getattr(self, name))
        for name in ("input_nc", "output_nc"):
            if getattr(self, name) not in (1, 3):
                raise ValueError(f"{name} must be 1 (grayscale) or 3 (RGB) to be read from image "
                                 f"files, got {getattr(self, name)!r}")
        if self.eval_split is not None and (self.eval_split == "train" or not self.eval_split
                                            or "/" in self.eval_split):
            raise ValueError(f"eval_split must name a held-out split folder (e.g. test or val), "
                             f"got {self.eval_split!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.preprocess == "resize_and_crop" and self.crop_size > self.load_size:
            raise ValueError(
                f"crop_size ({self.crop_size}) must be <= load_size ({self.load_size}) "
                "when preprocess is 'resize_and_crop'"
            )
