"""Screening: the search's candidates re-scored by a costlier predictor, the best one kept.

The env pays an architecture pair by the teacher's frozen weights: fast, and on the tasks
measured it ranks architectures unlike fine-tuning does (``docs/RESULTS.md``, reward
fidelity). A few hundred steps of the fine-tuning recipe itself rank them better where the
teacher's pixels decide the final FID (the wide teacher: Spearman +0.81 at 300 steps, the
env's reward -0.04). ``RunConfig.screen`` spends that cost between the search and the
fine-tune: the uniform pair and the search's best distinct pairs within budget are each sliced
from the teacher, fine-tuned for ``distill_steps`` steps of the run's recipe and scored by the
L1 between their outputs and the teacher's on the env's evaluation inputs; the lowest wins and
becomes ``best_architecture.json``. ``ScreenConfig.score: supernet_fid`` scores them instead as
GAN Compression's search does: each sliced from the env's supernet, not fine-tuned, by the
real FID on training images (:func:`sliced_quality`). The uniform pair is always screened, so
the run never fine-tunes a pair that the screen scored worse than uniform pruning.

Scores are written atomically after each candidate to ``RUN_DIR/screen/<protocol>.json``, the
protocol being a digest of what changes a score (steps, recipe, seed, env): a stopped run
resumes at the next candidate, and a run under another protocol scores afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from agents.base import Candidate, SearchTracker, run_rounds
from agents.budget import uniform_actions
from agents.run.artifacts import MAIN, PrunedPair, slice_pair
from agents.run.config import RunConfig
from agents.run.finetune_ranks import finetune_sliced_pair
from agents.run.run_folder import SCREEN_DIR
from agents.run.search import group_names, read_history, write_best
from agents.run.tensorboard import architecture_markdown
from gan_prune_env.atomic import write_atomically
from gan_prune_env.config import to_dict
from gan_prune_env.envs import AGENTS, GANPruneParallelEnv
from gan_prune_env.finetune import FinetuneConfig

UNIFORM_ROUND = -1
"""``round`` of the uniform pair when the search did not play it: not a search round."""
SCREEN_CADENCE = {"save_every": 100_000, "image_every": 0}
"""A screened pair's short fine-tune keeps no train state and draws no images: it is thrown
away once scored (a stopped one restarts; it is short)."""


class StaleScoresError(ValueError):
    """Scores given to :func:`screen` belong to other candidates than its search's."""


def screen_recipe(recipe: FinetuneConfig, steps: int) -> FinetuneConfig:
    """``recipe`` cut to ``steps`` steps (its schedule decays over them), without checkpoints."""
    return dataclasses.replace(recipe, steps=steps, **SCREEN_CADENCE)


def signature(candidate: Candidate) -> tuple[tuple[int, ...], ...]:
    """The pair's kept channel counts: what makes two candidates the same architecture."""
    return tuple(tuple(candidate.kept_channels[a]) for a in AGENTS)


def uniform_candidate(env: GANPruneParallelEnv, seed: int) -> Candidate:
    """The uniform pair as the env pays it on a fresh episode's first round."""
    tracker = SearchTracker()
    run_rounds(env, lambda observations: uniform_actions(env.game), 1, tracker, seed=seed)
    return dataclasses.replace(tracker.history[0], round=UNIFORM_ROUND)


def candidates_to_screen(history: list[Candidate], uniform: Candidate, count: int
                         ) -> list[Candidate]:
    """The uniform pair, then the search's ``count - 1`` highest-G-reward distinct pairs
    within both budgets (earlier rounds first on ties); fewer when the search found fewer."""
    feasible = sorted((c for c in history if c.within_budget and not c.error),
                      key=lambda c: (-c.rewards["generator"], c.round))
    chosen = {signature(uniform): uniform}
    for candidate in feasible:
        if len(chosen) == count:
            break
        chosen.setdefault(signature(candidate), candidate)
    return list(chosen.values())


def teacher_agreement(generator: torch.nn.Module, env: GANPruneParallelEnv) -> dict[str, float]:
    """L1 and PSNR (images in [-1, 1]) of ``generator``'s outputs to the teacher's on the env's
    evaluation inputs."""
    batch = env.game.eval_batch
    with torch.no_grad():
        diff = generator.eval()(batch.inputs) - batch.outputs
    mse = float(diff.pow(2).mean())
    return {"l1_teacher": float(diff.abs().mean()),
            "psnr_teacher": 10 * math.log10(4.0 / mse) if mse > 0 else math.inf}


