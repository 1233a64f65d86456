"""The `taskrel` command: one entry point, one command module per capability.

`COMMANDS` is the command table: each module adds its commands' parsers and handlers
(``register(subparsers)``). Command modules import only what builds a parser (no torch), so
``--help`` and bad arguments answer at once; a handler imports what it runs. Nothing in the
library imports this package.

Exit codes: 0 success, 1 a sweep with failed runs, 2 a usage error or a `taskrel.errors.TaskrelError`
(bad input, infeasible constraints, ...), printed as one line on stderr, 3 an internal error (one
line, and the traceback with ``--debug``).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from taskrel.cli import affinity, decentral, grouping, predict, select, train, weighting
from taskrel.cli.common import Parser
from taskrel.errors import TaskrelError

#: Command modules, in the order their commands appear in `taskrel --help`.
COMMANDS = (train, affinity, select, predict, weighting, decentral, grouping)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="taskrel", description="Learn how tasks relate in multi-task learning, and act on it.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
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
