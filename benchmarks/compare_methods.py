"""Does the local-density method (MGGC) beat the baselines at equal compute?

Every method gets the SAME search length (env rounds) and the SAME fine-tuning recipe; each
(task, budget, method, seed) cell runs

    search (``rounds`` env rounds) -> best pair within budget -> slice G and D physically
    -> fine-tune (``finetune_pair``, one ``FinetuneConfig`` for all) -> evaluate on the test
    split (PSNR/SSIM to ground truth and to the teacher, proxy FD; never called FID)
    -> MACs / params of G and D (``compute_table``) -> CPU latency of the sliced G, timed
    interleaved with the teacher G in the same call (``measure_latencies``)

and records the search's per-round G and D loss terms (the tracker history) for the
pruning-dynamics analysis. Each finished cell is appended to a JSONL file at once (one line,
flushed and fsynced), so a run can be stopped and resumed: finished cells are skipped.

Methods (``--methods``):

=================  ==============================================================================
``scratch``        the thin student: the ``uniform`` architecture with fresh weights, distilled
                   with the same recipe and steps (what a user would do instead of pruning)
``uniform``        every group at the largest uniform keep ratio (L1-norm channel ranking)
``uniform_full_d`` ``uniform`` with the teacher's D kept whole (``budget_d`` 1.0): is the pruned
                   D what holds fine-tuning back?
``random``         random per-group ratios rescaled onto the budget, best of the search
``ppo``            SB3 PPO, alternating genG / genD single-agent views
``mggc``           the paper-style genG/genD hypernetworks on the local-density reward (ours)
``mggc_no_peer``   ablation: ``peer_feedback=False`` (the peer's feedback is zeroed)
``mggc_no_density`` ablation: env objective ``lambda_kde=0, lambda_adv=0`` (L1 distillation
                   only in the reward; fine-tuning unchanged)
``mggc_g_alone``   ablation: ``prune_discriminator=False`` (genG alone, D kept full; the env's
                   ``budget_d`` is 1.0 so that a full D counts as within budget)
``mggc_unprojected`` ablation: ``fit_budget=False`` (samples are not projected onto the budget;
                   the env's compute penalty alone keeps them near it)
``mggc_gates``     variant: ``mode="gates"`` (the hypernets descend the objective through soft
                   channel gates; every step is scored as a hard architecture in the env)
``*_supernet``,    the supernet variants (``compare.spec.METHODS`` has each one's label)
``*_sn_reward``
``*_teacher_targets`` ``scratch``, ``uniform``, ``random``, ``mggc`` fine-tuned on the teacher's
                   outputs (``FinetuneConfig.targets = "teacher"``, the recipe's default for
                   Pix2Pix); the methods without the suffix keep the dataset's targets, as their
                   committed records were run
=================  ==============================================================================

Tasks (``--tasks``): ``default`` (procedural label->photo 64x64, the shipped teacher),
``default_long`` (the same, with the shipped teacher trained four times as long),
``default_wide`` (the same data, a teacher of the reference width ngf 64 / ndf 64, trained by
``python -m gan_prune_env.train_teacher --task default_wide --out runs/teachers/default_wide``)
and ``facades`` (labels->photo 128x128, ``unet_128`` ngf 32 / PatchGAN ndf 64, a teacher trained
by the ``teacher`` sub-command). Teachers are looked up in ``runs/`` (``--teacher TASK=PATH``
overrides, for the default task's shipped teacher too). Budgets (``--budgets``) are the env's ``budget_g`` (kept-MACs ratio
of the generator); ``budget_d`` stays at the env default (0.5) unless a method fixes it or
``--env budget_d:VALUE`` changes it for every cell (``--env`` takes any ``EnvConfig`` field but
the cell's own task, budget, seed and device). The env's data-selection seed is
fixed (0) so that every cell sees the same task; ``--seeds`` seed the agent, the global RNGs and
the fine-tuning.

Facades teacher recipe (``teacher`` sub-command, defaults): the built-in ``facades`` task's
Pix2Pix recipe (Adam 2e-4, betas 0.5/0.999, vanilla GAN + 100 * L1, load 143 / random crop 128,
flips) with ``n_steps=1000`` at batch size 1 (2.5 epochs of the 400 training pairs; ``epochs``
unset), linear LR decay over the last 500 steps, seed 0, one CPU thread: 10-15 minutes on an idle
2-core machine, 30+ on a busy one (resumable: rerun the same command). A deliberately small,
fast teacher, far from the reference 200-epoch one; it is the network to compress, not a result.

Examples::

    python benchmarks/compare_methods.py run --quick          # smoke, into runs/compare_quick
    python benchmarks/compare_methods.py run --tasks default --budgets 0.25 0.10 \\
        --seeds 0 1 2 --rounds 200 --finetune-steps 600 --workers 2
    python benchmarks/compare_methods.py teacher --out runs/compare_facades_teacher
    python benchmarks/compare_methods.py run --tasks facades --budgets 0.25 \\
        --methods uniform mggc --teacher facades=runs/compare_facades_teacher/teacher.pt
    python benchmarks/compare_methods.py report        # JSONL -> compare_methods.md + plots

Outputs (``--out``, default ``benchmarks/results``): ``compare_methods.jsonl`` (one record per
cell), ``compare_methods.md`` (tables, winners, dynamics statistics), ``compare_methods.json`` (the
aggregated statistics),
``compare_quality_vs_macs.png`` and ``compare_dynamics.png``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare.cells import (add_ray_argument, builtin_task, effective_recipe, file_sha1,
                           method_recipe, recipe_config, recipe_dict, run_pending)
from gan_prune_env.finetune import FinetuneConfig
from compare.report import make_report
from compare.spec import (
    DEFAULT_DATA_ROOT, DEFAULT_OUT, DEFAULT_TEACHERS, METHODS, QUICK_OUT, RESULTS_FILE, TASKS,
    TEACHER_COMMANDS, cell_key, check_choices, default_separable_student, default_supernet,
    quick_settings, rel_path, separable_student_command, supernet_command,
)
from compare.store import (TEACHER_ALIASES, add_teacher_alias, append_record, check_one_teacher,
                           read_records, same_teacher, teacher_aliases)


def plan_cells(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seeds outermost, so a stopped run leaves complete tables for its first seeds."""
    cells = []
    for seed in args.seeds:
        for task in args.tasks:
            for budget in args.budgets:
                for method in args.methods:
                    cells.append({
                        "task": task, "budget": float(budget), "method": method,
                        "seed": int(seed), "rounds": args.rounds,
                        "finetune_steps": args.finetune_steps,
                        "eval_images": args.eval_images, "latency_runs": args.latency_runs,
                        "teacher": args.teachers.get(task),
                        "supernet": args.supernets.get(task),
                        "separable_student": args.separable_students.get(
                            (task, METHODS[method].student_start)),
                        "save_generator": args.save_generator, "recipe": args.recipe,
                        "env": args.env,
                        "work_dir": str(args.work_dir), "threads": 1})
    return cells


