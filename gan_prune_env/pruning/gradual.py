"""Gradual pruning: nested architectures that narrow a teacher to a found one in stages.

One-shot slicing to a few percent of a network's MACs throws most of the teacher's function away
at once; pruning in stages, with training between them (Zhu & Gupta 2017, "To prune, or not to
prune"), lets the surviving channels take over the work of the removed ones a little at a time.
The fine-tuning recipe (``FinetuneConfig.prune_stages``) trains through these architectures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from gan_prune_env.pruning.importance import Importance
from gan_prune_env.pruning.space import ChannelSpace

Kept = dict[str, list[int]]


def gradual_architectures(model: nn.Module, example_input: torch.Tensor,
                          final: Mapping[str, Sequence[int]], stages: int,
                          importance: Importance | None = None) -> list[Kept]:
    """``stages`` nested architectures of ``model``, widest first; the last is ``final``.

    A group of ``C`` channels of which ``final`` keeps ``k`` keeps ``round(C * (k / C) ** (s /
    stages))`` at stage ``s``: equal ratios between consecutive stages, so every stage removes
    the same share of the channels it was given. The channels a wider stage adds to ``final``'s
    are the best ranked (by ``importance``, default L1 of the producing filters) of those
    ``final`` drops, so each stage holds the next one and ``final`` whatever ``final``'s own
    ranking was. Groups ``final`` does not name stay whole, as they do in ``final``.
    """
    if stages < 1:
        raise ValueError(f"stages must be >= 1, got {stages}")
    groups = {g.name: g for g in ChannelSpace(model, example_input[:1], importance).groups}
    unknown = sorted(set(final) - set(groups))
    if unknown:
        raise KeyError(f"architecture names groups {unknown} that the model does not have "
                       f"(its groups: {sorted(groups)})")
    plans: list[Kept] = [{} for _ in range(stages)]
    for name, keep in final.items():
        group, keep_set = groups[name], {int(i) for i in keep}
        dropped = [int(i) for i in group.ranking.tolist() if int(i) not in keep_set]
        for stage in range(1, stages + 1):
            ratio = (len(keep_set) / group.num_channels) ** (stage / stages)
            extra = max(0, round(group.num_channels * ratio) - len(keep_set))
            plans[stage - 1][name] = sorted(keep_set.union(dropped[:extra]))
    return plans


def relative_indices(outer: Mapping[str, Sequence[int]], inner: Mapping[str, Sequence[int]]
                     ) -> Kept:
    """``inner``'s channels as positions in ``outer``'s: the indices that slice a network
    already sliced to ``outer`` down to ``inner`` (slicing keeps the remaining channels in
    order). ``inner`` must keep a subset of ``outer`` in every group it names."""
    positions = {}
    for name, keep in inner.items():
        where = {int(c): i for i, c in enumerate(outer[name])}
        missing = sorted(set(int(c) for c in keep) - set(where))
        if missing:
            raise ValueError(f"group {name!r}: channels {missing[:5]} are not kept by the wider "
                             "architecture")
        positions[name] = sorted(where[int(c)] for c in keep)
    return positions


__all__ = ["gradual_architectures", "relative_indices"]
