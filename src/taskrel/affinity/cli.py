"""Sub-command `affinity`: one all-task training run with an affinity collector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taskrel.affinity import COLLECTORS
from taskrel.affinity.collector import WEIGHTINGS
from taskrel.affinity.transfer_gain import REFERENCES
from taskrel.data import LOADERS, load_dataset
from taskrel.errors import ConfigError
from taskrel.train import TrainConfig, Trainer

METHODS = (*COLLECTORS, "none")


def make_collector(
    method: str,
    every: int = 1,
    momentum: bool = False,
    normalize: bool = True,
    reference: str = "doubled",
    weighting: str | None = None,
    sample: float = 1.0,
):
    """A collector by method name (``none`` → no collector); `weighting` None keeps the collector's default."""
    if method == "none":
        return None
    if method == "etap":
        return COLLECTORS["etap"](every, momentum=momentum, normalize=normalize, weighting=weighting)
    if method == "ptg":
        return COLLECTORS["ptg"](every, reference=reference, weighting=weighting, sample=sample)
    if method == "tag":
        return COLLECTORS["tag"](every, weighting=weighting, sample=sample)
    raise ConfigError(f"unknown affinity method {method!r}; use one of {METHODS}")


def measure_affinity(
    dataset,
    method: str,
    *,
    epochs: int | None = None,
    every: int = 1,
    seed: int = 0,
    config: TrainConfig | None = None,
    weighting: str | None = None,
    **options,
):
    """Train all tasks of `dataset` once with the collector; returns (matrix or None, TrainResult).

    `weighting` aggregates the collected steps (see `taskrel.affinity.collector`; None: the collector's
    default). `options` go to `make_collector` (momentum, normalize, reference, sample).

    With `epochs`, exactly that many epochs are trained (no early stopping), as for overhead
    measurements; otherwise the configuration's early stopping decides.
    """
    config = config or TrainConfig()
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"epochs must be ≥ 1, got {epochs}")
        config = TrainConfig.from_dict(
            {**config.to_dict(), "max_epochs": epochs, "patience": epochs + 1, "max_steps": 10**9}
        )
    collector = make_collector(method, every, weighting=weighting, **options)
    trainer = Trainer(dataset, dataset.task_names, config, seed=seed, callbacks=[collector] if collector else [])
    result = trainer.fit()
    return (collector.matrix() if collector else None), result


def _affinity(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json

    dataset = load_dataset(args.dataset)
    matrix, result = measure_affinity(
        dataset,
        args.method,
        epochs=args.epochs,
        every=args.every,
        seed=args.seed,
        momentum=args.momentum,
        normalize=not args.no_normalize,
        reference=args.reference,
        weighting=args.weighting,
        sample=args.sample,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "method": args.method,
        "tasks": dataset.task_names,
        "steps": 0,
        "seconds": 0.0,
        "train_seconds": round(result.seconds, 4),
    }
    if matrix is not None:
        matrix.to_csv(out / "affinity.csv")
        matrix.plot(out / "affinity.png", title=f"{args.method.upper()} affinity on {dataset.name}: A[source, target]")
        payload.update(steps=matrix.steps, seconds=round(matrix.seconds, 4))
    if args.json:
        emit_json(payload)
    else:
        where = f"; wrote {out / 'affinity.csv'} and {out / 'affinity.png'}" if matrix is not None else ""
        print(
            f"{args.method}: {payload['steps']} steps collected in {payload['seconds']:.1f} s of "
            f"{payload['train_seconds']:.1f} s training{where}",
            file=sys.stderr,
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("affinity", help="measure task affinity during one all-task training run")
    parser.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--epochs", type=int, help="train exactly N epochs (default: until early stopping)")
    parser.add_argument("--every", type=int, default=1, help="collect every K-th step (default 1)")
    parser.add_argument(
        "--sample", type=float, default=1.0, help="TAG/PTG: fraction of source tasks / pairs per collected step"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--momentum", action="store_true", help="ETAP: include the momentum term")
    parser.add_argument("--no-normalize", action="store_true", help="ETAP: do not divide by the target's loss")
    parser.add_argument("--reference", choices=REFERENCES, default="doubled", help="PTG reference step")
    parser.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        help="aggregate steps uniformly (ETAP eq. 6) or by the targets' validation improvement "
        "(default: validation for etap, steps for tag and ptg)",
    )
    parser.add_argument("--out", required=True, help="output folder for affinity.csv and affinity.png")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_affinity)
