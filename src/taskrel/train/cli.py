"""Sub-commands `train`, `sweep`, `gains` and `problems`, and the `--problem` options of every command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taskrel.gains import GainTable
from taskrel.problem import Problem, check_fingerprint, load_problem, registered_problems
from taskrel.train.config import TrainConfig
from taskrel.train.executors import EXECUTORS
from taskrel.train.store import RunStore
from taskrel.train.sweep import GROUP_BATCH, run_sweep

TRAINING_OPTIONS = ("lr", "momentum", "batch_size", "max_steps", "patience", "patience_steps", "optimizer")


def add_group_batch_option(parser: argparse.ArgumentParser) -> None:
    """`--group-batch N`: the most runs trained at once as one batched model."""
    parser.add_argument(
        "--group-batch", type=int, default=GROUP_BATCH, metavar="N",
        help=f"train up to N runs at once as one batched model where the problem allows (default {GROUP_BATCH}; "
        "1: one at a time)",
    )  # fmt: skip


def add_problem_options(parser: argparse.ArgumentParser, training: bool = True, exclude: tuple[str, ...] = ()) -> None:
    """`--problem SPEC` (or its alias `--dataset NAME`) and, with `training`, the training-protocol flags
    (but those in `exclude`, where the command uses the flag for something else)."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--problem", help="a built-in name, pkg.module:attr or path/to/file.py:attr (see `taskrel problems`)"
    )
    which.add_argument("--dataset", dest="problem", help="a built-in dataset name (alias of --problem NAME)")
    if not training:
        return
    defaults = TrainConfig()
    group = parser.add_argument_group("training protocol (built-in problems; default: the problem's own)")
    for name in TRAINING_OPTIONS:
        if name in exclude:
            continue
        value = getattr(defaults, name)
        group.add_argument(f"--{name.replace('_', '-')}", type=type(value), help=f"(Chemical default {value})")


def training_options(args: argparse.Namespace) -> dict:
    """The training-protocol flags the user gave (the others keep the problem's defaults)."""
    return {name: getattr(args, name) for name in TRAINING_OPTIONS if getattr(args, name, None) is not None}


def problem_from_args(args: argparse.Namespace) -> Problem:
    return load_problem(args.problem, **training_options(args))


def add_weighting_options(parser: argparse.ArgumentParser, flag: str = "--weighting") -> None:
    """`--weighting METHOD` (or `flag`, where a command uses that name otherwise), `--main TASK` and
    `--meta-data`: every run of two or more tasks weighted (`weighted_from_args`)."""
    from taskrel.weighting.weighted import META_DATA, WEIGHTINGS

    group = parser.add_argument_group("task weighting (default: the sum of the task losses)")
    group.add_argument(flag, dest="task_weighting", choices=WEIGHTINGS, metavar="METHOD",
                       help=f"weight the tasks of every run of 2+ tasks by METHOD ({', '.join(WEIGHTINGS)})")
    group.add_argument("--main", metavar="TASK",
                       help="auxiliary learning: the main task (early stopping watches it; auxinash and gcs need it)")
    group.add_argument("--meta-data", choices=META_DATA, default="train",
                       help="auxinash: the main task's meta batches from training rows (default) or from the "
                       "validation rows early stopping watches")  # fmt: skip


def weighted_from_args(problem: Problem, args: argparse.Namespace) -> Problem:
    """`problem`, weighted as `--weighting` / `--main` / `--meta-data` ask (`taskrel.weighting.weighted`)."""
    from taskrel.errors import ConfigError
    from taskrel.weighting.weighted import WeightedProblem, WeightingSpec

    if args.task_weighting is None:
        if args.main is not None:
            raise ConfigError("--main names the main task of a weighting: give the weighting too")
        return problem
    return WeightedProblem(problem, WeightingSpec(args.task_weighting, args.main, meta=args.meta_data))


