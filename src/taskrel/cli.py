"""The `taskrel` command: one entry point, one sub-command per capability.

Each capability module exposes ``register(subparsers)``, which adds its sub-command and sets
``func`` on the parsed arguments. Errors raised on purpose (`taskrel.errors.TaskrelError`) are
printed as one line on stderr with exit code 2; nothing is swallowed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from taskrel.errors import TaskrelError

#: Modules that contribute sub-commands, in the order they appear in `taskrel --help`.
COMMAND_MODULES = (
    "taskrel.train.cli",
    "taskrel.affinity.cli",
    "taskrel.select.cli",
    "taskrel.predict.cli",
    "taskrel.weighting.cli",
    "taskrel.decentral.cli",
    "taskrel.pipeline",
)


def emit_json(payload: object) -> None:
    """Print one JSON document on stdout (the machine-readable output of every command)."""
    json.dump(payload, sys.stdout, indent=2, sort_keys=False, default=float)
    sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskrel", description="Learn how tasks relate in multi-task learning, and act on it."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TaskrelError as exc:
        print(f"taskrel {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