def short_finetune(pair: PrunedPair, env: GANPruneParallelEnv, recipe: FinetuneConfig,
                   seed: int, work_dir: Path, device: str) -> torch.nn.Module:
    """``pair`` fine-tuned in place by ``recipe`` (the screen's few steps), in a scratch folder
    under ``work_dir`` removed afterwards; returns its main G."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="distill_", dir=work_dir) as scratch:
        finetune_sliced_pair(pair, env, recipe, Path(scratch), seed, device, progress=False)
    return pair.networks[MAIN[pair.family][0]]


def distilled_agreement(pair: PrunedPair, env: GANPruneParallelEnv, recipe: FinetuneConfig,
                        seed: int, work_dir: Path, device: str) -> dict[str, float]:
    """:func:`teacher_agreement` of ``pair``'s G after :func:`short_finetune`: the ``distill``
    screen's score, and the reward fidelity benchmark's ``distill_k``."""
    return teacher_agreement(short_finetune(pair, env, recipe, seed, work_dir, device), env)


SCORE_KEYS = {"distill": "l1_teacher", "supernet_fid": "fid", "distill_fid": "fid"}
"""The measurement each screen score ranks by, lowest first."""
FID_SPLIT = "train"
"""The split the FID scores rank on: the final metrics are the test split's, and a screen
scored on those images would share their sampling noise."""


def generator_quality(generator: torch.nn.Module, pair: PrunedPair, env: GANPruneParallelEnv,
                      images: int, fid_weights, device: str) -> dict[str, float]:
    """The evaluation protocol (real FID, KID, PSNR to the targets and to the teacher) of
    ``generator``, one of ``pair``'s, on the first ``images`` images of :data:`FID_SPLIT`."""
    from gan_prune_env.evaluation import evaluate_generator

    task = env.game.task
    quality = evaluate_generator(
        generator, task.data, task.family, FID_SPLIT, teacher=pair.teacher[MAIN[task.family][0]],
        device=device, max_images=images, progress=False, fid_weights=fid_weights)
    return {k: float(quality[k]) for k in ("fid", "kid", "psnr", "psnr_teacher")}


def sliced_quality(pair: PrunedPair, env: GANPruneParallelEnv, images: int, fid_weights,
                   device: str) -> dict[str, float]:
    """:func:`generator_quality` of ``pair``'s G as sliced, BatchNorm re-estimated on the env's
    calibration images as the env scores a pruned G: the ``supernet_fid`` screen's score
    (from the supernet's weights), and the reward-fidelity benchmark's ``supernet_fid`` and
    ``frozen_fid``."""
    from agents.run.artifacts import recalibrated_generator

    return generator_quality(recalibrated_generator(pair, env), pair, env, images, fid_weights,
                             device)


def distilled_quality(pair: PrunedPair, env: GANPruneParallelEnv, recipe: FinetuneConfig,
                      seed: int, work_dir: Path, device: str, images: int, fid_weights
                      ) -> dict[str, float]:
    """:func:`generator_quality` of ``pair``'s G after :func:`short_finetune` (its BatchNorm
    statistics the fine-tune's, as the final model is evaluated): the start of the final
    fine-tune judged by the final metric, the ``distill_fid`` screen's score and the
    reward-fidelity benchmark's ``distill_fid``."""
    generator = short_finetune(pair, env, recipe, seed, work_dir, device)
    return generator_quality(generator, pair, env, images, fid_weights, device)


def protocol(config: RunConfig) -> dict[str, Any]:
    """What a screen score depends on besides the architecture (``score`` only when not the
    first screen's, so the files of distillation screens keep their names)."""
    scored = config.screen.score
    return {"distill_steps": config.screen.distill_steps, "seed": config.search.seed,
            "recipe": to_dict(screen_recipe(config.finetune, config.screen.distill_steps)),
            "slice_from": config.slice_from, "env": config.env, "env_kwargs": config.env_kwargs,
            **({"score": scored, "fid_images": config.screen.fid_images}
               if scored != "distill" else {})}


