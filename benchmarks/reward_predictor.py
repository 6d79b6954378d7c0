"""A learned reward: does a regression fitted on fine-tuned architectures rank fresh ones?

What. The reward-fidelity benchmark (``reward_fidelity.py``) fine-tunes architectures and
records their final quality. This script fits a predictor of the final FID on one set of those
architectures (``--train``: one or more results files; an architecture found in several, such as
a fine-tuning replica under another seed, is scored by its mean FID, which halves the label
noise) and scores it on architectures it has never seen (``--test``: another ``--arch-seed``).

* Features, per architecture: the log of each G group's kept channels relative to the uniform
  architecture's (no network runs, like the ``balance`` statistic), plus, with ``--modes``,
  the rewards of those reward modes (e.g. ``distill_k``, ``frozen``);
* model: ridge regression on standardised features, its strength picked from ``ALPHAS`` by
  leave-one-out on the training set (numpy only: 16 architectures need nothing more);
* scores: Spearman and Kendall between the predicted and the final FID, signed so that
  **positive = the predictor ranks as fine-tuning does** (a lower predicted FID with a lower
  final FID), with 95% bootstrap intervals: leave-one-out on the training set and, the number
  that matters, on the test set.

Why. The issue on reward fidelity asks for learned predictors besides the env's reward: the
env's frozen-weight reward, a supernet's and a few steps of distillation all failed to rank
the final FID (``reward_fidelity.md``). A regression on the architectures that were fine-tuned
anyway costs nothing more to evaluate; whether it generalises is what this measures. The
ceiling is the labels' own agreement: two fine-tuning seeds rank the 16 architectures' FID at
+0.79.

Outputs (``--out``): ``reward_predictor.json`` (weights, the picked strength, the scores, this
run's commit, the commits and teacher SHA-1 of the records) and ``reward_predictor.md`` and
``.png`` (predicted against final FID on the test set). Seconds on one core::

    python benchmarks/reward_predictor.py \\
        --train benchmarks/results/teacher_targets/reward_fidelity.jsonl \\
                benchmarks/results/teacher_targets/reward_fidelity_seed1.jsonl \\
        --test benchmarks/results/teacher_targets/reward_fidelity_archseed1.jsonl \\
        --out benchmarks/results/teacher_targets/predictor
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compare.cells import git_commit
from compare.plots import save_figure, subplots
from compare.store import read_records
from reward_fidelity import fidelity, merge_records

ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
FINAL_STEPS = "3000"


@dataclass
class Architectures:
    """Architectures of one results set: kept G channels, mode rewards and mean final FID."""

    keys: list[str]
    kept: np.ndarray  # (n, groups)
    rewards: dict[str, np.ndarray]
    fid: np.ndarray
    origins: list[str]
    provenance: dict[str, list[str]]


def load(paths: list[Path], modes: tuple[str, ...], steps: str = FINAL_STEPS) -> Architectures:
    """The architectures with a ``steps`` final in every file that holds them, FID averaged over
    the files (replicas), rewards from the first file that scored them. All files must hold one
    task and budget (a predictor of one problem)."""
    fids: dict[str, list[float]] = defaultdict(list)
    first: dict[str, dict[str, Any]] = {}
    for path in paths:
        records = read_records(path)
        if not records:
            raise SystemExit(f"error: no records in {path}")
        for key, record in merge_records(records).items():
            if steps in record["finals"]:
                fids[key].append(record["finals"][steps]["quality"]["fid"])
                first.setdefault(key, record)
    problems = {(r["task"], r["budget"]) for r in first.values()}
    if len(problems) != 1:
        raise SystemExit(f"error: the records hold {len(problems)} (task, budget) problems "
                         f"{sorted(problems)}; give the files of one")
    keys = sorted(first, key=lambda k: (first[k]["arch_seed"], first[k]["index"]))
    missing = sorted({m for k in keys for m in modes if m not in first[k]["scores"]})
    if missing:
        raise SystemExit(f"error: modes {missing} are not scored on every architecture: run "
                         f"reward_fidelity.py with --modes {' '.join(missing)} first")
    return Architectures(
        keys=keys,
        kept=np.array([first[k]["arch"]["kept_channels"]["generator"] for k in keys], float),
        rewards={m: np.array([first[k]["scores"][m]["reward"] for k in keys]) for m in modes},
        fid=np.array([np.mean(fids[k]) for k in keys]),
        origins=[first[k]["arch"]["origin"] for k in keys],
        provenance={"commits": sorted({first[k]["commit"][:12] for k in keys}),
                    "teacher_sha1": sorted({first[k]["teacher_sha1"] for k in keys})})


def uniform_counts(archs: Architectures) -> np.ndarray:
    """The uniform architecture's kept channels (every arch seed's index 0 is uniform)."""
    uniform = [row for row, origin in zip(archs.kept, archs.origins) if origin == "uniform"]
    if not uniform:
        raise SystemExit("error: no uniform architecture in the training files")
    return uniform[0]


def features(archs: Architectures, uniform: np.ndarray) -> np.ndarray:
    """Log kept channels relative to uniform, per G group, then each mode's reward."""
    columns = [np.log(archs.kept / uniform)] + [v[:, None] for v in archs.rewards.values()]
    return np.concatenate(columns, axis=1)


def unseen(test: Architectures, train: Architectures) -> Architectures:
    """``test`` without the architectures whose kept channels the training set holds (every arch
    seed starts with the uniform one): a fresh architecture is one the fit has not seen."""
    seen = {tuple(row) for row in train.kept}
    keep = [i for i, row in enumerate(test.kept) if tuple(row) not in seen]
    return Architectures(keys=[test.keys[i] for i in keep], kept=test.kept[keep],
                         rewards={m: v[keep] for m, v in test.rewards.items()},
                         fid=test.fid[keep], origins=[test.origins[i] for i in keep],
                         provenance=test.provenance)