def _train(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json
    from taskrel.groups import ordered, parse_group

    problem = weighted_from_args(problem_from_args(args), args)
    group = ordered(parse_group(args.group, problem.tasks, "--group"), problem.tasks)
    preferences = None
    if args.task_weighting is None:
        result = problem.train(group, args.seed)
    else:
        from taskrel.weighting.weighted import train_weighted

        run = train_weighted(problem.problem, group, args.seed, problem.spec)
        result, preferences = run.result, run.final_preferences
    payload = {
        "problem": problem.fingerprint().get("name", args.problem),
        "group": "|".join(group),
        "seed": args.seed,
        "weighting": None if args.task_weighting is None else problem.spec.to_dict(),
        "preferences": preferences,
        "test_loss": result.test_loss,
        "val_loss": result.val_loss,
        "test_metric": result.test_metric,
        "epochs": getattr(result, "epochs", None),
        "best_epoch": getattr(result, "best_epoch", None),
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
    }
    if args.json:
        emit_json(payload)
    else:
        for task in group:
            metric = "" if result.test_metric is None else f"\ttest metric {result.test_metric[task]:.4f}"
            print(f"{task}\ttest loss {result.test_loss[task]:.4f}{metric}")
        counts = [f"{payload['epochs']} epochs"] if payload["epochs"] is not None else []
        counts += [f"{result.steps} steps"] if result.steps else []
        counts += [f"{result.seconds:.1f} s"] if result.seconds else []
        if counts:  # what the problem reported about its training
            print(", ".join(counts))
        if preferences is not None:
            print("AuxiNash preferences: " + ", ".join(f"{t} {p:.3f}" for t, p in preferences.items()))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json

    report = run_sweep(
        weighted_from_args(problem_from_args(args), args),
        args.groups,
        args.seeds,
        args.store,
        workers=args.workers,
        executor=args.executor,
        address=args.address,
        retry_failed=args.retry_failed,
        group_seed=args.group_seed,
        progress=not args.quiet and not args.json,
        group_batch=args.group_batch,
    )
    message = report.message(args.store)
    failures = [{"group": k.group, "seed": k.seed, "error": e} for k, e in report.failures]
    if args.json:
        emit_json(
            {
                "planned": report.planned,
                "skipped": report.skipped,
                "done": report.done,
                "failed": report.failed,
                "kept_failed": report.kept_failed,
                "failures": failures,
                "seconds": round(report.seconds, 3),
                "message": message,
            }
        )
    else:
        print(message, file=sys.stderr)
        for failure in failures[:10]:
            print(f"failed: {failure['group']} seed {failure['seed']}: {failure['error']}", file=sys.stderr)
        if len(failures) > 10:
            print(f"... and {len(failures) - 10} more failed runs", file=sys.stderr)
    return 1 if report.failures else 0


def _gains(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json

    problem = load_problem(args.problem)
    with RunStore.open(args.store, check_fingerprint(problem).get("name", "problem")) as store:
        runs = [(r.group, r.seed, r.val_loss, r.test_loss) for r in store.records("done")]
    table = GainTable.from_runs(runs, problem.tasks, split=args.split)
    out = table.mean() if args.mean else table.frame
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        out.to_parquet(path, index=False)
    else:
        out.to_csv(path, index=False, float_format="%.6g")
    summary = {"rows": len(out), "groups": int(out["group"].nunique()), "out": str(path), "split": args.split}
    if args.json:
        emit_json(summary)
    else:
        print(f"wrote {summary['rows']} rows ({summary['groups']} groups) to {path}", file=sys.stderr)
    return 0


def _problems(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json

    names = registered_problems()
    if args.json:
        emit_json(names)
    else:
        for name, target in names.items():
            print(f"{name}\t{target}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train one task group and print per-task test losses")
    add_problem_options(train)
    train.add_argument("--group", required=True, help='tasks joined by "|", e.g. "83|78"')
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--json", action="store_true")
    add_weighting_options(train)
    train.set_defaults(func=_train)

    sweep = subparsers.add_parser("sweep", help="train many groups × seeds into a resumable SQLite store")
    add_problem_options(sweep)
    sweep.add_argument("--groups", required=True, help="all | pairs | size:K | random:N | FILE")
    sweep.add_argument("--seeds", type=int, required=True, help="number of seeds (0..S-1)")
    sweep.add_argument("--store", required=True, help="SQLite file (created if absent)")
    sweep.add_argument("--workers", type=int, default=1)
    sweep.add_argument("--executor", choices=EXECUTORS, default="local")
    sweep.add_argument("--address", help="address of an existing Ray cluster (with --executor ray)")
    add_group_batch_option(sweep)
    sweep.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    sweep.add_argument("--group-seed", type=int, default=0, help="seed of random:N group sampling")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--json", action="store_true")
    add_weighting_options(sweep)
    sweep.set_defaults(func=_sweep)

    gains = subparsers.add_parser("gains", help="export measured gains over STL from a run store")
    add_problem_options(gains, training=False)
    gains.add_argument("--store", required=True)
    gains.add_argument("--out", required=True, help="CSV (or .parquet) file")
    gains.add_argument("--split", choices=("test", "val"), default="test")
    gains.add_argument("--mean", action="store_true", help="one row per (group, task): mean and std over seeds")
    gains.add_argument("--json", action="store_true")
    gains.set_defaults(func=_gains)

    problems = subparsers.add_parser("problems", help="list the problems a --problem spec can name")
    problems.add_argument("--json", action="store_true")
    problems.set_defaults(func=_problems)