def _check_protocol(done: dict[str, dict], cell: dict[str, Any]) -> bool:
    """True when the cell is finished; a finished cell of another protocol (search rounds,
    steps, images, env options, or the fine-tuning recipe it actually ran, ``effective_recipe``:
    the method's and the run's changes on the defaults of its day) is an error."""
    record = done.get(cell_key(cell["task"], cell["budget"], cell["method"], cell["seed"]))
    if record is None:
        return False
    for key in ("rounds", "finetune_steps", "eval_images", "env"):
        if record.get(key, {}) != cell[key]:
            raise SystemExit(f"error: {record['key']} was run with {key}={record.get(key)}, this "
                             f"run asks for {cell[key]}; use another --results file to compare "
                             "protocols")
    ran = effective_recipe(record["config"]["finetune"], cell["task"])
    asked = effective_recipe(recipe_dict(recipe_config(
        cell["finetune_steps"], method_recipe(METHODS[cell["method"]], cell))), cell["task"])
    changed = sorted(k for k in ran.keys() | asked.keys() if ran.get(k) != asked.get(k))
    if changed:
        raise SystemExit(
            f"error: {record['key']} ran the recipe with {_fields(ran, changed)}, this run asks "
            f"for {_fields(asked, changed)}; use another --results file to compare recipes, or "
            f"--recipe {' '.join(f'{k}:{ran.get(k)}' for k in changed)} to resume it")
    return True


def _fields(recipe: dict[str, Any], names: list[str]) -> str:
    return ", ".join(f"{k}={recipe.get(k)}" for k in names)