@dataclass
class Ridge:
    """Ridge regression on features standardised with the training set's mean and spread."""

    alpha: float
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    weights: np.ndarray | None = None
    intercept: float = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray) -> Ridge:
        self.mean, self.scale = x.mean(0), x.std(0)
        self.scale[self.scale == 0] = 1.0  # a constant feature carries no information
        z = (x - self.mean) / self.scale
        self.intercept = float(y.mean())
        self.weights = np.linalg.solve(z.T @ z + self.alpha * np.eye(z.shape[1]),
                                       z.T @ (y - self.intercept))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale @ self.weights + self.intercept


def leave_one_out(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Each architecture's prediction by the ridge fitted on all the others."""
    out = np.empty(len(y))
    for i in range(len(y)):
        rest = np.arange(len(y)) != i
        out[i] = Ridge(alpha).fit(x[rest], y[rest]).predict(x[i: i + 1])[0]
    return out


def pick_alpha(x: np.ndarray, y: np.ndarray, alphas=ALPHAS) -> float:
    """The strength with the lowest leave-one-out squared error on the training set."""
    errors = [float(np.mean((leave_one_out(x, y, a) - y) ** 2)) for a in alphas]
    return alphas[int(np.argmin(errors))]


def evaluate(train: Architectures, test: Architectures, uniform: np.ndarray) -> dict[str, Any]:
    """Fit on ``train`` (strength by leave-one-out), score on both sets. A predicted FID ranks
    as fine-tuning does when it is *low* where FID is low: the fidelity of ``-predicted``."""
    x_train, x_test = features(train, uniform), features(test, uniform)
    alpha = pick_alpha(x_train, train.fid)
    model = Ridge(alpha).fit(x_train, train.fid)
    loo = leave_one_out(x_train, train.fid, alpha)
    predicted = model.predict(x_test)
    return {
        "alpha": alpha, "weights": model.weights.tolist(),
        "features": [f"log kept/uniform, G group {g}" for g in range(train.kept.shape[1])]
                    + [f"{m} reward" for m in train.rewards],
        "train": {"n": len(train.fid), **fidelity(-loo, train.fid, higher_is_better=False)},
        "test": {"n": len(test.fid), **fidelity(-predicted, test.fid, higher_is_better=False)},
        "test_predicted_fid": predicted.tolist(), "test_fid": test.fid.tolist(),
        "test_keys": test.keys,
    }


def _interval(stats: dict[str, Any], name: str) -> str:
    low, high = stats[f"{name}_ci"]
    return f"{stats[name]:+.2f} [{low:+.2f}, {high:+.2f}]"


def write_report(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "reward_predictor.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# A learned reward predictor (ridge regression on the architecture)", "",
             f"Regenerate: `python benchmarks/reward_predictor.py` with the files below (see its "
             f"docstring). Features: {', '.join(result['modes']) or 'no reward modes'} besides "
             f"the log kept channels of G's groups relative to uniform; ridge strength "
             f"{result['alpha']} (leave-one-out on the training set). Positive = a lower "
             f"predicted FID goes with a lower final FID.", "",
             "| set | architectures | Spearman [95% CI] | Kendall [95% CI] |",
             "|---|---:|---|---|"]
    for name, label in (("train", "training set, leave-one-out"),
                        ("test", "fresh architectures (test set)")):
        stats = result[name]
        lines.append(f"| {label} | {stats['n']} | {_interval(stats, 'spearman')} | "
                     f"{_interval(stats, 'kendall')} |")
    lines += ["", f"Training files: {', '.join(result['train_files'])}; test file(s): "
              f"{', '.join(result['test_files'])}. Fitted at commit {result['commit'][:12]}; "
              f"the records' commits {result['commits']}; teacher SHA-1 "
              f"{result['teacher_sha1']}.", ""]
    (out / "reward_predictor.md").write_text("\n".join(lines) + "\n")
    _plot(result, out / "reward_predictor.png")
    print((out / "reward_predictor.md").read_text())


def _plot(result: dict[str, Any], path: Path) -> None:
    fig, ax = subplots(figsize=(4.5, 4))
    ax.scatter(result["test_predicted_fid"], result["test_fid"])
    ax.set_xlabel("predicted FID (ridge, fitted on the training set)")
    ax.set_ylabel("final FID after fine-tuning")
    ax.set_title(f"fresh architectures: Spearman {result['test']['spearman']:+.2f}")
    save_figure(fig, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", nargs="+", required=True, type=Path,
                        help="reward-fidelity results files to fit on (replicas averaged)")
    parser.add_argument("--test", nargs="+", required=True, type=Path,
                        help="results files of fresh architectures to score on")
    parser.add_argument("--modes", nargs="*", default=[],
                        help="reward modes whose rewards join the features (e.g. distill_k)")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modes = tuple(args.modes)
    train, test = load(args.train, modes), load(args.test, modes)
    if set(train.keys) & set(test.keys):
        raise SystemExit("error: the test files hold architectures of the training files "
                         "(same keys): use another --arch-seed for the test set")
    result = evaluate(train, unseen(test, train), uniform_counts(train))
    result.update(commit=git_commit(), modes=list(modes),
                  train_files=[str(p) for p in args.train],
                  test_files=[str(p) for p in args.test],
                  commits=sorted(set(train.provenance["commits"] + test.provenance["commits"])),
                  teacher_sha1=sorted(set(train.provenance["teacher_sha1"]
                                          + test.provenance["teacher_sha1"])))
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
