"""The grouping pipeline a user runs, end to end, resumable from its run store.

STL runs → one all-task affinity run (ETAP) → a few sampled training groups → ETAP fit →
predicted gains of every candidate group → exact selection under the constraints → training of
the chosen groups → a report (HTML and Markdown) comparing the choice with single-task learning
and one all-task model. Every training goes through the same `RunStore`, so a second call with
the same arguments trains nothing that is already done.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from taskrel.affinity.cli import measure_affinity
from taskrel.affinity.matrix import AffinityMatrix
from taskrel.data import LOADERS, load_dataset
from taskrel.errors import ConfigError
from taskrel.gains import GainTable
from taskrel.groups import Group, all_groups, group_name
from taskrel.predict import EtapPredictor
from taskrel.select import Constraints, GroupingProblem
from taskrel.train.config import TrainConfig
from taskrel.train.store import RunStore
from taskrel.train.sweep import run_sweep, store_config, stratified_groups

#: Above this many tasks, candidate groups are too many to enumerate (use `taskrel select --pairwise`).
MAX_ENUMERATED_TASKS = 14


@dataclass
class PipelineResult:
    """Everything the report shows, with its provenance."""

    dataset: str
    tasks: list[str]
    seeds: list[int]
    config: TrainConfig
    store: str
    affinity: AffinityMatrix
    train_groups: list[Group]
    predictions: pd.DataFrame  # group, task, gain (predicted) for every candidate
    chosen: list[str]
    serving: dict[str, str]
    table: GainTable  # measured: singles, training groups, chosen groups
    cross_validated: pd.DataFrame  # group, task, predicted, measured for held-out training groups
    constraints: dict
    seconds: dict[str, float] = field(default_factory=dict)
    command: str = ""

    def per_task(self) -> pd.DataFrame:
        """Per task: STL loss, naive-MTL loss, serving group, predicted and realised gain and loss."""
        means = self.table.mean().set_index(["group", "task"])
        stl = self.table.stl_loss()
        everything = group_name(self.tasks, self.tasks)
        predicted = self.predictions.set_index(["group", "task"])["gain"]
        rows = []
        for t in self.tasks:
            group = self.serving[t]
            rows.append({
                "task": t, "serving_group": group, "stl_loss": stl[t],
                "naive_mtl_loss": means.loc[(everything, t), "test_loss"],
                "selected_loss": means.loc[(group, t), "test_loss"],
                "predicted_gain": float(predicted.get((group, t), 0.0)),
                "realised_gain": means.loc[(group, t), "gain"],
            })  # fmt: skip
        return pd.DataFrame(rows)

    def totals(self) -> dict[str, float]:
        frame = self.per_task()
        return {name: float(frame[f"{name}_loss"].sum()) for name in ("stl", "naive_mtl", "selected")}


def _candidates(tasks: list[str]) -> list[Group]:
    if len(tasks) > MAX_ENUMERATED_TASKS:
        raise ConfigError(
            f"{len(tasks)} tasks give {2 ** len(tasks) - 1} candidate groups, too many to enumerate "
            f"(limit {MAX_ENUMERATED_TASKS} tasks); use `taskrel select --pairwise` on an affinity matrix"
        )
    return list(all_groups(tasks))


def _table(store: RunStore, tasks: list[str]) -> GainTable:
    runs = [(r.group, r.seed, r.val_loss, r.test_loss) for r in store.records("done")]
    return GainTable.from_runs(runs, tasks)


def run_pipeline(
    dataset: str,
    out: str | Path,
    *,
    train_groups: int = 10,
    max_groups: int = 3,
    budget: float | None = None,
    seeds: int = 1,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    store: str | Path | None = None,
    config: TrainConfig | None = None,
    seed: int = 0,
    progress: bool = True,
) -> PipelineResult:
    """Run (or resume) the pipeline; writes ``out/report.html``, ``out/report.md`` and figures.

    `budget` bounds Σ|G| over the chosen groups (training compute grows with group size); single
    tasks are candidates too (keeping a task alone costs one network of size 1).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or TrainConfig()
    data = load_dataset(dataset)
    tasks = data.task_names
    candidates = _candidates(tasks)
    if train_groups < 1:
        raise ConfigError(f"--train-groups must be ≥ 1, got {train_groups}")
    store = Path(store) if store is not None else out / "runs.db"
    sweep = dict(config=config, workers=workers, executor=executor, address=address, progress=progress)
    seconds: dict[str, float] = {}
    everything = frozenset(tasks)

    started = time.perf_counter()
    run_sweep(dataset, [frozenset([t]) for t in tasks], seeds, store, **sweep)
    seconds["stl"] = time.perf_counter() - started

    started = time.perf_counter()
    affinity_file = out / "affinity.csv"
    if affinity_file.exists():
        affinity = AffinityMatrix.read_csv(affinity_file, method="etap-validation")
        if affinity.tasks != tuple(tasks):
            raise ConfigError(f"{affinity_file} is for tasks {affinity.tasks}, not {tuple(tasks)}; remove it")
    else:
        affinity, _ = measure_affinity(data, "etap", seed=seed, config=config, weighting="validation")
        affinity.to_csv(affinity_file)
    affinity.plot(out / "affinity.png", title=f"ETAP affinity on {dataset}: A[source, target]")
    seconds["affinity"] = time.perf_counter() - started

    started = time.perf_counter()
    sizes = range(2, len(tasks))
    sampled = stratified_groups(tasks, train_groups - 1, seed, sizes) if train_groups > 1 and len(tasks) > 2 else []
    training = [everything, *sampled]
    run_sweep(dataset, training, seeds, store, **sweep)
    seconds["training_groups"] = time.perf_counter() - started

    started = time.perf_counter()
    with RunStore(store, dataset, store_config(config)) as runs:
        table = _table(runs, tasks)
    names = {group_name(g, tasks) for g in training}
    measured = table.mean()
    train_frame = measured[measured["group"].isin(names)][["group", "task", "gain"]]
    model = EtapPredictor().fit(affinity, train_frame)
    predictions = model.predict(candidates)
    held_out = _cross_validate(affinity, train_frame, [g for g in training if len(g) >= 2], tasks)
    stl = table.stl_loss()
    frame = predictions.copy()
    frame["value"] = frame["task"].map(stl) * (1.0 - frame["gain"])
    frame["size"] = frame["group"].map(lambda g: len(str(g).split("|")))
    constraints = {"max_groups": max_groups, **({"budgets": {"size": budget}} if budget is not None else {})}
    problem = GroupingProblem.from_frame(
        frame[["group", "task", "value", "size"]], sense="min", constraints=Constraints(**constraints), tasks=tasks,
        cost_columns=["size"] if budget is not None else [],
    )  # fmt: skip
    selection = problem.solve()
    seconds["predict_and_select"] = time.perf_counter() - started

    started = time.perf_counter()
    chosen = [g for g in selection.selected if any(selection.serving[t] == g for t in tasks)]
    run_sweep(dataset, chosen, seeds, store, **sweep)
    with RunStore(store, dataset, store_config(config)) as runs:
        table = _table(runs, tasks)
    serving = table.serve(chosen)
    seconds["chosen_groups"] = time.perf_counter() - started

    result = PipelineResult(
        dataset, tasks, list(range(seeds)), config, str(store), affinity, training, predictions, chosen,
        serving, table, held_out, constraints, seconds, " ".join(["taskrel", *sys.argv[1:]]),
    )  # fmt: skip
    from taskrel.report.document import write_report

    write_report(result, out)
    return result


