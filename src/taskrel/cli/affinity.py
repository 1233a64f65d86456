"""Command `affinity`: one all-task training run with an affinity collector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taskrel.choices import AFFINITY_METHODS, AFFINITY_WEIGHTINGS, PTG_REFERENCES
from taskrel.cli.common import add_problem_options, emit_json, problem_from_args


def _affinity(args: argparse.Namespace) -> int:
    from taskrel.affinity.measure import measure_affinity  # start-up: torch

    problem = problem_from_args(args)
    matrix, result = measure_affinity(
        problem,
        args.method,
        epochs=args.epochs,
        every=args.every,
        seed=args.seed,
        weighting=args.weighting,
        momentum=args.etap_momentum,
        normalize=not args.no_normalize,
        reference=args.reference,
        sample=args.sample,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "method": args.method,
        "tasks": list(problem.tasks),
        "steps": 0,
        "seconds": 0.0,
        "train_seconds": round(result.seconds, 4),
    }
    if matrix is not None:
        matrix.to_csv(out / "affinity.csv")
        matrix.plot(out / "affinity.png", title=f"{args.method.upper()} affinity on {args.problem}: A[source, target]")
        payload.update(steps=matrix.steps, seconds=round(matrix.seconds, 4), stalled=list(matrix.stalled))
        if matrix.update:
            payload["update"] = matrix.update
    if args.json:
        emit_json(payload)
    else:
        where = f"; wrote {out / 'affinity.csv'} and {out / 'affinity.png'}" if matrix is not None else ""
        of = f" of {result.seconds:.1f} s training" if result.seconds > 0 else ""  # a user's loop may not time itself
        scored = f" (update direction: {matrix.update})" if matrix is not None and matrix.update else ""
        print(f"{args.method}{scored}: {payload['steps']} steps collected in {payload['seconds']:.1f} s{of}{where}",
              file=sys.stderr)  # fmt: skip
        if matrix is not None and matrix.stalled:
            print(f"validation loss of task(s) {', '.join(matrix.stalled)} never improved: their columns weight "
                  "the epochs by collected steps", file=sys.stderr)  # fmt: skip
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("affinity", help="measure task affinity during one all-task training run")
    add_problem_options(parser, exclude=("momentum",))  # --momentum is ETAP's option here
    parser.add_argument("--method", required=True, choices=AFFINITY_METHODS)
    parser.add_argument("--epochs", type=int, help="train exactly N epochs (default: until early stopping)")
    parser.add_argument("--every", type=int, default=1, help="collect every K-th step (default 1)")
    parser.add_argument(
        "--sample", type=float, default=1.0, help="TAG/PTG: fraction of source tasks / pairs per collected step"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(  # its own dest: args.momentum would be read as the training protocol's momentum
        "--momentum",
        dest="etap_momentum",
        action="store_true",
        help="ETAP: score the optimiser's step (with its momentum) instead of the raw gradient",
    )
    parser.add_argument("--no-normalize", action="store_true", help="ETAP: do not divide by the target's loss")
    parser.add_argument("--reference", choices=PTG_REFERENCES, default="doubled", help="PTG reference step")
    parser.add_argument(
        "--weighting",
        choices=AFFINITY_WEIGHTINGS,
        help="aggregate steps uniformly (ETAP eq. 6) or by the targets' validation improvement "
        "(default: validation for etap, steps for tag and ptg)",
    )
    parser.add_argument("--out", required=True, help="output folder for affinity.csv and affinity.png")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_affinity)
