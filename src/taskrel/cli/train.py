"""Commands `train`, `sweep`, `gains` and `problems`: train groups of a problem and read their runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taskrel.choices import EXECUTORS
from taskrel.cli.common import (
    add_group_batch_option,
    add_problem_options,
    add_weighting_options,
    emit_json,
    problem_from_args,
    weighted_from_args,
)
from taskrel.groups import ordered, parse_group
from taskrel.problems.registry import load_problem, registered_problems


def _train(args: argparse.Namespace) -> int:
    problem = weighted_from_args(problem_from_args(args), args)
    group = ordered(parse_group(args.group, problem.tasks, "--group"), problem.tasks)
    preferences = None
    if args.task_weighting is None:
        result = problem.train(group, args.seed)
    else:
        from taskrel.weighting.weighted import train_weighted  # start-up: torch

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
    from taskrel.train.sweep import run_sweep  # start-up: the sweep's engines

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
    from taskrel.gains import GainTable  # start-up: pandas

    table = GainTable.from_store(args.store, load_problem(args.problem), split=args.split)
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