def _cross_validate(
    affinity: AffinityMatrix, frame: pd.DataFrame, groups: list[Group], tasks: list[str]
) -> pd.DataFrame:
    """Leave-one-group-out ETAP predictions for the training groups (what the fit did not see)."""
    rows = []
    for held in groups:
        name = group_name(held, tasks)
        rest = frame[frame["group"] != name]
        if rest["group"].nunique() < 2:
            continue
        predicted = EtapPredictor().fit(affinity, rest).predict([held])
        merged = predicted.merge(frame, on=["group", "task"], suffixes=("_pred", ""))
        rows += [{"group": name, "task": t, "predicted": p, "measured": m}
                 for t, p, m in zip(merged["task"], merged["gain_pred"], merged["gain"], strict=True)]  # fmt: skip
    return pd.DataFrame(rows, columns=["group", "task", "predicted", "measured"])


def _pipeline(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json
    from taskrel.train.cli import config_from_args

    result = run_pipeline(
        args.dataset, args.out, train_groups=args.train_groups, max_groups=args.max_groups, budget=args.budget,
        seeds=args.seeds, workers=args.workers, executor=args.executor, address=args.address, store=args.store,
        config=config_from_args(args), seed=args.seed, progress=not args.json and not args.quiet,
    )  # fmt: skip
    totals = result.totals()
    summary = {
        "chosen": result.chosen, "serving": result.serving, "total_test_loss": totals,
        "report": str(Path(args.out) / "report.html"), "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
    }  # fmt: skip
    if args.json:
        emit_json(summary)
    else:
        gain = 100 * (totals["stl"] - totals["selected"]) / totals["stl"]
        print(
            f"chose {', '.join(result.chosen)}: total test loss {totals['selected']:.4f} "
            f"(STL {totals['stl']:.4f}, one all-task model {totals['naive_mtl']:.4f}; {gain:+.1f}% vs STL)"
        )
        print(f"report: {summary['report']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from taskrel.train.cli import add_training_options
    from taskrel.train.executors import EXECUTORS

    parser = subparsers.add_parser("pipeline", help="affinity → sampled groups → ETAP → selection → report")
    parser.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    parser.add_argument("--train-groups", type=int, default=10, help="groups trained to fit the predictor")
    parser.add_argument("--max-groups", type=int, default=3, help="at most this many groups are chosen")
    parser.add_argument("--budget", type=float, help="limit on Σ|G| over the chosen groups")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per group (default 1)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--address", help="address of an existing Ray cluster")
    parser.add_argument("--store", help="run store (default OUT/runs.db)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the affinity run and group sampling")
    parser.add_argument("--out", required=True, help="output folder for report.html, report.md and figures")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--json", action="store_true")
    add_training_options(parser)
    parser.set_defaults(func=_pipeline)


__all__ = ["PipelineResult", "run_pipeline"]
