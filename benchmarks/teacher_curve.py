"""Has a teacher finished learning? Its test quality at every train state its run kept.

A teacher worth compressing is trained until its test curve flattens. This scores the main
generator of every ``checkpoints/train_state_<step>.pt`` of a teacher run folder (and its final
``teacher.pt``) with the project's evaluation protocol (``evaluate_generator``: real FID/KID with
the FID Inception, PSNR/SSIM to the target) on the first ``--eval-images`` test images, and
writes ``teacher_curve_<run>.json`` (one entry per step, with the commit and the final teacher's
SHA-1), ``teacher_curve_<run>.md`` and ``teacher_curve_<run>.png``. Scores are cached in the
JSON file by step: rerunning after the run has trained further scores only the new states.

Keep the states: the ``default_wide`` task's recipe keeps all of them (``keep_train_states``).

Example (the wide teacher, about 30 s per state on 2 cores)::

    python -m gan_prune_env.train_teacher --task default_wide --out runs/teachers/default_wide
    python benchmarks/teacher_curve.py runs/teachers/default_wide --task default_wide
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from compare.cells import file_sha1, fid_inception, git_commit
from compare.plots import save_figure, subplots
from compare.spec import DEFAULT_OUT, rel_path

METRICS = (("fid", "FID", "{:.1f}", 1.0), ("kid", "KID x1e3", "{:.1f}", 1e3),
           ("psnr", "PSNR", "{:.2f}", 1.0), ("ssim", "SSIM", "{:.3f}", 1.0))
STATE = re.compile(r"train_state_(\d+)\.pt$")


def saved_generators(run: Path) -> dict[int, Path]:
    """Step -> checkpoint file of every train state in ``run`` (the final teacher as its last
    step, which replaces the train state of the same step)."""
    files = {int(m.group(1)): p for p in sorted((run / "checkpoints").glob("train_state_*.pt"))
             if (m := STATE.search(p.name))}
    teacher = run / "teacher.pt"
    if teacher.is_file():
        from gan_prune_env.checkpoint import read_checkpoint

        files[int(read_checkpoint(teacher)["metadata"]["steps"])] = teacher
    if not files:
        raise SystemExit(f"error: no train states or teacher.pt in {run}; is it a teacher run "
                         "folder (python -m gan_prune_env.train_teacher --out ...)?")
    return dict(sorted(files.items()))


def score(path: Path, task, eval_images: int) -> dict[str, float]:
    """The evaluation protocol of ``task`` (a ``TaskConfig``) on the generator saved in ``path``."""
    from gan_prune_env.checkpoint import load_generator
    from gan_prune_env.evaluation import evaluate_generator

    generator = load_generator(path)
    result = evaluate_generator(generator, task.data, task.family, max_images=eval_images,
                                progress=False, fid_weights=fid_inception())
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}


def command(args: argparse.Namespace) -> int:
    from gan_prune_env.tasks import get_task

    run = Path(args.run)
    name = run.name
    out = Path(args.out)
    results = out / f"teacher_curve_{name}.json"
    previous = json.loads(results.read_text()) if results.is_file() else {}
    if previous and (previous.get("task"), previous.get("eval_images")) != (
            args.task, args.eval_images):
        raise SystemExit(f"error: {results} holds another protocol (task "
                         f"{previous.get('task')}, {previous.get('eval_images')} images)")
    scores: dict[str, Any] = previous.get("steps", {})
    task = get_task(args.task)
    for step, path in saved_generators(run).items():
        # the final teacher holds its last train state's weights (up to storage dtype)
        if str(step) not in scores:
            scores[str(step)] = score(path, task, args.eval_images)
            print(f"step {step}: FID {scores[str(step)]['fid']:.1f}, PSNR "
                  f"{scores[str(step)]['psnr']:.2f}", flush=True)
    teacher = run / "teacher.pt"
    record = {"run": rel_path(run), "task": args.task, "eval_images": args.eval_images,
              "commit": git_commit(),
              "teacher_sha1": file_sha1(teacher) if teacher.is_file() else None,
              "steps": dict(sorted(scores.items(), key=lambda kv: int(kv[0])))}
    out.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(record, indent=1))
    report(record, out / f"teacher_curve_{name}.md", out / f"teacher_curve_{name}.png")
    return 0


def report(record: dict[str, Any], md: Path, png: Path) -> None:
    steps = record["steps"]
    lines = [f"# Teacher test curve: `{record['run']}` (task `{record['task']}`)", "",
             f"First {record['eval_images']} test images; commit {record['commit'][:12]}; final "
             f"teacher SHA-1 {record['teacher_sha1']}. Regenerate: see the docstring of "
             "`benchmarks/teacher_curve.py`.", "",
             "| step | " + " | ".join(label for _, label, _, _ in METRICS) + " |",
             "|---" * (len(METRICS) + 1) + "|"]
    for step, values in steps.items():
        cells = [fmt.format(values[key] * scale) for key, _, fmt, scale in METRICS]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    md.write_text("\n".join(lines) + "\n")


    xs = [int(s) for s in steps]
    fig, axes = subplots(1, 2, figsize=(9, 3.5))
    for ax, (key, label, _, scale) in zip(axes, METRICS[::2]):
        ax.plot(xs, [steps[s][key] * scale for s in steps], marker="o")
        ax.set_xlabel("teacher training step")
        ax.set_ylabel(label)
    fig.suptitle(f"{record['task']} teacher, {record['eval_images']} test images")
    save_figure(fig, png)
    print(f"wrote {md} and {png}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="teacher run folder (the --out of "
                                    "python -m gan_prune_env.train_teacher)")
    parser.add_argument("--task", required=True,
                        help="the task it was trained for: a built-in name or a task YAML file")
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="folder of the results: teacher_curve_<run folder's name>.json, "
                             ".md and .png (name the run folder as the curve should be named)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return command(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
