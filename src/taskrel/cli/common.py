"""What every command shares: the parser class, JSON output, and the `--problem`, training-protocol,
`--group-batch` and task-weighting options.

Command modules import this module, never the reverse. Like them, it imports only what builds a
parser (no torch); what a command runs is imported when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys

from taskrel.choices import GROUP_BATCH, META_DATA, TASK_WEIGHTINGS
from taskrel.errors import ConfigError
from taskrel.problems.protocol import Problem
from taskrel.problems.registry import load_problem
from taskrel.train.config import TrainConfig

#: `TrainConfig` fields a command line may override for a built-in problem.
TRAINING_OPTIONS = ("lr", "momentum", "batch_size", "max_steps", "patience", "patience_steps", "optimizer")


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one stderr line (exit 2), like every other error."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def emit_json(payload: object) -> None:
    """Print one JSON document on stdout (the machine-readable output of every command)."""
    json.dump(payload, sys.stdout, indent=2, sort_keys=False, default=float)
    sys.stdout.write("\n")


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
    group = parser.add_argument_group("task weighting (default: the sum of the task losses)")
    group.add_argument(
        flag,
        dest="task_weighting",
        choices=TASK_WEIGHTINGS,
        metavar="METHOD",
        help=f"weight the tasks of every run of 2+ tasks by METHOD ({', '.join(TASK_WEIGHTINGS)})",
    )
    group.add_argument(
        "--main",
        metavar="TASK",
        help="auxiliary learning: the main task (early stopping watches it; auxinash and gcs need it)",
    )
    group.add_argument("--meta-data", choices=META_DATA, default="train",
                       help="auxinash: the main task's meta batches from training rows (default) or from the "
                       "validation rows early stopping watches")  # fmt: skip


def weighted_from_args(problem: Problem, args: argparse.Namespace) -> Problem:
    """`problem`, weighted as `--weighting` / `--main` / `--meta-data` ask (`taskrel.weighting.weighted`)."""
    if args.task_weighting is None:
        if args.main is not None:
            raise ConfigError("--main names the main task of a weighting: give the weighting too")
        return problem
    from taskrel.weighting.weighted import WeightedProblem, WeightingSpec  # start-up: torch, when weighting

    return WeightedProblem(problem, WeightingSpec(args.task_weighting, args.main, meta=args.meta_data))
