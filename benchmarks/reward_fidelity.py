"""Reward fidelity: does the environment's reward rank architectures the way fine-tuning will?

What. For each (task, generator budget), ``--archs`` architecture pairs within both budgets (G at
the budget, D at the env's default budget 0.5), deterministic under ``--arch-seed``: the uniform
pair (``agents.budget.uniform_actions``) and random pairs drawn by the random-search baseline's
own sampler (``agents.baselines.RandomSearchAgent``: per-group keep ratios uniform in
``[min_keep, 1]``, projected onto the budget by ``agents.budget.fit_to_budget``). Each
architecture is

1. **scored by every reward mode** (the predictors, ``REWARD_MODES``; higher = predicted better,
   wall time of each evaluation recorded):

   * ``frozen``: the env's reward as an agent receives it: ``reset`` then one ``step`` of the
     PettingZoo env with the architecture's actions (teacher weights frozen, adaptive BN of the
     pruned G); the reward is ``r_G``, and ``L_G`` with its terms (adv, KDE, L1) and genD's side
     are recorded from ``info``;
   * ``distill_k``: "train a little, then look": ``--distill-steps`` (default 50) steps of the
     project's fine-tuning recipe (``finetune_pair``, ``FinetuneConfig(steps=k)``), then the
     student's L1 distance to the teacher's outputs on the env's 12 evaluation inputs (reward =
     -L1; PSNR to the teacher on them is recorded too); ``distill_k@300`` is the same at k = 300,
     recorded under its own name beside ``distill_k`` (how the ranking grows with k);
   * ``distill_fid@K``: the same first k steps of the recipe (its schedule cut to k), judged
     by the final metric instead of the L1: the real FID of the student on
     ``--slice-fid-images`` *training* images (the start of the final fine-tune, by the final
     metric);

   * ``supernet``: the ``frozen`` reward with the weights of the task's generator supernet
     (``gan_prune_env.supernet``, env option ``supernet``, file given by ``--supernet
     TASK=PATH``) instead of the teacher's: GAN Compression's way of scoring sub-networks;
     ``supernet_kde``: the same with the objective reduced to its local-density term
     (``compare.spec.DENSITY_ALONE``: no adversarial term, no L1 anchor; D plays no part);
     ``frozen_kde`` the same with the teacher's weights; ``supernet_full_d``: the
     ``supernet`` reward with G judged by the whole discriminator (genD's action at full
     width): what genD's pruning does to G's reward;

   * ``supernet_fid``: GAN Compression's own search metric: the architecture sliced from the
     supernet (BatchNorm re-estimated as the env does), not fine-tuned, scored by the real FID
     on ``--slice-fid-images`` images of the *training* split (the finals are measured on the
     test images; a predictor on them would share their sampling noise); a supernet trained
     with the adversarial term (``gan_prune_env.supernet``, ``gan_weight``) is GAN
     Compression's setting; ``frozen_fid``: the same slice from the teacher's weights;

   * ``frozen_pool``: the ``frozen`` reward with the density loss measured on more
     neighbourhoods (``--pool-eval-size`` test images as centers, default 96, against the env's
     12): whether the frozen reward's ranking is only the noise of a small pool;

   * ``balance``: no evaluation at all, how evenly G's groups keep their channels
     (``-log(max/min kept fraction)``): a hypothesis formed on arch seed 0's architectures,
     tested on fresh ones;

   a new predictor is one more ``REWARD_MODES`` entry, and a rerun with it scores only that
   mode on the architectures already finished (``--modes supernet --supernet default=PATH``);
2. **fine-tuned with the project's recipe** (``FinetuneConfig()`` defaults, ``--finetune-steps``
   steps, the comparison's ``finetune_sliced``) and **evaluated** with ``evaluate_generator`` and
   the real FID Inception (``--eval-images`` test images): FID, KID, PSNR, PSNR to the teacher.

``report`` gives, per (task, budget), the Spearman and Kendall (tau-b) rank correlations between
each mode's reward and each final metric, signed so that **positive = the reward ranks as
fine-tuning does** (higher reward with lower FID/KID, higher PSNR/PSNR-T), with 95% percentile
bootstrap intervals over architectures (1000 resamples, seed 0), and the median wall time of one
reward evaluation per mode.

Why. The search keeps the pair with the best reward, so the search is only as good as the
reward's ranking. The search's best frozen reward predicted final PSNR poorly (Spearman 0.28
on the default task at the 10% budget); this measures the reward's ranking on a controlled set
of architectures, against a cheap alternative, before any search is blamed or tuned.

Length check. Fine-tuning and evaluation are the cost: ``--check-steps S`` also fine-tunes the first
``--check-archs`` (default 4) architectures for S steps, and the report gives the rank
correlation of each final metric between S and ``--finetune-steps``; ``--check-only`` runs just
those architectures (their full-length results count for the main benchmark too). With 4
architectures a rank correlation takes only a few values: it flags a short recipe that reorders
architectures, it cannot certify one that does not.

Records. Every finished architecture is appended to ``reward_fidelity.jsonl`` at once (flushed,
fsynced), with the commit and the teacher's SHA-1. A rerun of the same command skips what is
finished; a new mode or a new fine-tuning length adds only what is missing. A finished
architecture under the same key (task, budget, arch seed, index) with another protocol (another
architecture, env configuration, teacher, seed, mode option, test-image count or recipe) is an
error: use another ``--results`` file to compare protocols.

Regenerate::

    python benchmarks/reward_fidelity.py run --budgets 0.1 --check-only --check-steps 150 \\
        --workers 2                                  # the length check, first
    python benchmarks/reward_fidelity.py run --tasks default --budgets 0.1 0.25 --workers 2
    python benchmarks/reward_fidelity.py report      # reward_fidelity.md + reward_fidelity.png

(the second command reuses the check's full-length results.)

More seeds for a few. ``--only 0 4 --seed 1 --results FILE`` fine-tunes just those architectures
of the plan (0 is the uniform one) under another seed: is the best one by a single fine-tune
better than uniform beyond the seed spread, or was it picked by noise?

Noise ceiling. The same plan under another fine-tuning seed, in its own results file, then the
report with ``--replica``: the rank correlation of the final metrics between the two seeds is
the most any reward can be expected to reach::

    python benchmarks/reward_fidelity.py run --budgets 0.1 --modes frozen --seed 1 \
        --results benchmarks/results/reward_fidelity_seed1.jsonl --no-report --workers 2
    python benchmarks/reward_fidelity.py report \
        --replica benchmarks/results/reward_fidelity_seed1.jsonl

Today's recipe. The committed ``reward_fidelity.jsonl`` and its seed-1 replica were fine-tuned
with the recipe of their time, towards the dataset's targets; the frontier's recipe now
distils towards the teacher's outputs (``FinetuneConfig.targets``), which is what "the final
model" means. The same plan under it, in its own results file (a finished architecture under
another recipe is an error, so the files cannot mix), then a second fine-tuning seed and the
report (``teacher_targets/today/reward_fidelity.md``)::

    python benchmarks/reward_fidelity.py run --budgets 0.1 --modes frozen distill_k balance \
        --results benchmarks/results/teacher_targets/reward_fidelity_today.jsonl --no-report
    python benchmarks/reward_fidelity.py run --budgets 0.1 --modes frozen --seed 1 \
        --results benchmarks/results/teacher_targets/reward_fidelity_today_seed1.jsonl --no-report
    python benchmarks/reward_fidelity.py run --budgets 0.1 --modes frozen_pool \
        --results benchmarks/results/teacher_targets/reward_fidelity_today.jsonl --no-report
    python benchmarks/reward_fidelity.py report \
        --results benchmarks/results/teacher_targets/reward_fidelity_today.jsonl \
        --out benchmarks/results/teacher_targets/today \
        --replica benchmarks/results/teacher_targets/reward_fidelity_today_seed1.jsonl

GAN Compression's way, on the same finished architectures (session 47): two supernets of 6000
steps, one distilled by L1 alone, one with the adversarial term as well, each scoring the 16
by the env's reward with its weights and by the FID of its slice (a supernet mode takes one
supernet file per results file, so the L1 supernet's scores go into a copy of the results)::

    python -m gan_prune_env.supernet --task default --out runs/supernets/default_l1 \\
        --set steps:6000 --set lr_decay_steps:3000 --resume
    python -m gan_prune_env.supernet --task default --out runs/supernets/default_gan \\
        --set steps:6000 --set lr_decay_steps:3000 --set gan_weight:0.01 --resume
    cp benchmarks/results/teacher_targets/reward_fidelity_today.jsonl \\
        benchmarks/results/teacher_targets/reward_fidelity_today_l1_supernet.jsonl  # first
    python benchmarks/reward_fidelity.py run --budgets 0.1 --modes supernet supernet_fid \\
        --supernet default=runs/supernets/default_l1/supernet.pt --no-report \\
        --results benchmarks/results/teacher_targets/reward_fidelity_today_l1_supernet.jsonl
    python benchmarks/reward_fidelity.py run --budgets 0.1 --modes frozen_fid supernet \\
        supernet_fid --supernet default=runs/supernets/default_gan/supernet.pt --no-report \\
        --results benchmarks/results/teacher_targets/reward_fidelity_today.jsonl

and the L1 supernet's slice FID on 400 training images, into a copy of the results without
the supernet scores (``reward_fidelity_today_l1_supernet_400.jsonl``)::

    python benchmarks/reward_fidelity.py run --budgets 0.1 --modes supernet_fid \\
        --slice-fid-images 400 --supernet default=runs/supernets/default_l1/supernet.pt \\
        --results benchmarks/results/teacher_targets/reward_fidelity_today_l1_supernet_400.jsonl

Session 48, on the same architectures: the first k steps of the recipe judged by FID
(``distill_fid``), and two more L1 supernets, one with the local-density term, one whose random
sub-networks are drawn around the 10% budget's width (each into its own copy of the results)::

    python benchmarks/reward_fidelity.py run --budgets 0.1 \\
        --modes distill_fid@300 distill_fid@1000 --workers 2 --no-report \\
        --results benchmarks/results/teacher_targets/reward_fidelity_today.jsonl
    python -m gan_prune_env.supernet --task default --out runs/supernets/default_density \\
        --set steps:6000 --set lr_decay_steps:3000 --set density_weight:1.0 --resume
    python -m gan_prune_env.supernet --task default --out runs/supernets/default_l1_focused \\
        --set steps:6000 --set lr_decay_steps:3000 --set "random_widths:[0.18, 0.32]" \\
        --set width_jitter:0.6 --resume
    python benchmarks/reward_fidelity.py run --budgets 0.1 --modes supernet supernet_fid \\
        --supernet default=runs/supernets/default_density/supernet.pt --no-report \\
        --results benchmarks/results/teacher_targets/reward_fidelity_today_density_supernet.jsonl
    python benchmarks/reward_fidelity.py run --budgets 0.1 --modes supernet supernet_fid \\
        --supernet default=runs/supernets/default_l1_focused/supernet.pt --no-report \\
        --results benchmarks/results/teacher_targets/reward_fidelity_today_focused_supernet.jsonl

(each of the last two files first made a copy of ``reward_fidelity_today.jsonl`` without its
supernet scores, which another supernet file may not overwrite)::

    python -c "import json, sys; [print(json.dumps({**r, 'scores': {m: v for m, v in \\
        r['scores'].items() if not m.startswith('supernet')}})) for r in map(json.loads, \\
        sys.stdin)]" < benchmarks/results/teacher_targets/reward_fidelity_today.jsonl \\
        > benchmarks/results/teacher_targets/reward_fidelity_today_density_supernet.jsonl

Fresh architectures (arch seed 1) under today's recipe, scored by the L1 supernet::

    python benchmarks/reward_fidelity.py run --budgets 0.1 --arch-seed 1 \\
        --modes frozen distill_k balance supernet_fid \\
        --supernet default=runs/supernets/default_l1/supernet.pt --no-report --workers 2 \\
        --results benchmarks/results/teacher_targets/reward_fidelity_today_archseed1.jsonl

Session 49, on both sets of architectures: the density term alone and G judged by the whole
D, with the L1 supernet (whose records they join: the same file), then with the focused one::

    python benchmarks/reward_fidelity.py run --budgets 0.1 \
        --modes supernet_kde frozen_kde supernet_full_d \
        --supernet default=runs/supernets/default_l1/supernet.pt --no-report \
        --results benchmarks/results/teacher_targets/reward_fidelity_today_l1_supernet.jsonl
    python benchmarks/reward_fidelity.py run --budgets 0.1 --arch-seed 1 \
        --modes supernet supernet_kde frozen_kde supernet_full_d \
        --supernet default=runs/supernets/default_l1/supernet.pt --no-report \
        --results benchmarks/results/teacher_targets/reward_fidelity_today_archseed1.jsonl

and the env's full reward with a critic supernet (``SupernetConfig.critic``: the same L1
generator supernet's weights, bit for bit, and a discriminator trained at every width), each set in a
copy of its results without supernet scores (the one-liner above)::

    python -m gan_prune_env.supernet --task default --out runs/supernets/default_l1_critic \
        --set steps:6000 --set lr_decay_steps:3000 --set critic:true --resume
    python benchmarks/reward_fidelity.py run --budgets 0.1 \
        --modes supernet supernet_kde supernet_full_d \
        --supernet default=runs/supernets/default_l1_critic/supernet.pt --no-report \
        --results benchmarks/results/teacher_targets/reward_fidelity_today_critic_supernet.jsonl
    (and --arch-seed 1 into reward_fidelity_today_archseed1_critic_supernet.jsonl)

Another recipe. ``--recipe KEY:VALUE`` changes the recipe of the final fine-tunes and of
``distill_k`` (``FinetuneConfig`` fields, checked before anything runs), recorded with each
architecture, so a file holds one recipe. Facades' fine-tunes at 128 px take over an hour of
one core in float32; ``--recipe autocast:bfloat16`` (the frontier's ``bfloat16`` variant) runs
them 2.2x faster on a CPU with native bfloat16::

    python benchmarks/reward_fidelity.py run --tasks facades --budgets 0.1 \
        --modes frozen distill_k balance --recipe autocast:bfloat16 --workers 2 \
        --results benchmarks/results/teacher_targets/reward_fidelity_facades_bfloat16.jsonl

Cost (default task, one torch thread per architecture, measured on the 2-core development
machine while another benchmark's two workers held both cores, load average ~2.7): the frozen
reward 0.1 s; ``distill_k`` (50 steps) ~4.5 s; the final fine-tune ~5.5 s per 100 steps (~35 s
at 600); evaluation ~0.28 s per test image (~28 s at 100), plus, once per worker, the teacher's
evaluation (~28 s) and, once per machine, the real images' Inception features (then cached).
About 70 s per architecture, evaluation nearly half of it (so a shorter final fine-tune saves
less than its step count suggests): the default run (2 budgets x 16 architectures) takes ~40 min
with one worker, ~20-25 min with ``--workers 2`` on an idle machine; the length check
above (4 architectures at 600 and at 150 steps) ~7 min.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import compare_methods
from compare.cells import (
    add_ray_argument, effective_recipe, env_kwargs, evaluate_sliced, fid_inception, file_sha1,
    finetune_sliced, git_commit, host_info, recipe_config, recipe_dict, run_pending,
)
from compare.spec import (
    DEFAULT_OUT, DENSITY_ALONE, ENV_ID, ROOT, TASKS, check_choices, rel_path, supernet_command,
)
from compare.plots import save_figure, subplots
from compare.store import append_record, check_one_teacher, read_records, same_teacher
from gan_prune_env.config import to_dict
from gan_prune_env.finetune import FinetuneConfig

RESULTS = "reward_fidelity.jsonl"
REPORT = "reward_fidelity.md"
PLOT = "reward_fidelity.png"
SUMMARY = "reward_fidelity.json"
BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0
# final metric, header, higher is better, display format, display scale
METRICS = (("fid", "FID", False, "{:.1f}", 1.0), ("kid", "KID x1e3", False, "{:.1f}", 1e3),
           ("psnr", "PSNR", True, "{:.2f}", 1.0), ("psnr_teacher", "PSNR-T", True, "{:.2f}", 1.0))
# env options that name files: the teacher's identity is its SHA-1, recorded separately
_ENV_PATHS = ("teacher", "supernet", "dataset")


# ----------------------------------------------------------------------------------------------
# rank correlations
# ----------------------------------------------------------------------------------------------
def rank_average(values) -> np.ndarray:
    """Ranks 1..n, tied values sharing their average rank (``scipy.stats.rankdata``'s default)."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def spearman(x, y) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks (NaN when either is constant)."""
    rx, ry = rank_average(x), rank_average(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else math.nan


def kendall(x, y) -> float:
    """Kendall's tau-b, (concordant - discordant) / sqrt(untied-in-x pairs * untied-in-y pairs)
    (NaN when either is constant)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    upper = np.triu_indices(len(x), 1)
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sy = np.sign(y[:, None] - y[None, :])[upper]
    denominator = math.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(sy)))
    return float((sx * sy).sum() / denominator) if denominator > 0 else math.nan


CORRELATIONS: dict[str, Callable[[Any, Any], float]] = {"spearman": spearman, "kendall": kendall}


def bootstrap_ci(x, y, statistic: Callable[[Any, Any], float], resamples: int = BOOTSTRAP,
                 seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over resamples of the (x, y) pairs with replacement;
    resamples where it is undefined (a constant side) are dropped. NaNs below 3 pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    values = np.array([statistic(x[i], y[i])
                       for i in rng.integers(0, len(x), size=(resamples, len(x)))])
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def fidelity(rewards, metric_values, higher_is_better: bool, resamples: int = BOOTSTRAP
             ) -> dict[str, Any]:
    """Rank correlations of ``rewards`` with a final metric, signed so that positive means the
    reward ranks as the metric does (higher reward with a better metric), with bootstrap CIs."""
    x = np.asarray(rewards, dtype=float)
    y = np.asarray(metric_values, dtype=float) * (1.0 if higher_is_better else -1.0)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    out: dict[str, Any] = {"n": len(x)}
    for name, fn in CORRELATIONS.items():
        out[name] = fn(x, y) if len(x) >= 2 else math.nan
        out[f"{name}_ci"] = list(bootstrap_ci(x, y, fn, resamples))
    return out


def paired_difference(rewards_a, rewards_b, metric_values, higher_is_better: bool,
                      resamples: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED,
                      level: float = 0.95) -> dict[str, Any]:
    """Spearman fidelity of reward A minus that of reward B on the same architectures, with a
    paired percentile bootstrap (both rewards resampled by the same architecture indices), so
    that "A ranks better than B" is judged on the difference, not on two overlapping CIs."""
    a, b = np.asarray(rewards_a, dtype=float), np.asarray(rewards_b, dtype=float)
    y = np.asarray(metric_values, dtype=float) * (1.0 if higher_is_better else -1.0)
    keep = ~(np.isnan(a) | np.isnan(b) | np.isnan(y))
    a, b, y = a[keep], b[keep], y[keep]
    out: dict[str, Any] = {"n": len(y), "diff": spearman(a, y) - spearman(b, y)
                           if len(y) >= 2 else math.nan, "ci": [math.nan, math.nan]}
    if len(y) >= 3:
        rng = np.random.default_rng(seed)
        values = np.array([spearman(a[i], y[i]) - spearman(b[i], y[i])
                           for i in rng.integers(0, len(y), size=(resamples, len(y)))])
        values = values[~np.isnan(values)]
        if len(values):
            tail = 100 * (1 - level) / 2
            out["ci"] = [float(np.percentile(values, tail)),
                         float(np.percentile(values, 100 - tail))]
    return out


# ----------------------------------------------------------------------------------------------
# the architectures
# ----------------------------------------------------------------------------------------------
def plan_architectures(env, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` distinct architecture pairs within both budgets: the uniform pair, then pairs of
    the random-search baseline's sampler seeded with ``seed`` (so the list is deterministic and
    a longer list starts with a shorter one). Each: origin, actions, kept channels and
    kept-MACs ratios (through the env's own action -> count path)."""
    from agents.base import SearchTracker
    from agents.baselines import RandomSearchAgent
    from agents.budget import achieved_compute, uniform_actions
    from gan_prune_env.envs import AGENTS

    game = env.game
    sampler = RandomSearchAgent(seed=seed)
    sampler.learn(env, 0, SearchTracker())  # binds its sampler to this env; plays no round
    archs: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    actions, origin, draws = uniform_actions(game), "uniform", 0
    while len(archs) < count:
        kept = kept_channels(game, actions)
        signature = tuple(tuple(kept[a]) for a in AGENTS)
        if signature not in seen:
            seen.add(signature)
            compute = {a: float(achieved_compute(game, a, actions[a])) for a in AGENTS}
            over = [a for a in AGENTS if compute[a] > game.budget(a) + 1e-9]
            if over:
                raise RuntimeError(f"architecture {len(archs)} exceeds the budget of {over}")
            archs.append({"origin": origin,
                          "actions": {a: np.asarray(actions[a], np.float32).tolist()
                                      for a in AGENTS},
                          "kept_channels": kept, "compute_ratio": compute})
        draws += 1
        if draws > 100 * count:
            raise RuntimeError(f"only {len(archs)} distinct architectures in {draws} draws")
        actions, origin = sampler.act({}), "random"
    return archs


def kept_channels(game, actions: dict[str, Any]) -> dict[str, list[int]]:
    """Kept channels per group of each network for env ``actions`` (the env's own action ->
    ratio -> count path)."""
    from gan_prune_env.envs import AGENTS, action_to_ratios

    return {a: game.ratio_counts(a, action_to_ratios(np.asarray(actions[a], np.float64),
                                                     game.config.min_keep)).tolist()
            for a in AGENTS}


def arch_key(task: str, budget: float, arch_seed: int, index: int) -> str:
    return f"{task}|{budget:g}|{arch_seed}|{index}"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def env_protocol(env) -> dict[str, Any]:
    return _jsonable({k: v for k, v in to_dict(env.config).items() if k not in _ENV_PATHS})


# ----------------------------------------------------------------------------------------------
# reward modes (predictors); every entry scores one architecture
# ----------------------------------------------------------------------------------------------
@dataclass
class Architecture:
    """One architecture pair inside a worker: the env that pays it, its actions, and its
    recorded env candidate (what ``slice_pair`` needs)."""

    spec: dict[str, Any]
    env: Any  # GANPruneParallelEnv
    actions: dict[str, np.ndarray]
    candidate: Any  # agents.base.Candidate

    @property
    def seed(self) -> int:
        return self.spec["seed"]

    def play(self) -> tuple[dict[str, float], dict[str, dict]]:
        """A fresh episode's first round with this architecture: (rewards, infos)."""
        self.env.reset(seed=self.seed)
        _, rewards, _, _, infos = self.env.step(self.actions)
        return rewards, infos

    def sliced(self):
        """A fresh physically sliced pair with the teacher's weights (``PrunedPair``)."""
        from agents.run.artifacts import slice_pair

        return slice_pair(self.env, self.candidate, "cpu")


def _env_reward(rewards: dict[str, float], infos: dict[str, dict]) -> dict[str, float]:
    """r_G as an agent receives it, with L_G, its terms and genD's side."""
    g, d = infos["generator"], infos["discriminator"]
    return {"reward": float(rewards["generator"]),
            **{k: float(v) for k, v in g["loss_terms"].items()},
            "reward_loss": float(g["reward_terms"]["loss"]),
            "reward_compute": float(g["reward_terms"]["compute"]),
            "g_loss_ref": float(g["reference_terms"]["g_loss"]),
            "reward_d": float(rewards["discriminator"]),
            **{k: float(v) for k, v in d["loss_terms"].items()}}


def score_frozen(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """The env's reward r_G as an agent receives it, with L_G, its terms and genD's side."""
    return _env_reward(*arch.play())


_VARIANT_ENVS: dict[str, Any] = {}  # per worker process: one env per set of env options


def _variant_env(arch: Architecture, changes: dict[str, Any]):
    """The env of ``arch`` with its options changed by ``changes`` (built once per worker and
    set of options)."""
    from gan_prune_env.envs import make_parallel_env

    kwargs = {**env_kwargs(arch.spec), **changes}
    key = json.dumps(kwargs, sort_keys=True)
    if key not in _VARIANT_ENVS:
        _VARIANT_ENVS[key] = make_parallel_env(ENV_ID, **kwargs)
    return _VARIANT_ENVS[key]


def _variant_reward(arch: Architecture, changes: dict[str, Any],
                    actions: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """The env's reward as ``frozen`` scores it, in an env whose options differ by
    ``changes`` (and for other ``actions`` than the architecture's, when given)."""
    env = _variant_env(arch, changes)
    env.reset(seed=arch.seed)
    _, rewards, _, _, infos = env.step(arch.actions if actions is None else actions)
    return _env_reward(rewards, infos)


def score_supernet(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """The env's reward with the generator supernet's weights (env option ``supernet``) instead
    of the teacher's; everything else as ``frozen``."""
    return _variant_reward(arch, {"supernet": str(ROOT / options["path"])})  # root-relative


def _density_alone(arch: Architecture) -> dict[str, Any]:
    """The env option that reduces ``arch``'s objective to its local-density term."""
    return {"objective": {**(env_kwargs(arch.spec).get("objective") or {}), **DENSITY_ALONE}}


def score_supernet_kde(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """The env's reward with the supernet's weights and the objective's local-density term
    alone (``DENSITY_ALONE``): ``-KL / KL_ref``, D plays no part."""
    return _variant_reward(arch, {"supernet": str(ROOT / options["path"]),
                                  **_density_alone(arch)})


def score_supernet_full_d(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """The env's reward with the supernet's weights, G's architecture judged by the *whole*
    discriminator (genD's action at full width; the G-alone ablation's D): how much of the
    ``supernet`` reward's ranking the pruned D costs."""
    whole_d = {**arch.actions, "discriminator": np.ones_like(arch.actions["discriminator"])}
    return _variant_reward(arch, {"supernet": str(ROOT / options["path"])}, whole_d)


def score_frozen_kde(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """``supernet_kde``'s reward with the teacher's weights: what the supernet adds."""
    return _variant_reward(arch, _density_alone(arch))


def _slice_fid(arch: Architecture, env, source: str, options: dict[str, Any]
               ) -> dict[str, float]:
    """The architecture sliced from ``source`` ("teacher" or "supernet", the weights ``env``
    scores with), not fine-tuned, scored by the pipeline screen's ``sliced_quality`` (real FID
    on ``options["images"]`` training images; the finals are the test images')."""
    from agents.run.artifacts import slice_pair
    from agents.run.screen import sliced_quality

    quality = sliced_quality(slice_pair(env, arch.candidate, "cpu", source), env,
                             options["images"], fid_inception(), "cpu")
    return {"reward": -quality["fid"], **quality}


def score_supernet_fid(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """GAN Compression's search metric: -FID of the architecture sliced from the supernet,
    with no fine-tune (``_slice_fid``)."""
    env = _variant_env(arch, {"supernet": str(ROOT / options["path"])})
    return _slice_fid(arch, env, "supernet", options)


def score_frozen_fid(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """-FID of the architecture sliced from the teacher, with no fine-tune (``_slice_fid``):
    what pruning alone leaves, judged by the final metric instead of the env's loss."""
    return _slice_fid(arch, arch.env, "teacher", options)


def score_frozen_pool(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """The env's reward with the density loss measured on ``eval_size`` neighbourhoods instead
    of the env's 12 (env option ``eval_size``, the test images each a center), everything
    else as ``frozen``: is the frozen reward's ranking only noise of a small pool?"""
    return _variant_reward(arch, {"eval_size": options["eval_size"]})


def score_distill(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """k steps of the fine-tuning recipe, then -L1 of the student's outputs to the teacher's on
    the env's evaluation inputs (PSNR to the teacher on them, images in [-1, 1], recorded too):
    the score of the pipeline's screen (``agents.run.screen``), computed by its code."""
    from agents.run.screen import distilled_agreement

    config = recipe_config(options["k"], options.get("recipe"))
    agreement = distilled_agreement(arch.sliced(), arch.env, config, arch.seed,
                                    Path(arch.spec["work_dir"]), "cpu")
    return {"reward": -agreement["l1_teacher"], **agreement}


def score_distill_fid(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """k steps of the fine-tuning recipe (its first steps, the schedule cut to k), then -FID on
    ``options["images"]`` training images: the final fine-tune's start judged by the final
    metric, computed by the pipeline screen's ``distilled_quality``."""
    from agents.run.screen import distilled_quality

    config = recipe_config(options["k"], options.get("recipe"))
    quality = distilled_quality(arch.sliced(), arch.env, config, arch.seed,
                                Path(arch.spec["work_dir"]), "cpu", options["images"],
                                fid_inception())
    return {"reward": -quality["fid"], **quality}


def score_balance(arch: Architecture, options: dict[str, Any]) -> dict[str, float]:
    """How evenly G's groups keep their channels, ``-log(max_g f_g / min_g f_g)`` over the kept
    fractions ``f_g`` (near 0 for the uniform architecture, whose counts are rounded; lower the
    more lopsided; no network runs). Chosen after seeing the 16 architectures of arch seed 0
    (of 7 architecture statistics tried there, the only one ranking their final FID above
    +0.5: +0.62). On fresh
    architectures (arch seed 1, 10 of 13) it ranks FID at +0.19 [-0.61, +0.85]: a selection
    effect, not a predictor."""
    space = arch.env.game.spaces["generator"]
    fractions = np.asarray(arch.candidate.kept_channels["generator"]) / space.num_channels
    return {"reward": -math.log(fractions.max() / fractions.min()),
            "min_fraction": float(fractions.min()), "max_fraction": float(fractions.max())}


@dataclass(frozen=True)
class RewardMode:
    """A predictor of an architecture's quality after fine-tuning. ``score(arch, options)``
    returns ``{"reward": higher = predicted better, ...recorded terms}``; ``options(args, task,
    steps)`` are its settings from the command line, stored with each score (another setting
    under the same key is another protocol). A mode with ``steps`` (``distill_k``) can also be
    asked for as ``NAME@STEPS``: the same predictor at another length, scored under that name
    beside the default one, so lengths are compared on the same architectures."""

    label: str
    score: Callable[[Architecture, dict[str, Any]], dict[str, float]]
    options: Callable[[argparse.Namespace, str, int | None], dict[str, Any]] = \
        lambda args, task, steps: {}
    takes_steps: bool = False


def reward_mode(name: str) -> tuple[RewardMode, int | None]:
    """The mode called ``name`` (``NAME`` or ``NAME@STEPS``) and its steps (None: the
    default); an unknown name or a bad length stops the run with what to write instead."""
    base, at, steps = name.partition("@")
    mode = REWARD_MODES.get(base)
    if mode is None:
        raise SystemExit(f"error: unknown mode {name!r}; choose from {list(REWARD_MODES)}")
    if not at:
        return mode, None
    if not mode.takes_steps:
        with_steps = [m for m, v in REWARD_MODES.items() if v.takes_steps]
        raise SystemExit(f"error: mode {name!r}: only {with_steps} take a length (NAME@STEPS)")
    if not steps.isdigit() or int(steps) < 1:
        raise SystemExit(f"error: mode {name!r}: the length after '@' must be a whole number "
                         f">= 1, e.g. {base}@300")
    return mode, int(steps)


def mode_label(name: str) -> str:
    """What mode ``name`` measures, for the report (a recorded name no longer known: itself)."""
    base, at, steps = name.partition("@")
    if base not in REWARD_MODES:
        return name
    return REWARD_MODES[base].label + (f" (k = {steps})" if at else "")


def distill_options(args: argparse.Namespace, task: str, steps: int | None) -> dict[str, Any]:
    """k, and the ``--recipe`` changes its k steps run with (only when there are any, so the
    records of the plain recipe keep their options)."""
    recipe = {"recipe": args.recipe} if args.recipe else {}
    return {"k": args.distill_steps if steps is None else steps, "images": "env eval pool",
            **recipe}


def supernet_options(args: argparse.Namespace, task: str, steps: int | None) -> dict[str, Any]:
    """The task's supernet file (``--supernet TASK=PATH``), by path and SHA-1."""
    path = args.supernets.get(task)
    if path is None:
        raise SystemExit(f"error: a supernet mode needs --supernet {task}=PATH "
                         f"(train one with `{supernet_command(task)}`)")
    return {"path": rel_path(Path(path)), "sha1": file_sha1(Path(path))}


def pool_options(args: argparse.Namespace, task: str, steps: int | None) -> dict[str, Any]:
    return {"eval_size": args.pool_eval_size}


def slice_fid_options(args: argparse.Namespace, task: str, steps: int | None) -> dict[str, Any]:
    """Which images score a slice's FID (``--slice-fid-images`` of the training split)."""
    from agents.run.screen import FID_SPLIT

    return {"split": FID_SPLIT, "images": args.slice_fid_images}


def distill_fid_options(args: argparse.Namespace, task: str, steps: int | None
                        ) -> dict[str, Any]:
    return {**distill_options(args, task, steps), **slice_fid_options(args, task, steps)}


def supernet_fid_options(args: argparse.Namespace, task: str, steps: int | None
                         ) -> dict[str, Any]:
    return {**supernet_options(args, task, steps), **slice_fid_options(args, task, steps)}


REWARD_MODES: dict[str, RewardMode] = {
    "frozen": RewardMode("env reward r_G (frozen weights, adaptive BN)", score_frozen),
    "frozen_pool": RewardMode("env reward r_G on more neighbourhoods (--pool-eval-size)",
                              score_frozen_pool, pool_options),
    "distill_k": RewardMode("-L1 to the teacher after k fine-tuning steps", score_distill,
                            distill_options, takes_steps=True),
    "distill_fid": RewardMode("-FID (train images) after k fine-tuning steps",
                              score_distill_fid, distill_fid_options, takes_steps=True),
    "supernet": RewardMode("env reward r_G with the supernet's weights (adaptive BN)",
                           score_supernet, supernet_options),
    "supernet_kde": RewardMode("env reward with the supernet's weights, the density term "
                               "alone (-KL / KL_ref)", score_supernet_kde,
                               supernet_options),
    "supernet_full_d": RewardMode("env reward r_G with the supernet's weights, G judged by "
                                  "the whole D", score_supernet_full_d, supernet_options),
    "frozen_kde": RewardMode("env reward, frozen weights, the density term alone",
                             score_frozen_kde),
    "supernet_fid": RewardMode("-FID (train images) of the slice from the supernet, no "
                               "fine-tune", score_supernet_fid, supernet_fid_options),
    "frozen_fid": RewardMode("-FID (train images) of the slice from the teacher, no fine-tune",
                             score_frozen_fid, slice_fid_options),
    "balance": RewardMode("-log(max / min kept fraction) of G's groups (no evaluation)",
                          score_balance),
}
DEFAULT_MODES = ("frozen", "distill_k")
"""Modes run when ``--modes`` is not given (``supernet`` needs a trained supernet file)."""


# ----------------------------------------------------------------------------------------------
# one architecture (the worker side)
# ----------------------------------------------------------------------------------------------
def run_architecture(spec: dict[str, Any]) -> dict[str, Any]:
    """Score ``spec``'s architecture with its modes and fine-tune + evaluate it at its lengths;
    returns the JSON record (only the parts this spec asked for)."""
    import torch

    from agents.base import Candidate
    from gan_prune_env.envs import make_parallel_env
    from gan_prune_env.tasks import teacher_path

    torch.set_num_threads(spec.get("threads", 1))
    started, load = time.time(), os.getloadavg()[0]
    torch.manual_seed(spec["seed"])
    np.random.seed(spec["seed"])
    env = make_parallel_env(ENV_ID, **env_kwargs(spec))
    task = env.game.task
    actions = {a: np.asarray(v, dtype=np.float32) for a, v in spec["actions"].items()}
    arch = Architecture(spec, env, actions, None)
    rewards, infos = arch.play()
    arch.candidate = Candidate.from_infos(0, infos, rewards)
    if arch.candidate.kept_channels != spec["kept_channels"]:
        raise RuntimeError(f"{spec['key']}: the env keeps {arch.candidate.kept_channels}, the "
                           f"plan {spec['kept_channels']}")

    scores = {}
    for mode, options in spec["modes"].items():
        t0 = time.perf_counter()
        result = reward_mode(mode)[0].score(arch, options)
        scores[mode] = {"options": options, **result, "wall_s": time.perf_counter() - t0}
    finals = {}
    for steps in spec["final_steps"]:
        pair = arch.sliced()
        config = recipe_config(steps, spec["recipe"])
        finetune_s = finetune_sliced(pair, env, config, spec["work_dir"], arch.seed)
        t0 = time.perf_counter()
        quality, teacher_quality = evaluate_sliced(pair, spec["task"], task,
                                                   spec["eval_images"])
        finals[str(steps)] = {"steps": steps, "eval_images": spec["eval_images"],
                              "finetune": recipe_dict(config), "quality": quality,
                              "teacher_quality": teacher_quality,
                              "timing_s": {"finetune": finetune_s,
                                           "evaluate": time.perf_counter() - t0}}
    return {
        "key": spec["key"], "task": spec["task"], "budget": spec["budget"],
        "arch_seed": spec["arch_seed"], "index": spec["index"], "seed": spec["seed"],
        "arch": {"origin": spec["origin"], "actions": spec["actions"],
                 "kept_channels": arch.candidate.kept_channels,
                 "compute_ratio": arch.candidate.compute_ratio,
                 "within_budget": arch.candidate.within_budget},
        "env": spec["env"], "scores": scores, "finals": finals,
        "timing_s": {"total": time.time() - started},
        "started_at": _dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "finished_at": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": host_info(load_avg_1m=load),
        "commit": git_commit(), "teacher_sha1": file_sha1(teacher_path(task)),
    }


# ----------------------------------------------------------------------------------------------
# run
# ----------------------------------------------------------------------------------------------
def merge_records(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per architecture key: the union of the scores and finals of its records."""
    merged: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["key"] not in merged:
            merged[record["key"]] = {**record, "scores": dict(record["scores"]),
                                     "finals": dict(record["finals"])}
        else:
            merged[record["key"]]["scores"].update(record["scores"])
            merged[record["key"]]["finals"].update(record["finals"])
    return merged


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every architecture's full cell, budgets in the given order, architectures in index order
    (a stopped run leaves the first budgets complete)."""
    import torch

    from gan_prune_env.envs import make_parallel_env
    from gan_prune_env.tasks import teacher_path

    torch.set_num_threads(1)
    count = min(args.check_archs, args.archs) if args.check_only else args.archs
    if any(not 0 <= i < count for i in args.only):
        raise SystemExit(f"error: --only {args.only}: this plan's architectures are 0 to "
                         f"{count - 1} (--archs, or --check-archs with --check-only)")
    cells = []
    for task in args.tasks:
        for budget in args.budgets:
            base = {"task": task, "budget": float(budget), "method": "random",
                    "teacher": args.teachers.get(task)}
            env = make_parallel_env(ENV_ID, **env_kwargs(base))
            modes = {}
            for name in args.modes:
                mode, steps = reward_mode(name)
                modes[name] = _jsonable(mode.options(args, task, steps))
            protocol = env_protocol(env)
            sha1 = file_sha1(teacher_path(env.game.task))
            for index, arch in enumerate(plan_architectures(env, count, args.arch_seed)):
                if args.only and index not in args.only:
                    continue
                lengths = [args.finetune_steps] + (list(args.check_steps)
                                                   if index < args.check_archs else [])
                cells.append({
                    **base, "method": arch["origin"], "arch_seed": args.arch_seed,
                    "index": index, "key": arch_key(task, budget, args.arch_seed, index),
                    "origin": arch["origin"], "actions": arch["actions"],
                    "kept_channels": arch["kept_channels"], "env": protocol,
                    "teacher_sha1": sha1, "seed": args.seed, "modes": modes,
                    "final_steps": list(dict.fromkeys(lengths)),
                    "eval_images": args.eval_images, "recipe": args.recipe,
                    "work_dir": str(args.work_dir), "threads": 1})
    return cells


def same_protocol(recorded: Any, asked: Any, defaults: dict[str, Any] | None = None) -> bool:
    """``recorded == asked``, where an option the record lacks counts as its default: an
    option added after the record was written, whose default keeps the behaviour it had (the
    env's ``evaluation``). Any other difference is a protocol change."""
    if defaults is None or not isinstance(recorded, dict) or not isinstance(asked, dict):
        return recorded == asked
    if set(recorded) - set(asked):
        return False
    return all(recorded[k] == v if k in recorded else defaults.get(k, _MISSING) == v
               for k, v in asked.items())


_MISSING = object()


def _env_defaults() -> dict[str, Any]:
    from gan_prune_env.envs import EnvConfig

    return _jsonable(to_dict(EnvConfig()))


def _protocol_error(key: str, what: str, recorded: Any, asked: Any) -> SystemExit:
    return SystemExit(f"error: {key} was run with {what} {recorded}, this run asks for {asked}; "
                      "use another --results file to compare protocols")


def missing_parts(cell: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any] | None:
    """``cell`` reduced to the modes and lengths ``record`` lacks (None: nothing left); a
    finished part of another protocol is an error."""
    if record is None:
        return cell
    key = cell["key"]
    for what, recorded, asked, defaults in (
            ("the architecture", record["arch"]["kept_channels"], cell["kept_channels"], None),
            ("env options", record["env"], cell["env"], _env_defaults()),
            ("fine-tuning seed", record["seed"], cell["seed"], None)):
        if not same_protocol(recorded, asked, defaults):
            raise _protocol_error(key, what, recorded, asked)
    if not same_teacher(record["teacher_sha1"], cell["teacher_sha1"]):
        raise _protocol_error(key, "teacher SHA-1", record["teacher_sha1"], cell["teacher_sha1"])
    for mode, options in cell["modes"].items():
        done = record["scores"].get(mode)
        if done is not None and done["options"] != options:
            raise _protocol_error(key, f"mode {mode} options", done["options"], options)
    for steps in cell["final_steps"]:
        done = record["finals"].get(str(steps))
        if done is None:
            continue
        if done["eval_images"] != cell["eval_images"]:
            raise _protocol_error(key, f"eval_images (at {steps} steps)", done["eval_images"],
                                  cell["eval_images"])
        recipe = recipe_dict(recipe_config(steps, cell["recipe"]))
        if effective_recipe(done["finetune"], cell["task"]) != \
                effective_recipe(recipe, cell["task"]):
            raise _protocol_error(key, f"the fine-tuning recipe (at {steps} steps)",
                                  done["finetune"], recipe)
    modes = {m: o for m, o in cell["modes"].items() if m not in record["scores"]}
    lengths = [s for s in cell["final_steps"] if str(s) not in record["finals"]]
    if not modes and not lengths:
        return None
    return {**cell, "modes": modes, "final_steps": lengths}


def command_run(args: argparse.Namespace) -> int:
    for mode in args.modes:
        reward_mode(mode)  # stops on an unknown mode, before any work
    check_choices("task", args.tasks, TASKS)
    if args.archs < 2 or args.finetune_steps < 1 or args.distill_steps < 1 \
            or args.eval_images < 2 or any(s < 1 for s in args.check_steps):
        raise SystemExit("error: need --archs >= 2, --eval-images >= 2, and --finetune-steps, "
                         "--distill-steps, --check-steps >= 1")
    if args.check_only and not args.check_steps:
        raise SystemExit("error: --check-only needs --check-steps")
    args.recipe = compare_methods.recipe_overrides(args.recipe)
    out = Path(args.out)
    results = Path(args.results) if args.results else out / RESULTS
    args.work_dir = Path(args.work_dir) if args.work_dir else out / ".reward_fidelity_work"
    data_root = compare_methods._data_root(args)
    args.teachers = compare_methods.task_teachers(args)
    args.supernets = {task: str(path.resolve()) for task, path in
                      compare_methods.task_paths(args.supernet, "--supernet").items()}
    missing = [str(p) for p in args.supernets.values() if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"error: --supernet file(s) not found: {missing}")

    records = read_records(results)
    done = merge_records(records)
    cells = plan(args)
    for task, sha1 in sorted({(c["task"], c["teacher_sha1"]) for c in cells}):
        check_one_teacher(results, task, sha1, records)
    todo = [c for c in (missing_parts(c, done.get(c["key"])) for c in cells) if c is not None]
    print(f"{len(cells)} architectures, {len(cells) - len(todo)} finished in {results}, "
          f"{len(todo)} to run with {args.workers} worker(s)", flush=True)
    began = time.perf_counter()
    finished = [0]

    def on_record(record: dict[str, Any]) -> None:
        append_record(results, record)
        finished[0] += 1
        print(f"[{time.perf_counter() - began:6.0f} s] {finished[0]}/{len(todo)} "
              f"{progress_line(record)}", flush=True)

    succeeded = run_pending(todo, args.workers, data_root, on_record, lambda c: c["key"],
                            args.work_dir, run_architecture, ray_address=args.ray)
    if not args.no_report and read_records(results):
        make_report([results], out)
    return 0 if succeeded else 1


def progress_line(record: dict[str, Any]) -> str:
    """One finished architecture in a line: its rewards and, per length, FID and PSNR-T."""
    parts = [f"{m} {s['reward']:+.4f} ({s['wall_s']:.1f} s)" for m, s in record["scores"].items()]
    for steps, final in record["finals"].items():
        q, t = final["quality"], final["timing_s"]
        parts.append(f"{steps} steps: FID {q.get('fid', math.nan):.1f}, PSNR-T "
                     f"{q['psnr_teacher']:.2f} (fine-tune {t['finetune']:.0f} s, eval "
                     f"{t['evaluate']:.0f} s)")
    ratio = record["arch"]["compute_ratio"]
    return (f"{record['key']} ({record['arch']['origin']}, G {ratio['generator']:.3f} / D "
            f"{ratio['discriminator']:.3f} kept MACs): " + "; ".join(parts))


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _fmt_corr(stats: dict[str, Any], name: str) -> str:
    value, (lo, hi) = stats[name], stats[f"{name}_ci"]
    if math.isnan(value):
        return "—"
    ci = f" [{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else ""
    return f"{value:+.2f}{ci}"


def _main_length(archs: list[dict[str, Any]]) -> int | None:
    """The fine-tuning length most architectures have (ties: the longest)."""
    counts: dict[int, int] = defaultdict(int)
    for r in archs:
        for steps in r["finals"]:
            counts[int(steps)] += 1
    return max(counts, key=lambda s: (counts[s], s)) if counts else None


def _metric(record: dict[str, Any], steps: int, metric: str) -> float:
    final = record["finals"].get(str(steps))
    return float(final["quality"].get(metric, math.nan)) if final else math.nan


def _distinct(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per architecture (several arch seeds all start with the uniform pair)."""
    seen, out = set(), []
    for r in sorted(records, key=lambda r: (r["arch_seed"], r["index"])):
        signature = json.dumps(r["arch"]["kept_channels"], sort_keys=True)
        if signature not in seen:
            seen.add(signature)
            out.append(r)
    return out


def group_stats(archs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fidelity of every mode against every metric at the main length, wall times, and the
    agreement of every pair of fine-tuning lengths."""
    length = _main_length(archs)
    modes = [m for m in list(REWARD_MODES) + sorted({m for r in archs for m in r["scores"]})
             if any(m in r["scores"] for r in archs)]
    modes = list(dict.fromkeys(modes))
    stats: dict[str, Any] = {"steps": length, "n_archs": len(archs), "fidelity": {},
                             "wall_s": {}, "lengths": {}}
    for mode in modes:
        scored = [r for r in archs if mode in r["scores"]]
        stats["wall_s"][mode] = {"median": float(np.median([r["scores"][mode]["wall_s"]
                                                            for r in scored])),
                                 "n": len(scored)}
        rewards = [r["scores"][mode]["reward"] for r in scored]
        stats["fidelity"][mode] = {
            metric: fidelity(rewards, [_metric(r, length, metric) for r in scored], higher)
            for metric, _, higher, _, _ in METRICS}
    stats["vs_frozen"] = {}
    for mode in modes:
        both = [r for r in archs if mode in r["scores"] and "frozen" in r["scores"]]
        if mode == "frozen" or len(both) < 3:
            continue
        stats["vs_frozen"][mode] = {
            metric: paired_difference([r["scores"][mode]["reward"] for r in both],
                                      [r["scores"]["frozen"]["reward"] for r in both],
                                      [_metric(r, length, metric) for r in both], higher)
            for metric, _, higher, _, _ in METRICS}
    lengths = sorted({int(s) for r in archs for s in r["finals"]})
    for i, short in enumerate(lengths):
        for long in lengths[i + 1:]:
            both = [r for r in archs if str(short) in r["finals"] and str(long) in r["finals"]]
            if len(both) >= 2:
                stats["lengths"][f"{short}|{long}"] = {
                    metric: fidelity([_metric(r, short, metric) for r in both],
                                     [_metric(r, long, metric) for r in both], True)
                    for metric, _, _, _, _ in METRICS}
    return stats


def _targets(final: dict[str, Any] | None) -> str:
    """What the final fine-tune distilled towards (``FinetuneConfig.targets``): the dataset's
    targets before session 19 made the teacher's outputs the recipe's default."""
    targets = final["finetune"].get("targets", "?") if final else "?"
    return "auto (the teacher's outputs on a paired task)" if targets == "auto" else targets


def _group_section(task: str, budget: float, archs: list[dict[str, Any]],
                   stats: dict[str, Any]) -> list[str]:
    length = stats["steps"]
    first = archs[0]
    final = next((r["finals"][str(length)] for r in archs if str(length) in r["finals"]), None)
    tq = final["teacher_quality"] if final else {}
    lines = [f"## Task `{task}`, G budget {budget:.0%}\n",
             (f"{len(archs)} architectures (arch seeds {sorted({r['arch_seed'] for r in archs})}; "
              f"D budget {first['env']['budget_d']:g}), final metrics after {length} fine-tuning "
              f"steps on {final['eval_images'] if final else '?'} test images; fine-tuning seed "
              f"{first['seed']}; the recipe's targets: {_targets(final)}. Teacher: FID "
              f"{tq.get('fid', math.nan):.1f}, KID x1e3 "
              f"{tq.get('kid', math.nan) * 1e3:.1f}, PSNR {tq.get('psnr', math.nan):.2f} dB. "
              f"Commits {sorted({r.get('commit', '?')[:12] for r in archs})}; teacher SHA-1 "
              f"{sorted({r.get('teacher_sha1', '?') for r in archs})}.\n"),
             ("**Fidelity**: rank correlation between the mode's reward and the final metric, "
              "signed so that **positive = the reward ranks architectures as fine-tuning does** "
              "(higher reward with lower FID / KID, higher PSNR / PSNR-T); 95% bootstrap "
              f"interval over architectures ({BOOTSTRAP} resamples, seed {BOOTSTRAP_SEED}).\n")]
    header = ["mode", "metric", "n", "Spearman fidelity [95% CI]", "Kendall fidelity [95% CI]"]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for mode, by_metric in stats["fidelity"].items():
        for metric, label, _, _, _ in METRICS:
            s = by_metric[metric]
            lines.append(f"| {mode} | {label} | {s['n']} | {_fmt_corr(s, 'spearman')} | "
                         f"{_fmt_corr(s, 'kendall')} |")
    if stats["vs_frozen"]:
        lines += ["", "**Against the env's reward**: Spearman fidelity of the mode minus that of "
                      "`frozen` on the same architectures, paired bootstrap 95% interval (> 0: "
                      "the mode ranks better).", "",
                  "| mode | " + " | ".join(label for _, label, _, _, _ in METRICS) + " |",
                  "|---" * (len(METRICS) + 1) + "|"]
        for mode, by_metric in stats["vs_frozen"].items():
            cells = [f"{d['diff']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]"
                     for d in (by_metric[m] for m, _, _, _, _ in METRICS)]
            lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += ["", "| mode | what | median s per reward evaluation | n |", "|---|---|---|---|"]
    for mode, wall in stats["wall_s"].items():
        label = mode_label(mode)
        lines.append(f"| {mode} | {label} | {wall['median']:.2f} | {wall['n']} |")
    finals = [r["finals"][str(length)] for r in archs if str(length) in r["finals"]]
    if finals:
        lines.append(f"\nFinal fine-tune ({length} steps): median "
                     f"{np.median([f['timing_s']['finetune'] for f in finals]):.0f} s; "
                     "evaluation median "
                     f"{np.median([f['timing_s']['evaluate'] for f in finals]):.0f} s per "
                     "architecture.")
    if stats["lengths"]:
        lines += ["", ("**Length check**: rank correlation of each final metric between a "
                       "short and a long fine-tune of the same architectures (+1: the short "
                       "recipe ranks them exactly as the long one).\n"),
                  "| short | long | metric | n | Spearman [95% CI] | Kendall [95% CI] |",
                  "|---|---|---|---|---|---|"]
        for pair, by_metric in stats["lengths"].items():
            short, long = pair.split("|")
            for metric, label, _, _, _ in METRICS:
                s = by_metric[metric]
                lines.append(f"| {short} | {long} | {label} | {s['n']} | "
                             f"{_fmt_corr(s, 'spearman')} | {_fmt_corr(s, 'kendall')} |")
    lines += _ceiling_lines(stats.get("noise_ceiling", []), length)
    lines += _seed_mean_lines(stats.get("seed_mean"))
    modes = list(stats["fidelity"])
    lines += ["", f"Architectures (final metrics after {length} steps):\n"]
    header = ["#", "origin", "G kept MACs", "D kept MACs"] + [f"reward {m}" for m in modes] + \
        [label for _, label, _, _, _ in METRICS]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for r in archs:
        row = [f"{r['arch_seed']}/{r['index']}", r["arch"]["origin"],
               f"{r['arch']['compute_ratio']['generator']:.3f}",
               f"{r['arch']['compute_ratio']['discriminator']:.3f}"]
        row += [f"{r['scores'][m]['reward']:+.4f}" if m in r["scores"] else "—" for m in modes]
        for metric, _, _, fmt, scale in METRICS:
            value = _metric(r, length, metric) * scale
            row.append("—" if math.isnan(value) else fmt.format(value))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def _replicated(archs: list[dict[str, Any]], replicas: list[dict[str, dict[str, Any]]],
                length: int) -> list[list[dict[str, Any]]]:
    """Per architecture of ``archs`` that every replica (the same plan under another
    fine-tuning seed) finished at ``length`` steps: its records, this run's first."""
    rows = []
    for record in archs:
        others = [replica.get(record["key"]) for replica in replicas]
        if any(o is None or str(length) not in o["finals"] for o in others):
            continue
        if any(o["arch"]["kept_channels"] != record["arch"]["kept_channels"] for o in others):
            raise SystemExit(f"error: {record['key']} is another architecture in the replica "
                             "results; a replica must rerun the same plan with another --seed")
        rows.append([record, *others])
    return rows


def seed_agreement(archs: list[dict[str, Any]], replica: dict[str, dict[str, Any]],
                   length: int) -> dict[str, Any] | None:
    """The noise ceiling: rank correlation ``r`` of each final metric between the fine-tuning
    seed of ``archs`` and another one (``replica``: the same architectures' records under that
    seed), at ``length`` steps. ``r`` is how well one fine-tune ranks the architectures as
    another does; a reward that knew each architecture's expected quality exactly would
    correlate with one fine-tune at about ``sqrt(r)`` (classical test theory: ``r`` is the
    reliability of one fine-tune; exact for Pearson correlations, a guide for ranks). None when
    fewer than 3 are shared."""
    pairs = _replicated(archs, [replica], length)
    if len(pairs) < 3:
        return None
    return {"seeds": [pairs[0][0]["seed"], pairs[0][1]["seed"]], "by_metric": {
        metric: fidelity([_metric(a, length, metric) for a, _ in pairs],
                         [_metric(b, length, metric) for _, b in pairs], True)
        for metric, _, _, _, _ in METRICS}}


def seed_mean_fidelity(archs: list[dict[str, Any]], replicas: list[dict[str, dict[str, Any]]],
                       length: int) -> dict[str, Any] | None:
    """Each mode's fidelity against the mean of each final metric over the fine-tuning seeds
    (this run's and every replica's): the architecture's expected quality, which is what a
    search should predict, measured with less fine-tuning noise than one seed. With agreement
    ``r`` between two seeds, the mean of ``k`` has reliability ``k r / (1 + (k - 1) r)``
    (Spearman-Brown), so an exact predictor would reach about its square root. None unless 3
    architectures have every seed."""
    if not replicas:
        return None
    rows = _replicated(archs, replicas, length)
    if len(rows) < 3:
        return None
    modes = [m for m in rows[0][0]["scores"] if all(m in row[0]["scores"] for row in rows)]
    means = {metric: [float(np.mean([_metric(r, length, metric) for r in row])) for row in rows]
             for metric, _, _, _, _ in METRICS}
    return {"seeds": [r["seed"] for r in rows[0]], "by_mode": {
        mode: {metric: fidelity([row[0]["scores"][mode]["reward"] for row in rows],
                                means[metric], higher)
               for metric, _, higher, _, _ in METRICS}
        for mode in modes}}


def _ceiling_lines(ceilings: list[dict[str, Any]], length: int) -> list[str]:
    if not ceilings:
        return []
    lines = ["", (f"**Noise ceiling**: rank correlation r of each final metric ({length} steps) "
                  "between two fine-tuning seeds of the same architectures: how well one "
                  "fine-tune ranks them as another does. A reward that knew each "
                  "architecture's expected quality exactly would correlate with one fine-tune "
                  "at about sqrt(r), and with the mean of two at about sqrt(2r / (1 + r)) "
                  "(classical test theory; exact for Pearson, a guide for ranks).\n"),
             "| seeds | metric | n | Spearman r [95% CI] | Kendall [95% CI] | "
             "exact predictor vs one seed / vs the mean of two |",
             "|---|---|---|---|---|---|"]
    for ceiling in ceilings:
        seeds = " vs ".join(map(str, ceiling["seeds"]))
        for metric, label, _, _, _ in METRICS:
            s = ceiling["by_metric"][metric]
            r = max(s["spearman"], 0.0)
            lines.append(f"| {seeds} | {label} | {s['n']} | {_fmt_corr(s, 'spearman')} | "
                         f"{_fmt_corr(s, 'kendall')} | {math.sqrt(r):.2f} / "
                         f"{math.sqrt(2 * r / (1 + r)):.2f} |")
    return lines


def _seed_mean_lines(stats: dict[str, Any] | None) -> list[str]:
    if not stats:
        return []
    seeds = ", ".join(map(str, stats["seeds"]))
    lines = ["", (f"**Fidelity against the seeds' mean**: the mode's reward against the mean "
                  f"of each final metric over fine-tuning seeds {seeds} (signed as above).\n"),
             "| mode | " + " | ".join(f"{label} Spearman [95% CI]"
                                     for _, label, _, _, _ in METRICS) + " |",
             "|---" * (len(METRICS) + 1) + "|"]
    for mode, by_metric in stats["by_mode"].items():
        lines.append(f"| {mode} | " + " | ".join(_fmt_corr(by_metric[m], "spearman")
                                                for m, _, _, _, _ in METRICS) + " |")
    return lines


def make_report(results: list[Path], out: Path, replicas: list[Path] | None = None) -> Path:
    """``reward_fidelity.md`` (per task and budget: the fidelity table, wall times, the length
    check, the noise ceiling from ``replicas``: results files of the same plans under other
    fine-tuning seeds, the architectures), ``reward_fidelity.json`` (the statistics) and the
    scatter plot. Several ``results`` files pool their architectures (e.g. two arch seeds:
    each architecture once), and the replicas' records are grouped by their fine-tuning seed,
    so one seed's replica may span several files."""
    records = [record for path in results for record in read_records(path)]
    if not records:
        raise SystemExit(f"error: no records in {', '.join(map(str, results))}")
    by_seed: dict[int, list[dict]] = defaultdict(list)
    for path in replicas or []:
        for record in read_records(path):
            by_seed[record["seed"]].append(record)
    replica_records = [merge_records(by_seed[seed]) for seed in sorted(by_seed)]
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for record in merge_records(records).values():
        groups[(record["task"], record["budget"])].append(record)
    sources = ", ".join(f"`{rel_path(path)}`" for path in results)
    lines = ["# Reward fidelity: does the env's reward rank architectures as fine-tuning does?\n",
             (f"From {sources}. What, why and how to regenerate: the docstring of "
              "`benchmarks/reward_fidelity.py`. FID/KID with the FID Inception (README, 'FID "
              f"and KID: the protocol'). Scatter plot: [{PLOT}]({PLOT}).\n")]
    summary, plotted = {}, {}
    for task, budget in sorted(groups, key=lambda k: (list(TASKS).index(k[0])
                                                      if k[0] in TASKS else 99, k[1])):
        archs = _distinct(groups[(task, budget)])
        stats = group_stats(archs)
        stats["noise_ceiling"] = [c for c in (seed_agreement(archs, replica, stats["steps"])
                                              for replica in replica_records) if c]
        stats["seed_mean"] = seed_mean_fidelity(archs, replica_records, stats["steps"])
        summary[f"{task}|{budget:g}"] = stats
        plotted[(task, budget)] = (archs, stats)
        lines += _group_section(task, budget, archs, stats)
    path = out / REPORT
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    (out / SUMMARY).write_text(json.dumps(summary, indent=1))
    _plot(plotted, out / PLOT)
    print(f"wrote {path} and {out / PLOT}", flush=True)
    return path


def _plot(groups: dict[tuple[str, float], tuple[list, dict]], path: Path) -> None:
    modes = list(dict.fromkeys(m for _, stats in groups.values() for m in stats["fidelity"]))
    fig, axes = subplots(1, max(len(modes), 1), figsize=(5 * max(len(modes), 1), 4),
                         squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for (task, budget), (archs, stats) in groups.items():
            scored = [r for r in archs if mode in r["scores"]]
            xs = [r["scores"][mode]["reward"] for r in scored]
            ys = [_metric(r, stats["steps"], "fid") for r in scored]
            if not scored:
                continue
            rho = stats["fidelity"][mode]["fid"]["spearman"]
            points = ax.scatter(xs, ys, label=f"{task} {budget:.0%}, {stats['steps']} steps "
                                              f"(fidelity {rho:+.2f})")
            uniform = [i for i, r in enumerate(scored) if r["arch"]["origin"] == "uniform"]
            if uniform:
                ax.scatter([xs[i] for i in uniform], [ys[i] for i in uniform], marker="*", s=160,
                           color=points.get_facecolor()[0], edgecolor="black")
        ax.set_xlabel(f"reward: {mode} (higher = predicted better)")
        ax.set_ylabel("final FID (lower is better)")
        ax.set_title(mode_label(mode), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Reward vs final FID per architecture (star: the uniform pair); "
                 "Spearman fidelity > 0 = the reward ranks as fine-tuning does", fontsize=9)
    save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="score, fine-tune and evaluate the architectures "
                                     "(resumable), then write the report")
    run.add_argument("--tasks", nargs="+", default=["default"], help=f"of {list(TASKS)}")
    run.add_argument("--budgets", nargs="+", type=float, default=[0.1, 0.25],
                     help="generator kept-MACs budgets (env budget_g); D at the env default")
    run.add_argument("--archs", type=int, default=16,
                     help="architectures per (task, budget): the uniform one + random ones")
    run.add_argument("--arch-seed", type=int, default=0, help="seed of the random architectures")
    run.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES),
                     help=f"reward modes to score, of {list(REWARD_MODES)} (default "
                          f"{list(DEFAULT_MODES)}); distill_k@STEPS: distill_k at another k")
    run.add_argument("--supernet", action="append", metavar="TASK=PATH",
                     help="a task's generator supernet, for the supernet mode")
    run.add_argument("--distill-steps", type=int, default=50,
                     help="k of the distill_k mode (fine-tuning steps before looking)")
    run.add_argument("--pool-eval-size", type=int, default=96,
                     help="neighbourhoods (test images as centers) of the frozen_pool mode")
    run.add_argument("--slice-fid-images", type=int, default=100,
                     help="training images of the supernet_fid and frozen_fid modes' FID")
    run.add_argument("--finetune-steps", type=int, default=FinetuneConfig().steps,
                     help="steps of the final fine-tune (default: the recipe's)")
    run.add_argument("--eval-images", type=int, default=100, help="test images (default 100)")
    run.add_argument("--recipe", nargs="+", default=None, metavar="KEY:VALUE",
                     help="changes to the fine-tuning recipe (FinetuneConfig fields) of the "
                          "final fine-tunes and distill_k, e.g. autocast:bfloat16 (facades' "
                          "fine-tunes 2.2x faster on a CPU with native bfloat16); a finished "
                          "architecture of another recipe is an error")
    run.add_argument("--seed", type=int, default=0, help="seed of every fine-tune")
    run.add_argument("--check-steps", nargs="+", type=int, default=[],
                     help="also fine-tune the first --check-archs architectures this many steps, "
                          "to check that a short final recipe ranks like the full one")
    run.add_argument("--check-archs", type=int, default=4,
                     help="architectures of the length check (default 4: the first ones)")
    run.add_argument("--check-only", action="store_true",
                     help="run only the first --check-archs architectures (needs --check-steps)")
    run.add_argument("--only", nargs="+", type=int, default=[], metavar="INDEX",
                     help="only these architectures of the plan (0 is the uniform one): more "
                          "fine-tuning seeds for a few, under --seed and another --results")
    run.add_argument("--workers", type=int, default=1,
                     help="architectures in parallel processes (1 torch thread each)")
    add_ray_argument(run)
    run.add_argument("--out", default=str(DEFAULT_OUT),
                     help=f"report folder (default {rel_path(DEFAULT_OUT)})")
    run.add_argument("--results", default=None, help=f"JSONL file (default OUT/{RESULTS})")
    run.add_argument("--work-dir", default=None, help="scratch folder for fine-tuning states")
    run.add_argument("--teacher", action="append", metavar="TASK=PATH",
                     help="teacher of a task that ships none (see compare_methods.py)")
    run.add_argument("--data-root", default=None,
                     help="folder holding facades/ (default $GAN_PRUNE_DATA)")
    run.add_argument("--no-report", action="store_true", help="skip the report at the end")
    rep = sub.add_parser("report", help="tables, statistics and plot from the JSONL")
    rep.add_argument("--out", default=str(DEFAULT_OUT))
    rep.add_argument("--results", nargs="+", default=None,
                     help=f"JSONL file(s) (default OUT/{RESULTS}); several pool their "
                          "architectures (each once), e.g. two arch seeds")
    rep.add_argument("--replica", action="append", default=[], metavar="JSONL",
                     help="results of the same plan under another fine-tuning seed (run with "
                          "--seed S --results JSONL): the noise ceiling; files of one seed "
                          "(one per pooled results file) form one replica")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "report":
        out = Path(args.out)
        make_report([Path(p) for p in args.results] if args.results else [out / RESULTS],
                    out, [Path(p) for p in args.replica])
        return 0
    return command_run(args)


if __name__ == "__main__":
    sys.exit(main())
