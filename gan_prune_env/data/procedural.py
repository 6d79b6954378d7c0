"""The built-in default paired task: procedural "label map -> photo" scenes, no files needed.

A scene is a flat-colour segmentation (background plus random rectangles, ellipses, stripes and
window grids from ``NUM_CLASSES`` classes). Its "photo" renders every class as a material with
its own colour and texture, adds soft shadows cast by shapes stacked on top of others, darkens
region borders, and lights the whole scene with a random gradient. The per-scene texture phase
and a little pixel noise keep the task from being a per-pixel colour lookup, while the mapping
stays simple enough for a small U-Net to learn in minutes. Everything is computed at
``crop_size`` resolution with vectorised numpy from a generator seeded by (seed, split, index).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gan_prune_env.data.base import PairDataset
from gan_prune_env.data.config import DataConfig
from gan_prune_env.data.transforms import hflip, to_tensor

EVAL_SIZE = 100
"""Number of items of every non-train procedural split."""
SPLITS = ("train", "val", "test")

Array = np.ndarray
Pattern = Callable[[Array, Array, Array], Array]
"""``(u, v, phase[2]) -> texture in [-1, 1]``; u, v are rotated coordinates in texture periods."""


def _stripes(u: Array, v: Array, phase: Array) -> Array:
    return np.sin(2 * np.pi * u + phase[0])


def _checker(u: Array, v: Array, phase: Array) -> Array:
    return np.tanh(4 * np.sin(2 * np.pi * u + phase[0]) * np.sin(2 * np.pi * v + phase[1]))


def _grain(u: Array, v: Array, phase: Array) -> Array:
    return np.sin(2 * np.pi * u + 1.5 * np.sin(0.5 * np.pi * v + phase[1]) + phase[0])


def _blotch(u: Array, v: Array, phase: Array) -> Array:
    return 0.5 * (np.sin(2 * np.pi * u + phase[0]) + np.sin(2 * np.pi * 1.7 * v + phase[1]))


@dataclass(frozen=True)
class Material:
    """How one class looks: label colour (uint8 RGB), photo colour (RGB in [0, 1]), texture.

    ``frequency`` is in texture periods per image width, ``angle`` in radians, ``contrast`` is the
    relative brightness swing of the texture.
    """

    name: str
    label: tuple[int, int, int]
    colour: tuple[float, float, float]
    pattern: Pattern
    frequency: float
    angle: float
    contrast: float


MATERIALS = (
    Material("wall", (0, 0, 170), (0.80, 0.74, 0.62), _blotch, 3.0, 0.3, 0.06),
    Material("brick", (200, 30, 30), (0.62, 0.26, 0.18), _checker, 10.0, 0.0, 0.25),
    Material("window", (0, 170, 255), (0.20, 0.27, 0.36), _stripes, 4.0, 0.8, 0.35),
    Material("wood", (255, 140, 0), (0.52, 0.34, 0.16), _grain, 14.0, np.pi / 2, 0.22),
    Material("foliage", (40, 190, 40), (0.22, 0.44, 0.16), _blotch, 12.0, 1.1, 0.35),
    Material("metal", (240, 230, 40), (0.62, 0.64, 0.66), _stripes, 24.0, 0.0, 0.12),
)
NUM_CLASSES = len(MATERIALS)
LABEL_PALETTE = np.array([m.label for m in MATERIALS], dtype=np.uint8)
PHOTO_COLOURS = np.array([m.colour for m in MATERIALS], dtype=np.float32)


# --- shapes: (rng, x[1, S], y[S, 1]) -> boolean mask [S, S]; coordinates are in [0, 1) ---------


def _rectangle(rng: np.random.Generator, x: Array, y: Array) -> Array:
    x0, y0 = rng.uniform(0.0, 0.8, size=2)
    w, h = rng.uniform(0.1, 0.5, size=2)
    return (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)


def _ellipse(rng: np.random.Generator, x: Array, y: Array) -> Array:
    cx, cy = rng.uniform(0.1, 0.9, size=2)
    rx, ry = rng.uniform(0.06, 0.3, size=2)
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _stripe(rng: np.random.Generator, x: Array, y: Array) -> Array:
    start, width = rng.uniform(0.0, 0.9), rng.uniform(0.05, 0.2)
    coord = x if rng.random() < 0.5 else y
    return np.broadcast_to((coord >= start) & (coord < start + width), (y.size, x.size))


def _window_grid(rng: np.random.Generator, x: Array, y: Array) -> Array:
    area = _rectangle(rng, x, y)
    period = rng.uniform(0.08, 0.2, size=2)
    fill = rng.uniform(0.45, 0.7, size=2)
    return area & ((x % period[0]) < fill[0] * period[0]) & ((y % period[1]) < fill[1] * period[1])


SHAPES = (_rectangle, _ellipse, _stripe, _window_grid)


# --- rendering ----------------------------------------------------------------------------------


def _box_blur(image: Array, radius: int) -> Array:
    """Separable mean filter over a (2r+1)^2 window, edges replicated; O(pixels) via cumsum."""
    width = 2 * radius + 1
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        csum = np.cumsum(np.pad(image, pad, mode="edge"), axis=axis, dtype=np.float32)
        upper = np.take(csum, np.arange(width, csum.shape[axis]), axis=axis)
        lower = np.take(csum, np.arange(0, csum.shape[axis] - width), axis=axis)
        image = (upper - lower) / width
    return image


def _shift_down_right(image: Array, pixels: int) -> Array:
    """``out[y, x] = image[y - d, x - d]`` with edge replication: light comes from the top left."""
    padded = np.pad(image, [(pixels, 0), (pixels, 0)], mode="edge")
    return padded[: image.shape[0], : image.shape[1]]


def sample_layout(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    """Random label map [S, S] (class ids, uint8) and stacking height map [S, S] (float32).

    Shapes are painted in order over the class-0 background; a shape's height is its paint order,
    so later shapes sit on (and cast shadows onto) earlier ones.
    """
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = coords[None, :], coords[:, None]
    labels = np.zeros((size, size), dtype=np.uint8)
    height = np.zeros((size, size), dtype=np.float32)
    for layer in range(1, int(rng.integers(3, 8)) + 1):
        mask = SHAPES[rng.integers(len(SHAPES))](rng, x, y)
        labels[mask] = rng.integers(1, NUM_CLASSES)
        height[mask] = layer
    return labels, height


def _texture(rng: np.random.Generator, labels: Array) -> Array:
    """Per-pixel texture value in [-1, 1] of each pixel's material, with random phases."""
    size = labels.shape[0]
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = coords[None, :], coords[:, None]
    texture = np.zeros(labels.shape, dtype=np.float32)
    phases = rng.uniform(0.0, 2 * np.pi, size=(NUM_CLASSES, 2)).astype(np.float32)
    for cls in np.unique(labels):
        material, where = MATERIALS[cls], labels == cls
        cos, sin = np.float32(np.cos(material.angle)), np.float32(np.sin(material.angle))
        u = (x * cos + y * sin) * material.frequency
        v = (y * cos - x * sin) * material.frequency
        texture[where] = material.pattern(u, v, phases[cls])[where]
    return texture