def command_run(args: argparse.Namespace) -> int:
    if args.quick:
        for key, value in quick_settings().items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    defaults = {"tasks": ["default"], "budgets": [0.25, 0.10], "methods": list(METHODS),
                "seeds": [0, 1, 2], "rounds": 200, "finetune_steps": FinetuneConfig().steps,
                "eval_images": 100,
                "latency_runs": 30}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    check_choices("method", args.methods, METHODS)
    check_choices("task", args.tasks, TASKS)
    if args.rounds < 1 or args.finetune_steps < 0:
        raise SystemExit("error: --rounds must be >= 1 and --finetune-steps >= 0")
    args.recipe = recipe_overrides(args.recipe)
    args.env = env_overrides(args.env, args.methods)
    out = Path(args.out) if args.out else (QUICK_OUT if args.quick else DEFAULT_OUT)
    results = Path(args.results) if args.results else out / RESULTS_FILE
    args.work_dir = Path(args.work_dir) if args.work_dir else out / ".compare_work"
    data_root = _data_root(args)
    args.teachers = task_teachers(args)
    args.supernets = task_supernets(args)
    args.separable_students = task_separable_students(args)
    if args.save_generator:
        if len(args.tasks) * len(args.budgets) * len(args.methods) * len(args.seeds) != 1:
            raise SystemExit("error: --save-generator keeps the generator of one cell; ask for "
                             "one task, budget, method and seed")
        if not METHODS[args.methods[0]].student:
            raise SystemExit(f"error: --save-generator keeps a separable student; "
                             f"{args.methods[0]} has none")
        args.save_generator = str(Path(args.save_generator).resolve())

    records = read_records(results)
    for task, sha1 in teacher_sha1s(args).items():
        check_one_teacher(results, task, sha1, records)
    done = {r["key"]: r for r in records}
    cells = plan_cells(args)
    todo = [c for c in cells if not _check_protocol(done, c)]
    print(f"{len(cells)} cells, {len(cells) - len(todo)} already in {results} (skipped), "
          f"{len(todo)} to run with {args.workers} worker(s)", flush=True)
    began = time.perf_counter()
    succeeded = run_pending(todo, args.workers, data_root,
                            lambda record: _finish(results, record, began), _cell_name,
                            args.work_dir, ray_address=args.ray)
    if not args.no_report and read_records(results):
        make_report(results, out)
    return 0 if succeeded else 1


def teacher_sha1s(args: argparse.Namespace) -> dict[str, str]:
    """The SHA-1 of the teacher file each task's cells will use (``task_teachers``, else the
    shipped one), as the cells record it."""
    from gan_prune_env.tasks import teacher_path

    return {task: file_sha1(args.teachers.get(task) or teacher_path(builtin_task(task)))
            for task in args.tasks}


