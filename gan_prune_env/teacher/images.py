"""Image grids for previews: columns of image batches in [-1, 1] -> one RGB image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def image_grid(columns: Sequence[torch.Tensor], padding: int = 2) -> torch.Tensor:
    """Lay out batches side by side: row i shows item i of every column.

    Args:
        columns: equally shaped ``[N, 3, H, W]`` tensors with values in [-1, 1]
            (e.g. input, output, target).
        padding: white border in pixels around each tile.

    Returns:
        ``[3, N * (H + 2p), len(columns) * (W + 2p)]`` float tensor in [0, 1].
    """
    tiles = torch.stack([c.detach().float().cpu() for c in columns], dim=1)  # [N, C, 3, H, W]
    tiles = F.pad((tiles + 1) / 2, (padding,) * 4, value=1.0).clamp(0, 1)
    n, c, ch, h, w = tiles.shape
    return tiles.permute(2, 0, 3, 1, 4).reshape(ch, n * h, c * w)


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write a ``[3, H, W]`` image in [0, 1] as an 8-bit PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(np.ascontiguousarray(array)).save(path)
    return path