def screen(env: GANPruneParallelEnv, history: list[Candidate], count: int,
           recipe: FinetuneConfig, seed: int, work_dir: Path, *, device: str = "cpu",
           slice_from: str = "teacher", score: str = "distill", fid_images: int = 100,
           scores: list[dict[str, Any]] | None = None,
           on_score: Callable[[list[dict[str, Any]]], None] | None = None,
           progress: bool = False) -> tuple[Candidate, list[dict[str, Any]]]:
    """Screen ``history``'s candidates (:func:`candidates_to_screen`, ``count`` of them) by
    ``score``: ``distill``, :func:`distilled_agreement` after ``recipe`` of the pair sliced
    from ``slice_from``; ``distill_fid``, :func:`distilled_quality` on ``fid_images`` images
    of that pair after ``recipe``; ``supernet_fid``, :func:`sliced_quality` on ``fid_images``
    images of the pair sliced from the env's supernet. Return the pair with the lowest
    :data:`SCORE_KEYS` measurement and every score, in screening order. ``scores`` already
    measured are kept (a resumed screen starts after them); ``on_score(scores)`` is called
    after each new one."""
    if score not in SCORE_KEYS:
        raise ValueError(f"score must be one of {tuple(SCORE_KEYS)}, got {score!r}")
    fid_weights = None
    if SCORE_KEYS[score] == "fid":
        from gan_prune_env.evaluation import load_fid_inception

        fid_weights = load_fid_inception()
    scores = list(scores or [])
    todo = candidates_to_screen(history, uniform_candidate(env, seed), count)
    for candidate, measured in zip(todo, scores):
        if measured["kept_channels"] != candidate.kept_channels:
            raise StaleScoresError("the scores given are of other candidates than this "
                                   "search's")
    for candidate in tqdm(todo[len(scores):], desc="screen", initial=len(scores),
                          total=len(todo), disable=not progress, dynamic_ncols=True):
        started = time.perf_counter()
        if score == "supernet_fid":
            measured = sliced_quality(slice_pair(env, candidate, device, "supernet"), env,
                                      fid_images, fid_weights, device)
        elif score == "distill_fid":
            measured = distilled_quality(slice_pair(env, candidate, device, slice_from), env,
                                         recipe, seed, work_dir, device, fid_images, fid_weights)
        else:
            measured = distilled_agreement(slice_pair(env, candidate, device, slice_from), env,
                                           recipe, seed, work_dir, device)
        scores.append({"round": candidate.round, "kept_channels": candidate.kept_channels,
                       **measured, "seconds": time.perf_counter() - started})
        if on_score is not None:
            on_score(scores)
    key = SCORE_KEYS[score]
    return todo[min(range(len(todo)), key=lambda i: scores[i][key])], scores


def run_screen(config: RunConfig, env: GANPruneParallelEnv, run_dir: Path,
               writer: SummaryWriter) -> Candidate:
    """The run's screen of its finished search (resuming from its scores file): the winner
    becomes the run's ``best_architecture.json`` and is returned."""
    settings, path = protocol(config), screen_file(run_dir, config)

    def keep(scores: list[dict[str, Any]]) -> None:
        _save(path, settings, scores)
        for name in (SCORE_KEYS[config.screen.score], "psnr_teacher"):
            writer.add_scalar(f"screen/{name}", scores[-1][name], len(scores) - 1)

    try:
        pick, _ = screen(env, read_history(run_dir), config.screen.candidates,
                         screen_recipe(config.finetune, config.screen.distill_steps),
                         config.search.seed, run_dir / SCREEN_DIR, device=config.device,
                         slice_from=config.slice_from, score=config.screen.score,
                         fid_images=config.screen.fid_images,
                         scores=read_screen(run_dir, config), on_score=keep,
                         progress=config.progress)
    except StaleScoresError as err:
        raise RuntimeError(f"{path}: {err} (remove it to screen again)") from err
    names = group_names(env)
    writer.add_text("screen/pick", architecture_markdown(pick, names))
    write_best(run_dir, pick, names)
    return pick


def screen_file(run_dir: Path, config: RunConfig) -> Path:
    """Where the run's scores under its config's :func:`protocol` are kept."""
    digest = hashlib.sha1(json.dumps(protocol(config), sort_keys=True).encode()).hexdigest()
    return run_dir / SCREEN_DIR / f"{digest[:12]}.json"


def read_screen(run_dir: Path, config: RunConfig) -> list[dict[str, Any]]:
    """The run's screen scores under its config, in screening order (empty if none)."""
    path = screen_file(run_dir, config)
    return json.loads(path.read_text())["scores"] if path.is_file() else []


def _save(path: Path, settings: dict[str, Any], scores: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"protocol": settings, "scores": scores}, indent=1)
    write_atomically(path, lambda handle: handle.write(text.encode()))
