"""What a run writes to TensorBoard: per-round agent signals, architectures and image grids."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from agents.base import Candidate
from gan_prune_env.envs import AGENTS


class SearchLogger:
    """Tracker listener: rewards, loss terms, compute ratios, G/D balance and per-group ratios."""

    def __init__(self, writer: SummaryWriter) -> None:
        self.writer = writer

    def __call__(self, candidate: Candidate) -> None:
        step, w = candidate.round, self.writer
        w.add_scalar("search/failed_round", float(bool(candidate.error)), step)
        if candidate.error:
            w.add_text("search/errors", candidate.error, step)
            return
        for agent in AGENTS:
            w.add_scalar(f"reward/{agent}", candidate.rewards[agent], step)
            w.add_scalar(f"compute_ratio/{agent}", candidate.compute_ratio[agent], step)
            for name, value in candidate.loss_terms[agent].items():
                w.add_scalar(f"loss/{agent}/{name}", value, step)
            ratios = candidate.keep_ratios[agent]
            w.add_histogram(f"keep_ratio/{agent}", np.asarray(ratios), step)
            for g, ratio in enumerate(ratios):
                w.add_scalar(f"keep_ratio_{agent}/group_{g:02d}", ratio, step)
        g_loss = candidate.loss_terms["generator"]["g_adv"]
        d_loss = candidate.loss_terms["discriminator"]["d_loss"]
        w.add_scalars("balance/adversarial", {"G_adv": g_loss, "D": d_loss}, step)
        w.add_scalar("balance/within_budget", float(candidate.within_budget), step)


def architecture_markdown(candidate: Candidate, group_names: dict[str, list[str]]) -> str:
    """Markdown table of a found architecture (TensorBoard text and the README)."""
    lines = ["| network | group | layer | kept | ratio |", "|---|---|---|---|---|"]
    for agent in AGENTS:
        for g, (kept, ratio) in enumerate(zip(candidate.kept_channels[agent],
                                              candidate.keep_ratios[agent])):
            lines.append(f"| {agent} | {g} | `{group_names[agent][g]}` | {kept} | {ratio:.2f} |")
    lines.append(f"\nG reward {candidate.rewards['generator']:+.4f}, D reward "
                 f"{candidate.rewards['discriminator']:+.4f}; kept MACs G "
                 f"{candidate.compute_ratio['generator']:.3f}, D "
                 f"{candidate.compute_ratio['discriminator']:.3f}")
    return "\n".join(lines)


def add_image_grid(writer: SummaryWriter, tag: str, columns: list[torch.Tensor], step: int
                   ) -> None:
    """Rows of images side by side: e.g. (input | teacher | pruned), values in [-1, 1]."""
    rows = torch.cat([torch.cat(list(col), dim=1) for col in columns], dim=2)  # [3, N*H, k*W]
    writer.add_image(tag, (rows.clamp(-1, 1) + 1) / 2, step)
