"""The pruning env's leaderboard: the score a new RL algorithm has to beat, with seeds and time.

Fixed problem: ``Pix2PixPrune-v0``, the default task, G budget 10% of the teacher's MACs (D 50%),
frozen weights, env seed 0. Each row is an algorithm run for a fixed number of env rounds (step
budgets 1000 and, with ``--rounds 1000 5000``, 5000), seeds 0-4:

* ``random``, ``uniform``: the baselines every search must beat;
* ``ppo``, ``sac`` (Stable-Baselines3), ``tqc`` (sb3-contrib), ``rllib_ppo`` (RLlib's
  multi-agent PPO on the new API stack, extra ``[rllib]``): off-the-shelf RL;
* ``mggc``: ours.

Scores, per row:

* the **best within-budget G reward** the search found (METHOD 9's pick; the env's reward, the
  thing an RL algorithm optimises), aggregated over seeds by the **interquartile mean** with 95%
  stratified-bootstrap confidence intervals (rliable, Agarwal et al. 2021; ``[bench]`` extra);
* **wall time** of the search, learning included (one core per run);
* the **final quality** of the best pair: FID and PSNR to the teacher after a short fine-tune
  with the project's recipe and teacher targets, ``--finetune-steps`` (default 600), on 100
  test images. Measured by the reward-fidelity benchmark's length check (teacher targets, 16
  architectures at 10%): 600 steps rank PSNR to the teacher as 3000 do (Spearman +0.71), FID
  not (+0.15); the FID column is indicative only unless ``--finetune-steps 3000``. A better reward is not a better model unless the reward is faithful; the
  two columns side by side say whether it is.

Every run is a comparison cell (``compare_methods.py run``: search -> slice -> fine-tune ->
evaluate, the commit and the teacher's hash in each record), appended to
``leaderboard_<rounds>.jsonl`` as it finishes: rerun the same command to resume. ``report``
writes ``leaderboard.md`` and ``leaderboard.png``::

    python benchmarks/leaderboard.py run --workers 2                 # 1000 rounds, 7 rows x 5 seeds
    python benchmarks/leaderboard.py run --rounds 5000 --workers 2
    python benchmarks/leaderboard.py report

``--env-id Pix2PixPruneDensity-v0``: the same problem on the density preset (the shipped
supernet's weights, the objective's density term alone: the reward that ranks architectures as
fine-tuning does), each row's method on that reward (``ROW_sn_kde_teacher_targets``), into
``leaderboard_density_<rounds>.jsonl`` and ``leaderboard_density.md``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import compare_methods
from compare.plots import save_figure, subplots
from compare.spec import DEFAULT_OUT, LEADERBOARD_ROWS as ROWS, METHODS
from compare.store import read_records
from gan_prune_env.tasks import SHIPPED_SUPERNETS

TASK, BUDGET = "default", 0.1
SEEDS = (0, 1, 2, 3, 4)
FINETUNE_STEPS = 600
RECIPE = ("targets:teacher",)
BOOTSTRAP_REPS = 2000


@dataclass(frozen=True)
class Board:
    """One env id's leaderboard: the method each row runs (``row + suffix``), the extra
    arguments of its cells and the stem of its files."""

    env_id: str
    suffix: str = ""
    extra: tuple[str, ...] = ()
    stem: str = "leaderboard"

    def method(self, row: str) -> str:
        return row + self.suffix

    def row(self, method: str) -> str:
        return method[: len(method) - len(self.suffix)] if self.suffix else method


BOARDS = {board.env_id: board for board in (
    Board("Pix2PixPrune-v0"),
    Board("Pix2PixPruneDensity-v0", "_sn_kde_teacher_targets",
          ("--supernet", f"default={SHIPPED_SUPERNETS[TASK]}"), "leaderboard_density"))}


def results_file(out: Path, rounds: int, board: Board = BOARDS["Pix2PixPrune-v0"]) -> Path:
    return out / f"{board.stem}_{rounds}.jsonl"


def command_run(args: argparse.Namespace) -> int:
    """One ``compare_methods.py run`` per step budget, into the leaderboard's own files."""
    out, board = Path(args.out), BOARDS[args.env_id]
    code = 0
    for rounds in args.rounds:
        argv = ["run", "--tasks", TASK, "--budgets", str(BUDGET),
                "--methods", *map(board.method, args.rows), *board.extra,
                "--seeds", *map(str, args.seeds), "--rounds", str(rounds),
                "--finetune-steps", str(args.finetune_steps), "--recipe", *RECIPE,
                "--workers", str(args.workers),
                "--results", str(results_file(out, rounds, board)), "--out", str(out),
                "--no-report"]
        code |= compare_methods.main(argv)
    make_report(out, board)
    return code


def best_reward(record: dict[str, Any]) -> float:
    """The search's pick: its G reward when within both budgets, else -inf (no feasible pair
    found: it ranks last)."""
    best = record["best"]
    return float(best["rewards"]["generator"]) if best["within_budget"] else float("-inf")


def interquartile_mean(scores: dict[str, np.ndarray], reps: int = BOOTSTRAP_REPS, seed: int = 0
                       ) -> dict[str, tuple[float, float, float]]:
    """IQM and its 95% stratified-bootstrap interval per row (rliable)."""
    from rliable import library, metrics

    matrices = {row: np.asarray(values, dtype=float).reshape(-1, 1)
                for row, values in scores.items()}
    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global RNG
    point, interval = library.get_interval_estimates(
        matrices, lambda m: np.array([metrics.aggregate_iqm(m)]), reps=reps)
    return {row: (float(point[row][0]), float(interval[row][0, 0]), float(interval[row][1, 0]))
            for row in matrices}