def _lighting(rng: np.random.Generator, labels: Array, height: Array) -> Array:
    """Brightness factor [S, S]: drop shadows, darkened region borders, global gradient."""
    size = labels.shape[0]
    radius = max(1, size // 40)
    cast = _box_blur(_shift_down_right(height, 2 * radius), radius)
    shadow = np.clip(cast - height, 0.0, 1.0)
    edges = np.zeros(labels.shape, dtype=np.float32)
    edges[:, 1:] += labels[:, 1:] != labels[:, :-1]
    edges[1:, :] += labels[1:, :] != labels[:-1, :]
    border = np.clip(_box_blur(edges, radius) * 2.0, 0.0, 1.0)
    coords = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.25)
    ramp_x, ramp_y = np.float32(strength * np.cos(angle)), np.float32(strength * np.sin(angle))
    gradient = ramp_x * coords[None, :] + ramp_y * coords[:, None]
    return (1.0 - 0.4 * shadow) * (1.0 - 0.25 * border) * (1.0 + gradient)


def render_scene(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    """One scene at ``size`` x ``size`` pixels: (label map, photo), both uint8 [S, S, 3] RGB."""
    labels, height = sample_layout(rng, size)
    contrast = np.array([m.contrast for m in MATERIALS], dtype=np.float32)[labels]
    shade = (1.0 + contrast * _texture(rng, labels)) * _lighting(rng, labels, height)
    photo = PHOTO_COLOURS[labels] * shade[..., None]
    photo += 0.02 * rng.standard_normal(size=photo.shape, dtype=np.float32)
    photo = np.clip(photo * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    return LABEL_PALETTE[labels], photo


def split_stream(split: str) -> int:
    """Stable 32-bit id of a split, so train and test scenes come from different seed streams."""
    return zlib.crc32(f"procedural/{split}".encode())


class ProceduralPairs(PairDataset):
    """Paired label map (A) -> photo (B) scenes generated on the fly at ``config.crop_size``.

    The scene of item ``i`` depends only on (``config.seed``, split, ``i``); the train split has
    ``config.procedural_size`` items and adds epoch-dependent horizontal flips when
    ``config.flip``; "val" and "test" have ``EVAL_SIZE`` items. ``load_size`` and ``preprocess``
    do not apply (scenes are drawn at the final size).
    """

    def __init__(self, split: str, config: DataConfig) -> None:
        if split not in SPLITS:
            raise ValueError(f"procedural dataset has splits {list(SPLITS)}, got {split!r}")
        if (config.input_nc, config.output_nc) != (3, 3):
            raise ValueError("the procedural dataset is RGB: it needs input_nc = output_nc = 3, "
                             f"got {config.input_nc} and {config.output_nc}")
        super().__init__(split, config)

    def _num_items(self) -> int:
        return self.config.procedural_size if self.train else EVAL_SIZE

    def _pair(
        self, index: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, str, str]:
        scene_rng = np.random.default_rng((self.config.seed, split_stream(self.split), index))
        label, photo = (to_tensor(im) for im in render_scene(scene_rng, self.config.crop_size))
        if self.train and self.config.flip and rng.random() < 0.5:
            label, photo = hflip(label), hflip(photo)
        path = f"procedural://{self.split}/{index}"
        return label, photo, path, path
