"""``taskrel select``: choose task groups from a candidate table or a pairwise matrix.

``--table FILE.csv``: long format ``candidate,task,value[,cost]`` (cost: one number per candidate,
default 1), solved by the exact candidate MILP; candidates may overlap unless ``--partition``.
``--pairwise MATRIX.csv``: square matrix, header row and first column are task names, row =
source, column = target (what ``taskrel affinity`` writes); solved by PTG's compact program, which
partitions the tasks (a seeded local search, ``--seed``, gives the incumbent; the reported gap is
proven against an eigenvalue or HiGHS bound). Infeasible constraints exit with code 2 and ``"status": "infeasible"``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from taskrel.choices import DEFAULT_RESOURCE, SELECTION_RULES
from taskrel.cli.common import emit_json
from taskrel.errors import ConfigError, InfeasibleError

if TYPE_CHECKING:
    from taskrel.select.candidates import Selection


def _pair(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected two task names as A,B, got {text!r}")
    return parts[0], parts[1]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "select",
        help="choose task groups to train (exact MILP on HiGHS)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", metavar="FILE.csv", help="long table candidate,task,value[,cost]")
    source.add_argument("--pairwise", metavar="MATRIX.csv", help="pairwise matrix S[source, target]")
    parser.add_argument("--sense", choices=("max", "min"), default="max", help="maximise gains or minimise losses")
    parser.add_argument("--rule", choices=SELECTION_RULES, default="ptg", help="group score from a pairwise matrix")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--max-groups", type=int, metavar="K", help="at most K groups")
    count.add_argument("--groups", type=int, metavar="K", help="exactly K groups")
    parser.add_argument("--budget", type=float, metavar="B", help=f"total {DEFAULT_RESOURCE} of the chosen groups ≤ B")
    parser.add_argument("--min-size", type=int, default=1, metavar="A", help="smallest group size")
    parser.add_argument("--max-size", type=int, metavar="B", help="largest group size")
    parser.add_argument(
        "--together",
        type=_pair,
        action="append",
        default=[],
        metavar="A,B",
        help="tasks A and B must be served by the same group (repeatable)",
    )
    parser.add_argument(
        "--apart",
        type=_pair,
        action="append",
        default=[],
        metavar="A,B",
        help="no chosen group may hold both A and B (repeatable)",
    )
    parser.add_argument("--partition", action="store_true", help="each task in exactly one group")
    parser.add_argument("--time-limit", type=float, metavar="S", help="stop after S seconds (reports the gap)")
    parser.add_argument(
        "--gap", type=float, default=0.0, metavar="G", help="stop once proven within relative gap G (default 0)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the local search that seeds --pairwise solves (default 0)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # start-up: pandas and SciPy's HiGHS, when a selection runs
    from taskrel.select.candidates import Constraints
    from taskrel.select.compact import PairwiseProblem
    from taskrel.select.program import GroupingProblem
    from taskrel.select.scores import read_matrix_csv

    constraints = Constraints(
        max_groups=args.max_groups,
        n_groups=args.groups,
        budgets={DEFAULT_RESOURCE: args.budget} if args.budget is not None else {},
        min_size=args.min_size,
        max_size=args.max_size,
        together=tuple(args.together),
        apart=tuple(args.apart),
        partition=args.partition or args.pairwise is not None,
    )
    try:
        if args.table is not None:
            problem = GroupingProblem.from_csv(args.table, args.sense, constraints)
        else:
            if args.budget is not None:
                raise ConfigError("--budget needs explicit candidates (--table); --pairwise takes --max-groups")
            tasks, matrix = read_matrix_csv(args.pairwise)
            problem = PairwiseProblem(tuple(tasks), matrix, args.rule, args.sense, constraints)
        if isinstance(problem, PairwiseProblem):
            selection = problem.solve(time_limit=args.time_limit, gap=args.gap, seed=args.seed)
        else:
            selection = problem.solve(time_limit=args.time_limit, gap=args.gap)
    except InfeasibleError as exc:
        print(f"taskrel select: {exc}", file=sys.stderr)
        if args.json:
            emit_json({"status": "infeasible", "constraint": exc.constraint, "message": str(exc)})
        return 2
    if args.json:
        emit_json(selection.to_dict())
    else:
        _print(selection)
    return 0


def _print(selection: Selection) -> None:
    gap = f", gap {selection.gap:.2%}" if selection.status != "optimal" else ""
    print(f"{selection.status}: objective {selection.objective:.6g} in {selection.seconds:.2f} s{gap}")
    for candidate in selection.selected:
        served = [t for t, c in selection.serving.items() if c == candidate]
        print(f"  {candidate}: serves {', '.join(served) if served else '(none)'}")
    unserved = [t for t, c in selection.serving.items() if c is None]
    if unserved:
        print(f"  unserved: {', '.join(unserved)}")
