"""Action checking and the map from ``Box(-1, 1)`` actions to keep ratios."""

from __future__ import annotations

import numpy as np


class ActionError(ValueError):
    """An action is malformed (wrong shape, NaN or infinite entries)."""


def validate_action(agent: str, action, num_groups: int) -> tuple[np.ndarray, list[int]]:
    """Return the action as float64 clipped to [-1, 1] and the indices that were clipped.

    NaN/inf, a wrong shape, or values that are not real numbers (booleans, complex numbers,
    strings, even numeric ones) raise ``ActionError`` naming the agent and the entry: silently
    converting them would hide a broken policy.
    """
    raw = np.asarray(action)
    items = list(action) if isinstance(action, (list, tuple)) else []
    odd = next((x for x in items if isinstance(x, (bool, np.bool_, complex, str, bytes))), None)
    if raw.dtype.kind not in "fiu" or odd is not None:
        found = type(odd).__name__ if odd is not None else f"dtype {raw.dtype}"
        raise ActionError(f"{agent}: action is not numeric (real numbers in [-1, 1]), got "
                          f"{found}: {action!r}")
    try:
        array = raw.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ActionError(f"{agent}: action is not numeric: {action!r}") from err
    if array.shape != (num_groups,):
        raise ActionError(f"{agent}: action has shape {array.shape}, expected ({num_groups},) "
                          f"(one value in [-1, 1] per channel group)")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        i = int(bad[0])
        raise ActionError(f"{agent}: action entry {i} is {array[i]} (NaN/inf); "
                          f"{bad.size} non-finite entries in all")
    clipped = np.flatnonzero((array < -1.0) | (array > 1.0)).tolist()
    return np.clip(array, -1.0, 1.0), clipped


def action_to_ratios(action: np.ndarray, min_keep: float) -> np.ndarray:
    """-1 -> ``min_keep``, +1 -> 1 (keep everything), linear in between."""
    return min_keep + (np.asarray(action) + 1.0) * 0.5 * (1.0 - min_keep)


def ratios_to_action(ratios: np.ndarray, min_keep: float) -> np.ndarray:
    """Inverse of ``action_to_ratios`` (for heuristics that think in ratios)."""
    if min_keep >= 1.0:
        return np.ones_like(np.asarray(ratios, dtype=np.float32))
    action = 2.0 * (np.asarray(ratios) - min_keep) / (1.0 - min_keep) - 1.0
    return np.clip(action, -1.0, 1.0).astype(np.float32)
