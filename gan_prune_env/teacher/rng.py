"""Global RNG seeding and capture, so an interrupted run resumes bit-for-bit.

Everything else in teacher training draws from its own seeded generator (weight init, data
augmentation, shuffling, image pools); only stochastic layers such as dropout use torch's
global generators, whose states go into train-state checkpoints.
"""

from __future__ import annotations

import torch


def seed_everything(seed: int) -> None:
    """Seed torch's CPU and CUDA generators."""
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, object]:
    """Global torch RNG states (CPU, and every CUDA device when CUDA is initialised)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def restore_rng_state(state: dict[str, object]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
