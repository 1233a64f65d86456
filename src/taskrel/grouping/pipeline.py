"""The grouping pipeline a user runs on any problem, end to end, resumable from its run store.

STL runs → one all-task affinity run (ETAP) → training groups, drawn at random or chosen adaptively
(`taskrel.sampling`) → gain predictor fit → predicted gains of every candidate group (of every pair,
above `MAX_ENUMERATED_TASKS` tasks) → exact selection under the constraints, each task's STL model a
free option (`taskrel.decision`; the compact pairwise program for many tasks) → training of the
chosen groups → safe serving (each task read from its best model on validation, STL included) → a
report (HTML and Markdown) comparing the outcome with single-task learning and one all-task model.
Every training goes through the same `RunStore` and the training groups are saved in
``OUT/training_groups.json``, so a second call with the same arguments trains nothing that is
already done; a failed training stops the pipeline with a `PipelineError` naming it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from taskrel.affinity.matrix import AffinityMatrix
from taskrel.affinity.measure import measure_affinity
from taskrel.decision import MAX_ENUMERATED_TASKS, Serving, candidate_groups, choose_groups, choose_partition, serve
from taskrel.errors import ConfigError, TaskrelError
from taskrel.gains import GainTable
from taskrel.groups import Group, all_groups, group_name
from taskrel.predict import DefaultPredictor
from taskrel.problem import Problem, check_fingerprint, load_problem
from taskrel.sampling import SAMPLINGS, Pick, read_plan, training_groups, write_plan
from taskrel.train.store import RunStore
from taskrel.train.sweep import open_store, run_sweep

#: The affinity the pipeline measures, and why (benchmarks/results/predictors_chemical.json: the
#: validation-weighted ETAP score predicts measured gains, r = 0.45, where the plain time average does not).
AFFINITY = ("etap", "validation")
AFFINITY_TEXT = (
    "ETAP score (no momentum, loss-normalised), epochs weighted by the target's validation improvement "
    "(the variant the Chemical benchmark showed best)"
)


class PipelineError(TaskrelError):
    """A training the pipeline needs failed; the message names the group, seed and the error."""


@dataclass
class PipelineResult:
    """Everything the report shows, with its provenance."""

    dataset: str
    tasks: list[str]
    seeds: list[int]
    fingerprint: dict
    store: str
    affinity: AffinityMatrix
    sampling: str
    training: list[Pick]  # the groups trained to fit the predictor, in order, with why
    predictions: pd.DataFrame  # group, task, gain (predicted) for every candidate (pairs for many tasks)
    chosen: list[str]
    served: dict[str, Serving]
    table: GainTable  # measured: singles, training groups, chosen groups
    cross_validated: pd.DataFrame  # group, task, predicted, measured for held-out training groups
    constraints: dict
    selection: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    command: str = ""

    @property
    def serving(self) -> dict[str, str]:
        """Task → the group text serving it (the task's own name where its STL model serves it)."""
        return {t: s.group for t, s in self.served.items()}

    def per_task(self) -> pd.DataFrame:
        """Per task: STL loss, naive-MTL loss, serving group and why, predicted and realised gain and loss."""
        means = self.table.mean().set_index(["group", "task"])
        stl = self.table.stl_loss()
        everything = group_name(self.tasks, self.tasks)
        predicted = self.predictions.set_index(["group", "task"])["gain"]
        rows = []
        for t in self.tasks:
            group = self.serving[t]
            rows.append({
                "task": t, "serving_group": group, "why": self.served[t].reason, "stl_loss": stl[t],
                "naive_mtl_loss": means.loc[(everything, t), "test_loss"],
                "selected_loss": means.loc[(group, t), "test_loss"],
                "predicted_gain": float(predicted.get((group, t), 0.0)),
                "realised_gain": means.loc[(group, t), "gain"],
            })  # fmt: skip
        return pd.DataFrame(rows)

    def totals(self) -> dict[str, float]:
        frame = self.per_task()
        return {name: float(frame[f"{name}_loss"].sum()) for name in ("stl", "naive_mtl", "selected")}

    def safe_on_test(self) -> float:
        """Fraction of tasks whose served test loss is at most their STL test loss."""
        frame = self.per_task()
        return float((frame["selected_loss"] <= frame["stl_loss"]).mean())


def _table_of(store: Path, fingerprint: dict, tasks: list[str], split: str = "test") -> GainTable:
    """Every finished run of the store as a gain table, gains of `split`."""
    with RunStore(store, fingerprint) as runs:
        records = [(r.group, r.seed, r.val_loss, r.test_loss) for r in runs.records("done")]
    return GainTable.from_runs(records, tasks, split=split)


def _train(problem: Problem, groups: list[Group], seeds: int, store: Path, sweep: dict) -> None:
    """Sweep `groups` into the store; any failed run of them stops the pipeline with its message."""
    report = run_sweep(problem, groups, seeds, store, **sweep)
    if report.failures:
        key, error = report.failures[0]
        more = f" ({len(report.failures) - 1} more failed)" if len(report.failures) > 1 else ""
        raise PipelineError(
            f"training {key.group} (seed {key.seed}) failed: {error}{more}; fix it and rerun, "
            f"or `taskrel sweep --retry-failed` on {store}"
        )


def run_pipeline(
    problem: Problem | str,
    out: str | Path,
    *,
    train_groups: int = 10,
    sampling: str = "random",
    max_groups: int = 3,
    budget: float | None = None,
    seeds: int = 1,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    store: str | Path | None = None,
    seed: int = 0,
    time_limit: float = 60.0,
    progress: bool = True,
) -> PipelineResult:
    """Run (or resume) the pipeline on `problem`; writes ``out/report.html``, ``out/report.md`` and figures.

    `train_groups` groups (the all-task group included) are trained to fit the predictor, chosen by
    `sampling` (``random`` or ``adaptive``, see `taskrel.sampling`; adaptive batches hold `workers`
    groups). `max_groups` and `budget` (a bound on Σ|G|, since training compute grows with group
    size) count the chosen groups of two or more tasks; a task no chosen group helps keeps its STL
    model, which costs nothing more. With more than `MAX_ENUMERATED_TASKS` tasks, the predictor gives
    the gain of every pair and the compact pairwise program partitions the tasks into at most
    `max_groups` groups (`time_limit` seconds, 1 % gap); sampling is then random.
    """
    problem = load_problem(problem)
    out = Path(out)
    tasks = list(problem.tasks)
    fingerprint = check_fingerprint(problem)
    name = str(fingerprint.get("name", "problem"))
    enumerate_groups = len(tasks) <= MAX_ENUMERATED_TASKS
    if train_groups < 1:
        raise ConfigError(f"--train-groups must be ≥ 1, got {train_groups}")
    if sampling not in SAMPLINGS:
        raise ConfigError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if sampling == "adaptive" and not enumerate_groups:
        raise ConfigError(
            f"--sampling adaptive needs enumerated candidate groups (≤ {MAX_ENUMERATED_TASKS} tasks); "
            f"{name} has {len(tasks)}: use --sampling random"
        )
    if budget is not None and not enumerate_groups:
        raise ConfigError(
            f"--budget needs enumerated candidate groups (≤ {MAX_ENUMERATED_TASKS} tasks); {name} has {len(tasks)}"
        )
    out.mkdir(parents=True, exist_ok=True)
    store = Path(store) if store is not None else out / "runs.db"
    open_store(store, problem).close()  # a store of another problem is refused before any training
    sweep = dict(workers=workers, executor=executor, address=address, progress=progress)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    _train(problem, [frozenset([t]) for t in tasks], seeds, store, sweep)
    seconds["stl"] = time.perf_counter() - started

    started = time.perf_counter()
    affinity_file = out / "affinity.csv"
    if affinity_file.exists():
        affinity = AffinityMatrix.read_csv(affinity_file, method="etap-validation")
        if affinity.tasks != tuple(tasks):
            raise ConfigError(f"{affinity_file} is for tasks {affinity.tasks}, not {tuple(tasks)}; remove it")
    else:
        try:
            affinity, _ = measure_affinity(problem, AFFINITY[0], seed=seed, weighting=AFFINITY[1])
        except Exception as exc:  # the user's training code: name the run that failed, keep the cause chained
            name_all = group_name(tasks, tasks)
            raise PipelineError(
                f"training {name_all} (seed {seed}) for the affinity failed: {type(exc).__name__}: {exc}"
            ) from exc
        affinity.to_csv(affinity_file)
    affinity.plot(out / "affinity.png", title=f"ETAP affinity on {name}: A[source, target]")
    seconds["affinity"] = time.perf_counter() - started

    started = time.perf_counter()
    stl = _table_of(store, fingerprint, tasks, split="val").stl_loss()  # validation losses

    def measure(groups: list[Group]) -> pd.DataFrame:
        """Train `groups`; their measured validation gains (every decision is made on validation)."""
        _train(problem, groups, seeds, store, sweep)
        names = {group_name(g, tasks) for g in groups}
        measured = _table_of(store, fingerprint, tasks, split="val").mean()
        return measured[measured["group"].isin(names)][["group", "task", "gain"]]

    def decide(gains: pd.DataFrame) -> list[Group]:
        return choose_groups(gains, tasks, stl, max_groups=max_groups, budget=budget).groups

    plan = out / "training_groups.json"
    training = training_groups(
        tasks, train_groups, sampling, measure=measure, fit=lambda g: DefaultPredictor().fit(affinity, g),
        decide=decide, stl=stl, batch=workers, seed=seed, done=read_plan(plan, sampling, seed, tasks),
        record=lambda picks: write_plan(plan, sampling, seed, picks, tasks),
    )  # fmt: skip
    seconds["training_groups"] = time.perf_counter() - started

    started = time.perf_counter()
    train_frame = measure([p.group for p in training])
    model = DefaultPredictor().fit(affinity, train_frame)
    held_out = _cross_validate(affinity, train_frame, [p.group for p in training if len(p.group) >= 2], tasks)
    constraints = {"max_groups": max_groups, **({"budgets": {"size": budget}} if budget is not None else {})}
    if enumerate_groups:
        predictions = model.predict(candidate_groups(tasks))
        choice = choose_groups(predictions, tasks, stl, max_groups=max_groups, budget=budget)
    else:
        predictions = model.predict(list(all_groups(tasks, [2])))
        choice = choose_partition(predictions, tasks, stl, max_groups=max_groups, time_limit=time_limit, seed=seed)
        larger = [g for g in choice.groups if len(g) > 2]
        predictions = pd.concat([predictions, model.predict(larger)], ignore_index=True)
    seconds["predict_and_select"] = time.perf_counter() - started

    started = time.perf_counter()
    _train(problem, [g for g in choice.groups if len(g) > 1], seeds, store, sweep)
    table = _table_of(store, fingerprint, tasks)
    chosen_names = [group_name(g, tasks) for g in choice.groups]
    served = serve(table, chosen_names)
    seconds["chosen_groups"] = time.perf_counter() - started

    result = PipelineResult(
        name, tasks, list(range(seeds)), fingerprint, str(store), affinity, sampling, training, predictions,
        chosen_names, served, table, held_out, constraints, choice.text, seconds, " ".join(["taskrel", *sys.argv[1:]]),
    )  # fmt: skip
    from taskrel.report.document import write_report

    write_report(result, out)
    return result


def _cross_validate(
    affinity: AffinityMatrix, frame: pd.DataFrame, groups: list[Group], tasks: list[str]
) -> pd.DataFrame:
    """Leave-one-group-out predictions for the training groups (what the fit did not see)."""
    rows = []
    for held in groups:
        name = group_name(held, tasks)
        rest = frame[frame["group"] != name]
        if rest["group"].nunique() < 2:
            continue
        predicted = DefaultPredictor().fit(affinity, rest).predict([held])
        merged = predicted.merge(frame, on=["group", "task"], suffixes=("_pred", ""))
        rows += [{"group": name, "task": t, "predicted": p, "measured": m}
                 for t, p, m in zip(merged["task"], merged["gain_pred"], merged["gain"], strict=True)]  # fmt: skip
    return pd.DataFrame(rows, columns=["group", "task", "predicted", "measured"])


def _pipeline(args: argparse.Namespace) -> int:
    from taskrel.cli import emit_json
    from taskrel.train.cli import problem_from_args

    result = run_pipeline(
        problem_from_args(args), args.out, train_groups=args.train_groups, sampling=args.sampling,
        max_groups=args.max_groups,
        budget=args.budget, seeds=args.seeds, workers=args.workers, executor=args.executor, address=args.address,
        store=args.store, seed=args.seed, time_limit=args.time_limit, progress=not args.json and not args.quiet,
    )  # fmt: skip
    totals = result.totals()
    summary = {
        "chosen": result.chosen, "serving": result.serving, "total_test_loss": totals,
        "tasks_not_worse_than_stl_on_test": result.safe_on_test(), "sampling": result.sampling,
        "training_groups": [group_name(p.group, result.tasks) for p in result.training],
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
    from taskrel.train.cli import add_problem_options
    from taskrel.train.executors import EXECUTORS

    parser = subparsers.add_parser("pipeline", help="affinity → sampled groups → gain predictor → selection → report")
    add_problem_options(parser)
    parser.add_argument("--train-groups", type=int, default=10, help="groups trained to fit the predictor")
    parser.add_argument(
        "--sampling", choices=SAMPLINGS, default="random",
        help="how the training groups are chosen: at random, or adaptively for the decision (Thompson sampling)",
    )  # fmt: skip
    parser.add_argument(
        "--max-groups", type=int, default=3, help="at most this many groups of ≥ 2 tasks are chosen (STL is free)"
    )
    parser.add_argument("--budget", type=float, help="limit on Σ|G| over the chosen groups of ≥ 2 tasks")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per group (default 1)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--address", help="address of an existing Ray cluster")
    parser.add_argument("--store", help="run store (default OUT/runs.db)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the affinity run and group sampling")
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="seconds for the pairwise program (more than 14 tasks)"
    )
    parser.add_argument("--out", required=True, help="output folder for report.html, report.md and figures")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_pipeline)


__all__ = ["PipelineError", "PipelineResult", "run_pipeline"]
