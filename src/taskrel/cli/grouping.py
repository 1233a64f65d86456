"""Command `pipeline`: affinity → training groups → gain predictor → decision → serving → report."""

from __future__ import annotations

import argparse
from pathlib import Path

from taskrel.choices import AFFINITY_WEIGHTINGS, EXECUTORS, PIPELINE_WEIGHTING, SAMPLINGS
from taskrel.cli.common import (
    add_group_batch_option,
    add_problem_options,
    add_weighting_options,
    emit_json,
    problem_from_args,
    weighted_from_args,
)
from taskrel.errors import ConfigError
from taskrel.groups import group_name


def _pipeline(args: argparse.Namespace) -> int:
    from taskrel.grouping.pipeline import run_pipeline  # start-up: torch, scikit-learn

    if args.main is not None:
        raise ConfigError("the pipeline trains groups without any one main task: --main is for taskrel train and sweep")
    problem = weighted_from_args(problem_from_args(args), args)
    result = run_pipeline(
        problem, args.out, train_groups=args.train_groups, sampling=args.sampling,
        max_groups=args.max_groups, budget=args.budget, seeds=args.seeds, workers=args.workers,
        executor=args.executor, address=args.address, store=args.store, seed=args.seed, time_limit=args.time_limit,
        progress=not args.json and not args.quiet, group_batch=args.group_batch, weighting=args.weighting,
    )  # fmt: skip
    totals = result.totals()
    summary = {
        "default": result.serving.default, "chosen": result.chosen, "serving": result.served,
        "groups_taking_over": list(result.serving.groups),
        "total_test_loss": totals, "tasks_not_worse_than_default_on_test": result.not_worse_than_default(),
        "sampling": result.sampling, "training_groups": [group_name(p.group, result.tasks) for p in result.training],
        "report": str(Path(args.out) / "report.html"), "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
    }  # fmt: skip
    if args.json:
        emit_json(summary)
    else:
        moved = sum(s.moved for s in result.serving.tasks.values())
        gain = 100 * (totals["stl"] - totals["selected"]) / totals["stl"]
        print(
            f"default {result.serving.default}; chose {len(result.chosen)} new group(s); {moved} of "
            f"{len(result.tasks)} tasks moved off the default ({len(result.serving.groups)} group(s) taking over "
            f"for all their members): total test loss {totals['selected']:.4f} "
            f"(STL {totals['stl']:.4f}, one all-task model {totals['naive_mtl']:.4f}; {gain:+.1f}% vs STL)"
        )
        print(f"report: {summary['report']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pipeline", help="affinity → training groups → gain predictor → selection → report")
    add_problem_options(parser)
    parser.add_argument("--train-groups", type=int, default=10, help="groups trained to fit the predictor")
    parser.add_argument(
        "--sampling", choices=SAMPLINGS, default="random",
        help="how the training groups are chosen: at random, or adaptively for the decision (Thompson sampling)",
    )  # fmt: skip
    parser.add_argument("--max-groups", type=int, default=3, help="at most this many new groups are trained")
    parser.add_argument("--budget", type=float, help="limit on Σ|G| over the new groups")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per group (default 1)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--address", help="address of an existing Ray cluster")
    add_group_batch_option(parser)
    parser.add_argument(
        "--weighting", choices=AFFINITY_WEIGHTINGS, default=PIPELINE_WEIGHTING,
        help="how the affinity run's ETAP steps are aggregated (default: validation)",
    )  # fmt: skip
    add_weighting_options(parser, flag="--task-weighting")  # --weighting is the affinity's aggregation here
    parser.add_argument("--store", help="run store (default OUT/runs.db)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the affinity run, group sampling and serving")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds for the selection program")
    parser.add_argument("--out", required=True, help="output folder for report.html, report.md and figures")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_pipeline)
