"""Command `auxinash`: AuxiNash on a user's problem (`taskrel auxinash run`) and its illustrative
problem (`taskrel auxinash toy`)."""

from __future__ import annotations

import argparse
import sys

from taskrel.choices import AUXILIARY_METHODS, DEFAULT_AUXILIARY_METHODS, META_DATA, TOY_META_LR
from taskrel.cli.common import add_problem_options, emit_json, problem_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("auxinash", help="AuxiNash task weighting with learned preferences")
    problems = parser.add_subparsers(dest="problem", metavar="PROBLEM", required=True)
    toy = problems.add_parser(
        "toy", help="2-D linear regression with a helpful and a harmful auxiliary task (AuxiNash's illustration)"
    )
    toy.add_argument("--seed", type=int, default=0)
    toy.add_argument("--epochs", type=int, default=1000, help="training epochs (default 1000, as in the paper)")
    toy.add_argument("--meta-lr", type=float, default=TOY_META_LR, help=f"preference learning rate ({TOY_META_LR})")
    toy.add_argument("--json", action="store_true", help="print the result as JSON")
    toy.add_argument("--quiet", action="store_true", help="no progress bars")
    toy.set_defaults(func=_toy)

    run = problems.add_parser(
        "run", help="train a main task alone and with its auxiliaries (STL, LS, AuxiNash, ...) and compare"
    )
    add_problem_options(run)
    run.add_argument("--main", required=True, help="the main task")
    run.add_argument("--auxiliaries", help='auxiliary tasks joined by "," or "|" (default: every other task)')
    run.add_argument(
        "--methods",
        default=",".join(DEFAULT_AUXILIARY_METHODS),
        help=f"comma-separated, from {', '.join(AUXILIARY_METHODS)} (default {','.join(DEFAULT_AUXILIARY_METHODS)})",
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--meta-lr", type=float, help="AuxiNash's preference learning rate (default 5e-3)")
    run.add_argument("--meta-data", choices=META_DATA, default="train",
                     help="AuxiNash's meta batches of the main task: training rows (default) or the validation rows "
                     "early stopping watches")  # fmt: skip
    run.add_argument("--plot", help="PNG of AuxiNash's preferences over training (default: none)")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from taskrel.weighting.auxiliary import compare_auxiliary, plot_preferences  # start-up: torch

    auxiliaries = None if args.auxiliaries is None else [t for t in args.auxiliaries.replace("|", ",").split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    options = {} if args.meta_lr is None else {"auxinash": {"meta_lr": args.meta_lr}}
    comparison = compare_auxiliary(problem_from_args(args), args.main, auxiliaries, seed=args.seed, methods=methods,
                                   options=options, meta=args.meta_data)  # fmt: skip
    if args.plot:
        plot_preferences(comparison, args.plot)
    payload = comparison.to_dict()
    if args.json:
        emit_json(payload)
        return 0
    metric = payload["main_test_metric"]
    for method, loss in payload["main_test_loss"].items():
        extra = "" if metric is None else f"\ttest metric {metric[method]:.4f}"
        cost = 1000 * payload["seconds_per_step"][method]
        print(f"{method}\tmain-task test loss {loss:.4f}{extra}\t{cost:.2f} ms/step")
    if payload["preferences"] is not None:
        shares = ", ".join(f"{t} {p:.3f}" for t, p in payload["preferences"].items())
        print(f"AuxiNash preferences (sum 1 with the main task's {payload['main_preference']:.3f}): {shares}")
    return 0


def _toy(args: argparse.Namespace) -> int:
    from taskrel.weighting.toy import toy_data, train_toy  # start-up: torch

    quiet = args.quiet or not sys.stderr.isatty()
    data = toy_data(args.seed)
    runs = {
        method: train_toy(method, data, args.seed, epochs=args.epochs, quiet=quiet, auxinash_options=options)
        for method, options in (("auxinash", {"meta_lr": args.meta_lr}), ("ls", None), ("nash_mtl", None))
    }
    auxinash = runs["auxinash"]
    preferences = auxinash.preferences[-1] if auxinash.preferences else [1 / 3] * 3
    payload = {
        "preferences": preferences,
        "main_test_mse": auxinash.main_test_mse,
        "baselines": {"ls": runs["ls"].main_test_mse, "nash_mtl": runs["nash_mtl"].main_test_mse},
    }
    if args.json:
        emit_json(payload)
    else:
        print("learned preferences (main, helpful, harmful): " + ", ".join(f"{p:.4f}" for p in preferences))
        for method, run in runs.items():
            print(f"{method}\tmain-task test MSE {run.main_test_mse:.4f}\tw = ({run.w[0]:.3f}, {run.w[1]:.3f})")
    return 0