def _fmt(values: list[float], digits: int = 1) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table_for(records: list[dict[str, Any]], rounds: int,
              board: Board = BOARDS["Pix2PixPrune-v0"]) -> tuple[list[str], dict]:
    """The markdown table of one step budget and the IQMs it shows."""
    by_row: dict[str, list[dict]] = {}
    for record in records:
        by_row.setdefault(board.row(record["method"]), []).append(record)
    rows = [r for r in ROWS if r in by_row] + sorted(set(by_row) - set(ROWS))
    scores = {row: np.array([best_reward(r) for r in by_row[row]]) for row in rows}
    finite = {row: np.where(np.isfinite(s), s, np.nan) for row, s in scores.items()}
    iqm = interquartile_mean({row: np.nan_to_num(s, nan=-10.0) for row, s in finite.items()})
    lines = [f"### {rounds} env rounds", "",
             "| algorithm | seeds | best within-budget G reward, IQM [95% CI] | feasible runs "
             "| search wall time (s) | FID after fine-tune | PSNR to teacher (dB) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for row in sorted(rows, key=lambda r: -iqm[r][0]):
        cells = by_row[row]
        lines.append(
            f"| {METHODS[board.method(row)].label} | {len(cells)} | {iqm[row][0]:+.4f} "
            f"[{iqm[row][1]:+.4f}, {iqm[row][2]:+.4f}] | "
            f"{int(np.isfinite(scores[row]).sum())}/{len(cells)} | "
            f"{_fmt([c['timing_s']['search'] for c in cells], 0)} | "
            f"{_fmt([c['quality']['fid'] for c in cells])} | "
            f"{_fmt([c['quality']['psnr_teacher'] for c in cells], 2)} |")
    return lines, iqm


def make_report(out: Path, board: Board = BOARDS["Pix2PixPrune-v0"]) -> Path:
    pattern = re.compile(rf"{board.stem}_(\d+)")
    files = sorted((p for p in out.glob(f"{board.stem}_*.jsonl") if pattern.fullmatch(p.stem)),
                   key=lambda p: int(pattern.fullmatch(p.stem).group(1)))
    flag = "" if board.env_id == "Pix2PixPrune-v0" else f" --env-id {board.env_id}"
    lines = [f"# Leaderboard of {board.env_id} (default task, G budget 10%, frozen weights)", "",
             f"Regenerate: `python benchmarks/leaderboard.py run{flag} --workers 2` (see its "
             "docstring). "
             "Rows sorted by the IQM of the best within-budget G reward over seeds (a run that "
             "found no feasible pair counts as -10, the env's error reward); wall time and the "
             "final quality of each run's best pair after a "
             f"{FINETUNE_STEPS}-step fine-tune (teacher targets) beside it.", ""]
    plotted = {}
    for path in files:
        records = read_records(path)
        if not records:
            continue
        rounds = records[0]["rounds"]
        table, iqm = table_for(records, rounds, board)
        commits = sorted({r["commit"][:10] for r in records})
        teachers = sorted({r["teacher_sha1"][:12] for r in records})
        lines += table + ["", f"Commits {', '.join(commits)}; teacher SHA-1 "
                          f"{', '.join(teachers)}; fine-tune steps "
                          f"{sorted({r['finetune_steps'] for r in records})}.", ""]
        plotted[rounds] = iqm
    report = out / f"{board.stem}.md"
    report.write_text("\n".join(lines) + "\n")
    if plotted:
        _plot(plotted, out / f"{board.stem}.png", board)
    print(f"[leaderboard] wrote {report}")
    return report


def _plot(plotted: dict[int, dict[str, tuple[float, float, float]]], path: Path,
          board: Board) -> None:
    fig, axes = subplots(1, len(plotted), figsize=(5 * len(plotted), 3.5), squeeze=False)
    for ax, (rounds, iqm) in zip(axes[0], sorted(plotted.items())):
        rows = sorted(iqm, key=lambda r: iqm[r][0])
        values = [iqm[r][0] for r in rows]
        errors = [[iqm[r][0] - iqm[r][1] for r in rows], [iqm[r][2] - iqm[r][0] for r in rows]]
        ax.errorbar(values, range(len(rows)), xerr=errors, fmt="o", capsize=3)
        ax.set_yticks(range(len(rows)), [METHODS[board.method(r)].label for r in rows],
                      fontsize=8)
        ax.set_xlabel("best within-budget G reward (IQM, 95% CI)")
        ax.set_title(f"{rounds} env rounds")
    save_figure(fig, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) the leaderboard's cells, then report")
    run.add_argument("--rounds", nargs="+", type=int, default=[1000],
                     help="step budgets (env rounds per search)")
    run.add_argument("--env-id", default="Pix2PixPrune-v0", choices=sorted(BOARDS),
                     help="the env whose leaderboard to run (default Pix2PixPrune-v0)")
    run.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    run.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    run.add_argument("--finetune-steps", type=int, default=FINETUNE_STEPS)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--out", default=str(DEFAULT_OUT))
    rep = sub.add_parser("report", help="the report from the results files")
    rep.add_argument("--env-id", default="Pix2PixPrune-v0", choices=sorted(BOARDS))
    rep.add_argument("--out", default=str(DEFAULT_OUT))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "report":
        make_report(Path(args.out), BOARDS[args.env_id])
        return 0
    return command_run(args)


if __name__ == "__main__":
    sys.exit(main())
