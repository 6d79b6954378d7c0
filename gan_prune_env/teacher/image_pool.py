"""History of generated images for the discriminator updates (Shrivastava et al., 2017).

Same policy as the reference ``ImagePool``: until the pool is full every image is stored and
returned; afterwards each image is, with probability 1/2, swapped for a random stored one. The
randomness comes from the pool's own seeded generator, and :meth:`state_dict` captures it along
with the stored images, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import torch


class ImagePool:
    """Buffer of up to ``size`` previously generated images; ``size=0`` disables it."""

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same shape mixing ``images`` with stored ones (detached)."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator) > 0.5:
                index = int(torch.randint(0, self.size, (), generator=self.generator))
                out.append(self.images[index].to(image.device))
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        return {"images": [im.cpu() for im in self.images], "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.images = [im.clone() for im in state["images"]]
        self.generator.set_state(state["rng"])