def _checked_key_values(items: list[str] | None, config_class: type, flag: str
                        ) -> dict[str, Any]:
    """``key:value`` items as a dict, checked against ``config_class`` now: a misspelt key or a
    bad value stops the run before any cell starts."""
    from gan_prune_env.config import ConfigError, from_dict, parse_key_values

    try:
        overrides = parse_key_values(items)
        from_dict(config_class, overrides, where=flag)
    except (ConfigError, ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from err
    return overrides


def recipe_overrides(items: list[str] | None) -> dict[str, Any]:
    """``key:value`` changes to the fine-tuning recipe (``FinetuneConfig``), checked now."""
    return _checked_key_values(items, FinetuneConfig, "--recipe")


CELL_ENV_KEYS = ("task", "budget_g", "seed", "device", "teacher", "supernet")
"""Env settings every cell sets itself (its task, budget and the comparison's protocol)."""


def env_overrides(items: list[str] | None, methods: list[str]) -> dict[str, Any]:
    """``key:value`` changes to every cell's env (``EnvConfig``), e.g. ``budget_d:0.1``, checked
    now: a misspelt key, a bad value, a key the cell sets itself or one a chosen method fixes
    (``uniform_full_d``'s ``budget_d``) stops the run before any cell starts."""
    from gan_prune_env.envs import EnvConfig

    overrides = _checked_key_values(items, EnvConfig, "--env")
    reserved = sorted(set(overrides) & set(CELL_ENV_KEYS))
    if reserved:
        raise SystemExit(f"error: --env cannot set {reserved}: every cell sets them (use "
                         "--tasks, --budgets, --teacher, --supernet)")
    for method in methods:
        fixed = sorted(set(overrides) & set(METHODS[method].env))
        if fixed:
            raise SystemExit(f"error: method {method} sets {fixed} itself; drop it from --env "
                             "or from --methods")
    return overrides


def _cell_name(cell: dict[str, Any]) -> str:
    return cell_key(cell["task"], cell["budget"], cell["method"], cell["seed"])


def _finish(results: Path, record: dict[str, Any], began: float) -> None:
    append_record(results, record)
    t, compute = record["timing_s"], record["compute"]
    ratio = compute["generator/pruned"]["macs"] / compute["generator/teacher"]["macs"]
    print(f"[{time.perf_counter() - began:6.0f} s] {record['key']}: PSNR "
          f"{record['quality']['psnr']:.2f}, G MACs ratio {ratio:.3f}"
          f" (search {t['search']:.0f} s, fine-tune {t['finetune']:.0f} s, eval "
          f"{t['evaluate']:.0f} s)", flush=True)


def _data_root(args: argparse.Namespace) -> str | None:
    root = args.data_root or os.environ.get("GAN_PRUNE_DATA")
    if root is None and DEFAULT_DATA_ROOT.is_dir():
        root = str(DEFAULT_DATA_ROOT)
    if root:
        os.environ["GAN_PRUNE_DATA"] = root
    return root


def task_paths(items: list[str] | None, flag: str, tasks=TASKS) -> dict[str, Path]:
    """``TASK=PATH`` items as {task: path}; a task not in ``tasks`` stops the run."""
    paths = {}
    for item in items or []:
        task, sep, path = item.partition("=")
        if not sep or task not in tasks:
            raise SystemExit(f"error: {flag} takes TASK=PATH with TASK one of {list(tasks)}, "
                             f"got {item!r}")
        paths[task] = Path(path)
    return paths


def task_teachers(args: argparse.Namespace) -> dict[str, str]:
    """The teacher file of every task in ``args.tasks``: ``--teacher TASK=PATH`` (which also
    replaces a shipped teacher, e.g. one trained longer), else the task's place under ``runs/``
    for a task that does not ship one; checked now, so that a missing teacher (or facades
    without its images) stops the run before any cell starts."""
    given = task_paths(args.teacher, "--teacher")
    teachers = {}
    for task in args.tasks:
        path = given.get(task, DEFAULT_TEACHERS.get(task))
        if path is None:
            continue  # the shipped teacher
        if not path.is_file():
            command = TEACHER_COMMANDS.get(
                task, f"python -m gan_prune_env.train_teacher --task {task} --out DIR")
            raise SystemExit(f"error: {task} teacher not found at {path}; train it with "
                             f"`{command}` or pass --teacher {task}=PATH")
        teachers[task] = str(path.resolve())
    if "facades" in args.tasks and not os.environ.get("GAN_PRUNE_DATA"):
        raise SystemExit("error: task facades needs $GAN_PRUNE_DATA (or --data-root), the "
                         "folder that holds facades/")
    return teachers


def task_separable_students(args: argparse.Namespace) -> dict[tuple[str, str], str]:
    """The separable student file of every task and start (``Method.student_start``) the chosen
    methods narrow: ``--separable-student TASK=PATH`` (for every start of that task), else the
    start's place under ``runs/separable``; checked now."""
    starts = sorted({METHODS[m].student_start for m in args.methods
                     if METHODS[m].student == "pruned_separable"})
    return {(task, start): path for start in starts
            for task, path in _task_files(
                args, args.separable_student, "--separable-student", "separable student",
                lambda task, start=start: default_separable_student(task, start),
                lambda task, start=start: separable_student_command(task, start)).items()}


def task_supernets(args: argparse.Namespace) -> dict[str, str]:
    """The supernet file of every task when a chosen method needs one: ``--supernet
    TASK=PATH``, else the task's place under ``runs/supernets``; checked now."""
    if not any(METHODS[m].supernet for m in args.methods):
        return {}
    return _task_files(args, args.supernet, "--supernet", "supernet", default_supernet,
                       supernet_command)


def _task_files(args: argparse.Namespace, items: list[str] | None, flag: str, what: str,
                default: Callable[[str], Path], command: Callable[[str], str]
                ) -> dict[str, str]:
    """Per task of ``args.tasks``, the file ``flag`` names (``TASK=PATH`` items) or else
    ``default(task)``; a missing one stops the run before any cell starts, with the
    ``command`` that makes it."""
    given = task_paths(items, flag)
    files = {}
    for task in args.tasks:
        path = given.get(task, default(task))
        if not path.is_file():
            raise SystemExit(f"error: {task} {what} not found at {path}; train it with "
                             f"`{command(task)}` or pass {flag} {task}=PATH")
        files[task] = str(path.resolve())
    return files


# ----------------------------------------------------------------------------------------------
# teacher
# ----------------------------------------------------------------------------------------------
def teacher_overrides(args: argparse.Namespace) -> list[str]:
    return ["epochs:null", f"n_steps:{args.steps}", f"batch_size:{args.batch_size}",
            f"lr_decay_steps:{args.decay_steps}", f"seed:{args.seed}", "num_threads:1",
            "image_every:500", "save_every:250", f"progress:{str(args.progress).lower()}"]


def command_teacher(args: argparse.Namespace) -> int:
    _data_root(args)
    if not os.environ.get("GAN_PRUNE_DATA"):
        raise SystemExit("error: set $GAN_PRUNE_DATA or --data-root (folder holding facades/)")
    from gan_prune_env.teacher.loop import train_teacher
    from gan_prune_env.train_teacher import build_config

    config = build_config("facades", overrides=teacher_overrides(args))
    began = time.perf_counter()
    path = train_teacher(config, args.out, resume=True)
    print(f"{path} ({time.perf_counter() - began:.0f} s)")
    return 0


SAME_OUTPUTS = ("psnr", "ssim")
"""The teacher's numbers that ``same-teacher`` compares to the last bit: means over every pixel
of the test images, equal only when the outputs are."""


def command_same_teacher(args: argparse.Namespace) -> int:
    """Show that the task's teacher file now holds the weights that a results file recorded
    under another SHA-1 (a retrain on the same kind of CPU, or a file with other metadata):
    its outputs on the records' test images give their teacher numbers to the last bit. Then
    record the alias (``store.TEACHER_ALIASES``), so the file's cells resume and pair with new
    ones; otherwise say what differs."""
    import torch

    from agents.run.artifacts import MAIN
    from compare.cells import evaluate_against_teacher, git_commit, host_info
    from gan_prune_env.checkpoint import load_generator
    from gan_prune_env.tasks import get_task, teacher_path

    results = Path(args.results)
    records = [r for r in read_records(results) if r.get("task") == args.task]
    recorded = sorted({r["teacher_sha1"] for r in records})
    if not recorded:
        raise SystemExit(f"error: {results} holds no {args.task} results (missing or empty); "
                         "name the results file whose teacher to check")
    if len(recorded) != 1:
        raise SystemExit(f"error: {results} holds {args.task} results of {len(recorded)} "
                         "teachers; same-teacher needs a file of one")
    args.tasks = [args.task]
    data_root = _data_root(args)
    task = get_task(args.task, data_root=data_root)
    path = Path(task_teachers(args).get(args.task) or teacher_path(task))
    sha1 = file_sha1(path)
    if same_teacher(sha1, recorded[0], teacher_aliases(Path(args.aliases))):
        print(f"{path} is the teacher of {results}'s {args.task} results already")
        return 0
    torch.set_num_threads(1)  # as the cells evaluate
    teacher = load_generator(path, MAIN[task.family][0])
    quality = evaluate_against_teacher(teacher, teacher, task, records[0]["eval_images"],
                                       fid=False)
    wanted = records[0]["teacher_quality"]
    differ = {k: (wanted[k], float(quality[k])) for k in SAME_OUTPUTS if wanted[k] != quality[k]}
    if differ:
        raise SystemExit(f"error: {path} is another teacher than {results}'s {args.task} "
                         f"results (recorded, measured: {differ}); start a new results file "
                         "for it")
    add_teacher_alias({"task": args.task, "teacher_sha1": sha1, "same_as": recorded[0],
                       "evidence": {"eval_images": records[0]["eval_images"],
                                    **{k: wanted[k] for k in SAME_OUTPUTS}},
                       "commit": git_commit(), "host": host_info()}, Path(args.aliases))
    print(f"{path} holds the weights of {results}'s {args.task} teacher ({recorded[0][:12]}): "
          f"recorded in {args.aliases}")
    return 0


def command_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    results = Path(args.results) if args.results else out / RESULTS_FILE
    make_report(results, out)
    return 0


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) cells, then write the report")
    run.add_argument("--tasks", nargs="+", default=None, help=f"of {list(TASKS)}")
    run.add_argument("--budgets", nargs="+", type=float, default=None,
                     help="generator kept-MACs budgets (env budget_g), default 0.25 0.10")
    run.add_argument("--methods", nargs="+", default=None, help=f"of {list(METHODS)}")
    run.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2")
    run.add_argument("--rounds", type=int, default=None, help="search rounds (default 200)")
    run.add_argument("--finetune-steps", type=int, default=None,
                     help="default: the recipe's (FinetuneConfig().steps)")
    run.add_argument("--eval-images", type=int, default=None, help="test images (default 100)")
    run.add_argument("--recipe", nargs="+", default=None, metavar="KEY:VALUE",
                     help="fine-tuning recipe changes (FinetuneConfig fields), e.g. "
                          "feature_layers:auto ema_decay:0.999; default: the project's recipe")
    run.add_argument("--env", nargs="+", default=None, metavar="KEY:VALUE",
                     help="env changes for every cell (EnvConfig fields), e.g. budget_d:0.1; "
                          "default: the env's defaults")
    run.add_argument("--latency-runs", type=int, default=None, help="default 30")
    run.add_argument("--workers", type=int, default=1,
                     help="cells run in parallel processes (1 torch thread each)")
    add_ray_argument(run)
    run.add_argument("--quick", action="store_true",
                     help="smoke preset: default task, 25%%, uniform+mggc, seed 0, 8 rounds, "
                          "4 fine-tuning steps, 16 test images (explicit flags win)")
    run.add_argument("--teacher", action="append", metavar="TASK=PATH",
                     help="teacher checkpoint of a task: needed where the task ships none "
                          "(defaults: " + ", ".join(
                         f"{t}={rel_path(p)}" for t, p in DEFAULT_TEACHERS.items()) + "), and it replaces "
                          "a shipped one")
    run.add_argument("--supernet", action="append", metavar="TASK=PATH",
                     help="generator supernet of a task, for the methods that use one "
                          "(default: runs/supernets/TASK/supernet.pt)")
    run.add_argument("--separable-student", action="append", metavar="TASK=PATH",
                     help="separable student of a task, for pruned_separable_teacher_targets "
                          "(default: runs/separable/TASK/generator.pt)")
    run.add_argument("--save-generator", default=None, metavar="PATH",
                     help="keep the fine-tuned pair of a separable student's cell (one "
                          "cell) as a run's pruned.pt, which --separable-student (and "
                          "train_agents.py --separable-student) narrow: how a task's separable "
                          "student is made")
    run.add_argument("--data-root", default=None,
                     help="folder holding facades/ (default $GAN_PRUNE_DATA)")
    run.add_argument("--out", default=None,
                     help=f"report folder (default {rel_path(DEFAULT_OUT)}; with --quick "
                          f"{rel_path(QUICK_OUT)}, so a smoke run never mixes into the real "
                          "results)")
    run.add_argument("--results", default=None, help=f"JSONL file (default OUT/{RESULTS_FILE})")
    run.add_argument("--work-dir", default=None, help="scratch folder for fine-tuning states")
    run.add_argument("--no-report", action="store_true", help="skip the report at the end")

    rep = sub.add_parser("report", help="aggregate the JSONL into markdown and plots")
    rep.add_argument("--out", default=str(DEFAULT_OUT))
    rep.add_argument("--results", default=None)

    same = sub.add_parser("same-teacher", help="check that the task's teacher file holds the "
                          "weights a results file recorded under another SHA-1, and record it")
    same.add_argument("--task", required=True, choices=TASKS)
    same.add_argument("--results", required=True, help="JSONL file of the task's cells")
    same.add_argument("--teacher", action="append", metavar="TASK=PATH",
                      help="the teacher file (default: as for run)")
    same.add_argument("--aliases", default=str(TEACHER_ALIASES),
                      help=f"where aliases are kept (default {rel_path(TEACHER_ALIASES)})")
    same.add_argument("--data-root", default=None)

    teach = sub.add_parser("teacher", help="train the small facades teacher (resumable)")
    teach.add_argument("--out", default=str(DEFAULT_TEACHERS["facades"].parent))
    teach.add_argument("--steps", type=int, default=1000)
    teach.add_argument("--batch-size", type=int, default=1)
    teach.add_argument("--decay-steps", type=int, default=500)
    teach.add_argument("--seed", type=int, default=0)
    teach.add_argument("--data-root", default=None)
    teach.add_argument("--progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return {"run": command_run, "report": command_report, "teacher": command_teacher,
            "same-teacher": command_same_teacher}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
