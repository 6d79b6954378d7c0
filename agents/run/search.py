"""The search phase: an agent explores the env, its progress saved in chunks for resumption."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from agents import AGENT_CLASSES
from agents.base import Candidate, PruningAgent, SearchTracker, load_agent_state
from agents.run.config import RunConfig
from agents.run.run_folder import SEARCH_DIR
from agents.run.tensorboard import SearchLogger, add_image_grid, architecture_markdown
from gan_prune_env.atomic import write_atomically
from gan_prune_env.checkpoint import CheckpointError, save_checkpoint
from gan_prune_env.config import ConfigError
from gan_prune_env.envs import AGENTS, GANPruneParallelEnv

TRACKER_FILE = "tracker.pt"
AGENT_FILE = "agent"
PREVIOUS = ".prev"
BEST_FILE = "best_architecture.json"


def build_agent(config: RunConfig) -> PruningAgent:
    """The search algorithm named in the config, with its own (strictly checked) params."""
    search = config.search
    return AGENT_CLASSES[search.algo]({"seed": search.seed, **search.algo_params})


def group_names(env: GANPruneParallelEnv) -> dict[str, list[str]]:
    return {a: [g.name for g in env.game.spaces[a].groups] for a in AGENTS}


def run_search(config: RunConfig, env: GANPruneParallelEnv, run_dir: Path,
               writer: SummaryWriter) -> Candidate:
    """Search for ``n_rounds`` rounds (continuing a saved search), return the best pair."""
    folder = run_dir / SEARCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    agent, tracker = build_agent(config), SearchTracker()
    agent.bind(env)
    load_search(agent, tracker, folder)
    agent.logger = lambda name, value, step: writer.add_scalar(name, value, step)
    tracker.listeners.append(SearchLogger(writer))
    search = config.search
    names = group_names(env)
    with tqdm(total=search.n_rounds, initial=len(tracker.history), desc=f"search ({search.algo})",
              disable=not config.progress, dynamic_ncols=True) as bar:
        while len(tracker.history) < search.n_rounds:
            before = len(tracker.history)
            chunk = min(search.save_freq, search.n_rounds - before)
            agent.learn(env, chunk, tracker)
            del tracker.history[before + chunk:]  # an algorithm may overshoot its last rollout
            save_search(agent, tracker, folder)
            bar.update(len(tracker.history) - before)
            best = tracker.best
            if best is not None:
                bar.set_postfix(best_G=f"{best.rewards['generator']:+.3f}", refresh=False)
                if len(tracker.history) // search.eval_freq != before // search.eval_freq:
                    _snapshot(writer, env, best, names, len(tracker.history))
    best = tracker.best
    if best is None:
        failed = [c.error for c in tracker.history if c.error]
        cause = f": all {len(failed)} rounds failed, e.g. {failed[0]}" if failed else ""
        raise RuntimeError(f"the search evaluated no architecture{cause}")
    write_best(run_dir, best, names)
    return best


def write_best(run_dir: Path, best: Candidate, names: dict[str, list[str]]) -> None:
    """``best_architecture.json``: the pair the run fine-tunes, with its groups' names."""
    text = json.dumps({**asdict(best), "group_names": names}, indent=2)
    write_atomically(run_dir / BEST_FILE, lambda handle: handle.write(text.encode()))


def read_history(run_dir: Path) -> list[Candidate]:
    """Every round of the run's saved search, in order (failed rounds included)."""
    tracker = SearchTracker()
    tracker.load_state_dict(load_agent_state(run_dir / SEARCH_DIR / TRACKER_FILE))
    return tracker.history


def read_best(run_dir: Path) -> Candidate:
    """The pair a finished search found (``best_architecture.json``)."""
    path = run_dir / BEST_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: the run's search has not finished (resume it with "
                          f"python train_agents.py -i {run_dir})")
    data = json.loads(path.read_text())
    data.pop("group_names", None)
    return Candidate(**data)


def _generation(folder: Path, previous: bool) -> tuple[Path, Path]:
    suffix = PREVIOUS if previous else ""
    return folder / f"{AGENT_FILE}{suffix}", folder / f"{TRACKER_FILE}{suffix}"


def save_search(agent: PruningAgent, tracker: SearchTracker, folder: Path) -> None:
    """Save the agent and the tracker, keeping the previous save beside them (``*.prev``): a
    save that is later found unreadable costs one chunk of rounds, not the search."""
    current, previous = _generation(folder, False), _generation(folder, True)
    if current[1].exists():
        for old, new in zip(current, previous):
            if new.is_dir():
                shutil.rmtree(new)
            if old.exists():
                os.replace(old, new)
    agent.save(current[0])
    save_checkpoint(current[1], tracker.state_dict())


def load_search(agent: PruningAgent, tracker: SearchTracker, folder: Path) -> None:
    """Continue a saved search: the newest save, else (unreadable, or cut short between the
    two writes) the previous one, with a warning; nothing saved leaves both untouched."""
    failures = []
    for previous in (False, True):
        agent_path, tracker_path = _generation(folder, previous)
        if not tracker_path.exists():
            continue
        try:
            state = load_agent_state(tracker_path)
            agent.load(agent_path)
        except (ValueError, KeyError, OSError, RuntimeError, CheckpointError) as err:
            failures.append(f"{tracker_path.name}: {err}")
            continue
        tracker.load_state_dict(state)
        if failures:
            warnings.warn(f"the newest search save in {folder} does not read ({failures[0]}); "
                          f"continuing from the previous one, {len(tracker.history)} rounds in",
                          stacklevel=2)
        return
    if failures:
        raise CheckpointError(f"no readable search save in {folder}: {'; '.join(failures)}")


def _snapshot(writer: SummaryWriter, env: GANPruneParallelEnv, best: Candidate,
              names: dict[str, list[str]], step: int) -> None:
    """Best architecture so far as text, and its images (input | teacher | pruned)."""
    writer.add_text("search/best_architecture", architecture_markdown(best, names), step)
    game = env.game
    rows = min(4, game.eval_batch.inputs.shape[0])
    student = game.generator_outputs(best.kept_channels["generator"], rows)
    add_image_grid(writer, "search/best_images",
                   [game.eval_batch.inputs[:rows], game.eval_batch.outputs[:rows], student], step)
