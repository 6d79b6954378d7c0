"""``ansi`` and ``rgb_array`` renderings of the pruning game."""

from __future__ import annotations

import numpy as np
import torch

from gan_prune_env.envs.game import AGENTS, PruningGame, RoundResult


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] to ``[N, H, W, 3]`` uint8."""
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return array.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def image_grid(game: PruningGame, rows: int = 4) -> np.ndarray:
    """Rows of (input | teacher output | pruned output) for the first evaluation images."""
    batch = game.eval_batch
    rows = min(rows, batch.inputs.shape[0])
    columns = [to_uint8(batch.inputs[:rows]), to_uint8(batch.outputs[:rows]),
               to_uint8(game.student_outputs(rows))]
    return np.concatenate([np.concatenate(col, axis=0) for col in columns], axis=1)


def ansi_summary(game: PruningGame, result: RoundResult | None, round_index: int) -> str:
    """Per-group keep ratios of both networks and the last round's reward terms."""
    lines = [f"round {round_index}/{game.config.rounds}"]
    for agent in AGENTS:
        space = game.spaces[agent]
        counts = space.num_channels if result is None else result.counts[agent]
        ratio = 1.0 if result is None else result.compute_ratio[agent]
        lines.append(f"{agent}: kept MACs {ratio:.3f} of {space.full_macs / 1e6:.1f}M "
                     f"(budget {game.budget(agent):.3f})")
        for row in space.describe(counts):
            bar = "#" * int(round(row["ratio"] * 20))
            lines.append(f"  {row['group']:>2} {row['kind']:<14} {row['kept']:>4}/"
                         f"{row['channels']:<4} {bar}")
        if result is not None:
            terms = ", ".join(f"{k}={v:+.3f}" for k, v in result.reward_terms[agent].items())
            lines.append(f"  reward {result.rewards[agent]:+.4f} ({terms})")
    return "\n".join(lines) + "\n"
