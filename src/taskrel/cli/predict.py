"""Command `evaluate-predictors`: the ETAP paper's protocol on a measured gain table."""

from __future__ import annotations

import argparse
import sys

from taskrel.choices import PREDICTORS, TEST_FRACTION
from taskrel.cli.common import emit_json
from taskrel.errors import ConfigError


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--train-sizes must be comma-separated integers, got {text!r}") from None
    return sizes


def _evaluate(args: argparse.Namespace) -> int:
    # start-up: pandas and scikit-learn, when predictors are evaluated (torch only for MTG-Net)
    from taskrel.affinity.matrix import AffinityMatrix
    from taskrel.gains import GainTable
    from taskrel.predict.evaluation import evaluate_predictors, measurable, selection_benchmark
    from taskrel.predict.registry import PREDICTORS as FACTORIES

    names = [n.strip() for n in args.methods.split(",")] if args.methods else list(PREDICTORS)
    unknown = [n for n in names if n not in PREDICTORS]
    if unknown:
        raise ConfigError(f"--methods: unknown method(s) {unknown}; available: {', '.join(PREDICTORS)}")
    methods = {name: FACTORIES[name] for name in names}
    affinity = AffinityMatrix.read_csv(args.affinity)
    table = GainTable.read_csv(args.gains, tasks=affinity.tasks)
    if not args.methods:
        methods, skipped = measurable(methods, table)
        if skipped:
            print(f"not evaluating {', '.join(skipped)}: they need every task pair measured", file=sys.stderr)
    result = evaluate_predictors(
        table, affinity, methods, _sizes(args.train_sizes), args.repeats, args.test_size, args.seed,
        progress=not args.json,
    )  # fmt: skip
    payload = result["methods"]
    if args.selection:
        payload = {**payload, "selection": selection_benchmark(
            table, affinity, methods, _sizes(args.train_sizes)[-1], repeats=args.repeats, test_size=args.test_size,
            seed=args.seed, progress=not args.json)}  # fmt: skip
    if args.json:
        emit_json(payload)
    else:
        print(f"pairwise affinity vs measured pair gain: r = {result['pairwise_affinity_vs_gain']:.3f}")
        print(f"{result['test_groups']} test groups; r: pooled over (group, task) entries; r_task: per-task r across "
              "test groups, averaged over tasks (nan for the constant-per-task baselines all_task_gain, "
              "task_mean_gain)")  # fmt: skip
        for name, by_size in result["methods"].items():
            cells = "  ".join(f"|G|={s}: r={v['pearson']:.3f} r_task={v['within_task_pearson']:.3f} R²={v['r2']:.3f}"
                              for s, v in by_size.items())  # fmt: skip
            print(f"{name:16s} {cells}", file=sys.stdout)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-predictors", help="correlation / R² of gain predictors vs measured gains (ETAP protocol)"
    )
    parser.add_argument("--gains", required=True, help="per-seed gain table (layout of `taskrel gains`)")
    parser.add_argument("--affinity", required=True, help="affinity matrix CSV (layout of `taskrel affinity`)")
    parser.add_argument("--train-sizes", default="5,10,20,40", help="comma-separated |G_train| (default 5,10,20,40)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--test-size", type=float, default=TEST_FRACTION,
                        help="held-out test groups: a count, or a fraction of the measured multi-task groups "
                             f"(default {TEST_FRACTION})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", help=f"comma-separated subset of {','.join(PREDICTORS)}")
    parser.add_argument("--selection", action="store_true", help="also select 2–4 groups and report realised loss")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_evaluate)
