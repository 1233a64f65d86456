"""The grouping pipeline a user runs on any problem, end to end, resumable from its run store.

1. STL: every task's single-task run.
2. Affinity: one all-task run with the ETAP collector; collectors leave training bit-identical,
   so this run is also the all-task model ALL (seed `seed`), kept in the store.
3. Training groups (`taskrel.grouping.sampling`): random, spread over the group sizes, or chosen
   adaptively for the decision.
4. The gain predictor is fitted on the training groups' validation gains and predicts every
   candidate of the pool (`taskrel.grouping.pool`: every group up to 14 tasks, a few hundred built
   from the all-task run and the affinity beyond).
5. `decide` (`taskrel.grouping.decision`): the default D (ALL for every task, unless STL is better on
   validation on evidence), at most `max_groups` new groups by the exact MILP, every trained model free.
6. The chosen groups are trained; `serve` moves a task off D only on significant per-row evidence.
7. A report (HTML and Markdown) with every stage's wall time.

The same arguments resume from ``OUT/runs.db`` and ``OUT/training_groups.json`` and train nothing twice.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from taskrel.affinity.matrix import AffinityMatrix
from taskrel.affinity.measure import measure_affinity
from taskrel.choices import PIPELINE_WEIGHTING as WEIGHTING
from taskrel.errors import ConfigError
from taskrel.gains import GainTable
from taskrel.grouping.decision import MAX_ENUMERATED_TASKS, Decision, Serving, decide, marginal_values, serve
from taskrel.grouping.pool import candidate_pool, refine
from taskrel.grouping.report import write_report
from taskrel.grouping.runs import Runs, TrainingFailed
from taskrel.grouping.sampling import SAMPLINGS, Pick, read_plan, training_groups, write_plan
from taskrel.groups import Group, group_name
from taskrel.predict import DefaultPredictor
from taskrel.problems.protocol import Problem
from taskrel.problems.registry import load_problem
from taskrel.train.sweep import GROUP_BATCH

#: The affinity the pipeline measures: ETAP, its steps aggregated as `PIPELINE_WEIGHTING` says by default.
METHOD = "etap"
AFFINITY_TEXT = {
    "validation": "ETAP score (no momentum, loss-normalised), epochs weighted by the target's validation "
    "improvement (the variant the Chemical benchmark showed best)",
    "steps": "ETAP score (no momentum, loss-normalised), the time average over training steps",
}


@dataclass
class PipelineResult:
    """Everything the report shows, with its provenance."""

    dataset: str
    tasks: list[str]
    seeds: list[int]
    fingerprint: dict
    store: str
    affinity: AffinityMatrix
    affinity_text: str
    sampling: str
    training: list[Pick]  # the groups trained to fit the predictor, in order, with why
    predictions: pd.DataFrame  # group, task, gain (predicted, validation) of every candidate of the pool
    decision: Decision
    serving: Serving
    table: GainTable  # measured: singles, ALL, training groups, chosen groups (test gains, val losses)
    cross_validated: pd.DataFrame  # group, task, predicted, measured: leave-one-group-out, training groups
    constraints: dict
    seconds: dict[str, float] = field(default_factory=dict)
    command: str = ""
    weighting: str = WEIGHTING  # how the affinity run's steps were aggregated; its file is affinity-<weighting>.csv

    @property
    def chosen(self) -> list[str]:
        return [group_name(g, self.tasks) for g in self.decision.groups]

    @property
    def served(self) -> dict[str, str]:
        """Task → the group text serving it (the task's own name where its STL model serves it)."""
        return self.serving.models()

    def per_task(self) -> pd.DataFrame:
        """Per task: serving model and evidence; STL, ALL, D and served test losses; predicted and realised gain."""
        means = self.table.mean().set_index(["group", "task"])
        stl = self.table.stl_loss()
        everything = group_name(self.tasks, self.tasks)
        predicted = self.predictions.set_index(["group", "task"])["gain"]
        rows = []
        for t in self.tasks:
            s = self.serving.tasks[t]
            rows.append({
                "task": t, "serving_group": s.model, "why": s.evidence, "stl_loss": stl[t],
                "naive_mtl_loss": means.loc[(everything, t), "test_loss"],
                "default_loss": means.loc[(s.default, t), "test_loss"],
                "selected_loss": means.loc[(s.model, t), "test_loss"],
                "predicted_gain": float(predicted.get((s.model, t), 0.0)),
                "realised_gain": means.loc[(s.model, t), "gain"],
            })  # fmt: skip
        return pd.DataFrame(rows)

    def totals(self) -> dict[str, float]:
        """Total test loss of STL, ALL ("naive_mtl"), the default D and the served models ("selected")."""
        frame = self.per_task()
        return {name: float(frame[f"{name}_loss"].sum()) for name in ("stl", "naive_mtl", "default", "selected")}

    def not_worse_than_default(self) -> float:
        """Fraction of tasks whose served test loss is at most their test loss on D."""
        frame = self.per_task()
        return float((frame["selected_loss"] <= frame["default_loss"] + 1e-12).mean())


def run_pipeline(
    problem: Problem | str,
    out: str | Path,
    *,
    train_groups: int = 10,
    sampling: str = "random",
    max_groups: int = 3,
    budget: float | None = None,
    seeds: int | Sequence[int] = 1,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    store: str | Path | None = None,
    seed: int = 0,
    time_limit: float = 60.0,
    progress: bool = True,
    group_batch: int = GROUP_BATCH,
    weighting: str = WEIGHTING,
) -> PipelineResult:
    """Run (or resume) the pipeline on `problem`; writes ``out/report.html``, ``out/report.md`` and figures.

    `train_groups` groups (the all-task group included) are trained to fit the predictor, chosen by
    `sampling` (``random`` or ``adaptive``, see `taskrel.grouping.sampling`; adaptive batches hold
    `workers` groups). `max_groups` and `budget` (a bound on Σ|G| over the new groups, since training
    compute grows with group size) limit the groups chosen; `time_limit` bounds the selection program
    (seconds; its status is reported). `seeds`: training seeds per group, a count S (0 … S − 1) or the
    seeds themselves; `seed` seeds the affinity run, the group sampling and the serving's row split.
    `group_batch` caps the runs trained as one batched model (`run_sweep`; 1: one at a time).
    `weighting` aggregates the affinity run's steps ("validation" or "steps", `taskrel.affinity.collector`).
    """
    problem = load_problem(problem)
    out = Path(out)
    tasks = list(problem.tasks)
    if train_groups < 1:
        raise ConfigError(f"--train-groups must be ≥ 1, got {train_groups}")
    if weighting not in AFFINITY_TEXT:
        raise ConfigError(f"--weighting must be one of {', '.join(AFFINITY_TEXT)}, got {weighting!r}")
    if sampling not in SAMPLINGS:
        raise ConfigError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = seconds.get(stage, 0.0) + now - clock
        clock = now

    with Runs(problem, store if store is not None else out / "runs.db", seeds, workers=workers,
              executor=executor, address=address, progress=progress, group_batch=group_batch) as runs:  # fmt: skip
        name = str(runs.fingerprint.get("name", "problem"))
        runs.train([frozenset([t]) for t in tasks])
        lap("stl")

        everything = frozenset(tasks)
        affinity = _affinity(problem, runs, out, seed, weighting)
        affinity.plot(out / "affinity.png", title=f"ETAP affinity on {name}: A[source, target]")
        runs.train([everything])
        lap("affinity")
        default_rows = runs.validation_rows()  # STL's and ALL's: all that D is chosen on

        def measure(groups: list[Group]) -> pd.DataFrame:
            """Train `groups`; their measured validation gains (every decision is made on validation)."""
            runs.train(groups)
            measured = runs.table(groups).with_split("val").mean()
            names = {group_name(g, tasks) for g in groups}
            return measured[measured["group"].isin(names)][["group", "task", "gain"]]

        def choose(gains: pd.DataFrame) -> list[Group]:
            return decide(runs.table(), gains, max_groups=max_groups, budget=budget, time_limit=time_limit,
                          rows=default_rows).groups  # fmt: skip

        plan = out / "training_groups.json"
        candidates = candidate_pool(tasks, runs.table(), affinity) if sampling == "adaptive" else None
        training = training_groups(
            tasks, train_groups, sampling, measure=measure, fit=lambda g: DefaultPredictor().fit(affinity, g),
            decide=choose, stl=runs.table().with_split("val").stl_loss(), candidates=candidates, batch=workers,
            seed=seed, done=read_plan(plan, sampling, seed, tasks),
            record=lambda picks: write_plan(plan, sampling, seed, picks, tasks),
        )  # fmt: skip
        lap("training_groups")

        trained = runs.table()
        model = DefaultPredictor().fit(affinity, trained.with_split("val"))
        lap("predictor_fit")
        pool = candidate_pool(tasks, trained, affinity)
        predictions = model.predict(pool)
        if len(tasks) > MAX_ENUMERATED_TASKS:
            known = set(pool)
            extra = [g for g in refine(trained, marginal_values(trained, predictions, default_rows)) if g not in known]
            predictions = pd.concat([predictions, model.predict(extra)], ignore_index=True)
        lap("pool_scoring")
        decision = decide(trained, predictions, max_groups=max_groups, budget=budget, time_limit=time_limit,
                          rows=default_rows)  # fmt: skip
        lap("selection")

        runs.train(decision.groups)
        lap("chosen_groups")
        table = runs.table()
        serving = serve(table, runs.validation_rows(), seed=seed)
        lap("serving")

        held_out = model.leave_group_out().rename(columns={"gain": "measured"})
        constraints = {"max_groups": max_groups, **({"budgets": {"size": budget}} if budget is not None else {})}
        result = PipelineResult(
            name, tasks, runs.seeds, runs.fingerprint, str(runs.path), affinity, AFFINITY_TEXT[weighting], sampling,
            training, predictions, decision, serving, table, held_out, constraints, seconds,
            " ".join(["taskrel", *sys.argv[1:]]), weighting,
        )  # fmt: skip
        write_report(result, out)
        lap("report")
    return result


def _affinity(problem: Problem, runs: Runs, out: Path, seed: int, weighting: str) -> AffinityMatrix:
    """The ETAP affinity of one all-task run (read back from ``out/affinity-<weighting>.csv`` when present).

    The run is kept as the all-task model. Its collector and the training are told apart in errors.
    """
    tasks = list(problem.tasks)
    path = out / f"affinity-{weighting}.csv"
    if path.exists():
        affinity = AffinityMatrix.read_csv(path, method=f"{METHOD}-{weighting}")
        if affinity.tasks != tuple(tasks):
            raise ConfigError(f"{path} is for tasks {affinity.tasks}, not {tuple(tasks)}; remove it")
        return affinity
    try:
        affinity, result = measure_affinity(problem, METHOD, seed=seed, weighting=weighting)
    except Exception as exc:  # the user's training code or the measurement: name the stage, keep the cause chained
        raise TrainingFailed(
            f"training {group_name(tasks, tasks)} (seed {seed}) for the affinity failed: {type(exc).__name__}: {exc}"
        ) from exc
    runs.keep(frozenset(tasks), seed, result)
    affinity.to_csv(path)
    return affinity


__all__ = ["AFFINITY_TEXT", "METHOD", "WEIGHTING", "PipelineResult", "run_pipeline"]
