"""The `taskrel` command: one entry point, one sub-command per capability.

Each capability module exposes ``register(subparsers)``, which adds its sub-command and sets
``func`` on the parsed arguments. Exit codes: 0 success, 1 a sweep with failed runs, 2 a usage
error or a `taskrel.errors.TaskrelError` (bad input, infeasible constraints, ...), printed as one
line on stderr, 3 an internal error (one line, and the traceback with ``--debug``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
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
    "taskrel.grouping.cli",
)


def emit_json(payload: object) -> None:
    """Print one JSON document on stdout (the machine-readable output of every command)."""
    json.dump(payload, sys.stdout, indent=2, sort_keys=False, default=float)
    sys.stdout.write("\n")


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one stderr line (exit 2), like every other error."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: Commands whose module is registered alone, so that bad arguments fail before torch is imported.
LIGHT_COMMANDS = {"gmrf": "taskrel.decentral.cli"}


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = Parser(prog="taskrel", description="Learn how tasks relate in multi-task learning, and act on it.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    light = LIGHT_COMMANDS.get(command)
    args = build_parser((light,) if light else COMMAND_MODULES).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TaskrelError as exc:
        print(f"taskrel {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, or an error of a user's own code: one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(
            f"taskrel {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(rerun as `taskrel --debug ...` for the traceback)",
            file=sys.stderr,
        )
        return 3


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
