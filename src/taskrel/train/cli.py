"""Sub-commands `train`, `sweep` and `gains`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taskrel.data import LOADERS, load_dataset
from taskrel.gains import GainTable
from taskrel.train.config import TrainConfig
from taskrel.train.executors import EXECUTORS
from taskrel.train.store import RunStore
from taskrel.train.sweep import run_sweep
from taskrel.train.trainer import Trainer

TRAINING_OPTIONS = ("lr", "momentum", "batch_size", "max_steps", "patience", "patience_steps")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Flags that override `TrainConfig` defaults (ETAP's Chemical protocol)."""
    defaults = TrainConfig()
    group = parser.add_argument_group("training protocol")
    for name in TRAINING_OPTIONS:
        value = getattr(defaults, name)
        group.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"(default {value})")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{name: getattr(args, name) for name in TRAINING_OPTIONS})


def _train(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json

    dataset = load_dataset(args.dataset)
    result = Trainer(dataset, args.group, config_from_args(args), seed=args.seed).fit()
    payload = {
        "dataset": result.dataset,
        "group": "|".join(result.group),
        "seed": result.seed,
        "test_loss": result.test_loss,
        "val_loss": result.val_loss,
        "test_metric": result.test_metric,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
    }
    if args.json:
        emit_json(payload)
    else:
        for task, loss in result.test_loss.items():
            print(f"{task}\ttest loss {loss:.4f}\ttest metric {result.test_metric[task]:.4f}")
        print(f"{result.epochs} epochs, {result.steps} steps, {result.seconds:.1f} s")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json

    report = run_sweep(
        args.dataset,
        args.groups,
        args.seeds,
        args.store,
        config=config_from_args(args),
        workers=args.workers,
        executor=args.executor,
        address=args.address,
        retry_failed=args.retry_failed,
        group_seed=args.group_seed,
        progress=not args.quiet and not args.json,
    )
    message = (
        f"nothing to do: all {report.planned} runs are already in {args.store}"
        if report.nothing_to_do
        else f"{report.done} runs done, {report.failed} failed, {report.skipped} already stored "
        f"({report.planned} planned) in {report.seconds:.1f} s"
    )
    if args.json:
        emit_json(
            {
                "planned": report.planned,
                "skipped": report.skipped,
                "done": report.done,
                "failed": report.failed,
                "seconds": round(report.seconds, 3),
                "message": message,
            }
        )
    else:
        print(message, file=sys.stderr)
    return 1 if report.failed else 0


def _gains(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json

    tasks = load_dataset(args.dataset).task_names
    with RunStore.open(args.store, args.dataset) as store:
        runs = [(r.group, r.seed, r.val_loss, r.test_loss) for r in store.records("done")]
    table = GainTable.from_runs(runs, tasks, split=args.split)
    out = table.mean() if args.mean else table.frame
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        out.to_parquet(path, index=False)
    else:
        out.to_csv(path, index=False, float_format="%.6g")
    summary = {"rows": len(out), "groups": int(out["group"].nunique()), "out": str(path), "split": args.split}
    if args.json:
        emit_json(summary)
    else:
        print(f"wrote {summary['rows']} rows ({summary['groups']} groups) to {path}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train one task group and print per-task test losses")
    train.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    train.add_argument("--group", required=True, help='tasks joined by "|", e.g. "83|78"')
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--json", action="store_true")
    add_training_options(train)
    train.set_defaults(func=_train)

    sweep = subparsers.add_parser("sweep", help="train many groups × seeds into a resumable SQLite store")
    sweep.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    sweep.add_argument("--groups", required=True, help="all | pairs | size:K | random:N | FILE")
    sweep.add_argument("--seeds", type=int, required=True, help="number of seeds (0..S-1)")
    sweep.add_argument("--store", required=True, help="SQLite file (created if absent)")
    sweep.add_argument("--workers", type=int, default=1)
    sweep.add_argument("--executor", choices=EXECUTORS, default="local")
    sweep.add_argument("--address", help="address of an existing Ray cluster (with --executor ray)")
    sweep.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    sweep.add_argument("--group-seed", type=int, default=0, help="seed of random:N group sampling")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--json", action="store_true")
    add_training_options(sweep)
    sweep.set_defaults(func=_sweep)

    gains = subparsers.add_parser("gains", help="export measured gains over STL from a run store")
    gains.add_argument("--store", required=True)
    gains.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    gains.add_argument("--out", required=True, help="CSV (or .parquet) file")
    gains.add_argument("--split", choices=("test", "val"), default="test")
    gains.add_argument("--mean", action="store_true", help="one row per (group, task): mean and std over seeds")
    gains.add_argument("--json", action="store_true")
    gains.set_defaults(func=_gains)
