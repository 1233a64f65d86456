"""Sub-command `auxinash`: AuxiNash's illustrative problem (`taskrel auxinash toy`)."""

from __future__ import annotations

import argparse
import sys

from taskrel.weighting.toy import toy_data, train_toy

#: Meta learning rate of the toy problem: its hypergradients are small, so the reference's 5e-3
#: moves the preferences too slowly to matter before training reaches the Pareto front.
TOY_META_LR = 5e-2


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


def _toy(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json

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
