"""The problem protocol: what every stage of taskrel runs on, and the checks of what a problem returns.

A *problem* is the user's multi-task learning setup: task names, a fingerprint that identifies the
runs (data, model, loss, training protocol), and ``train(group, seed, callbacks=, weighting=)`` which
trains one group of tasks (a single task is a group of one) and returns a `GroupResult`. Sweeps,
affinity measurement and the pipeline only ever call these three things, so a user's own model, data
and training loop go through every stage exactly like the built-in datasets. See ``docs/problems.md``.

A problem may also offer ``train_many(runs, max_batch=None)``: train several (group, seed) runs at
once (e.g. as one batched model) and return, per run in order, its `GroupResult` or the exception
that ended it. Sweeps use it when present (`TorchProblem` has it); otherwise each run is `train`ed.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from taskrel.errors import ConfigError, DataError


@dataclass(frozen=True)
class GroupResult:
    """Outcome of training one group: per member task, from the restored best weights.

    Losses are lower-is-better (the quantity gains are computed from); metrics are whatever the
    problem reports alongside (accuracy, MSE in original units, ...).

    `val_rows`: per member task, the loss of every validation row under the restored best weights,
    in the validation split's fixed row order (the same order for every group and seed of a problem,
    so two runs can be paired row by row, e.g. for a paired significance test); only the rows that
    count in the task's loss (under a mask of observed targets, the observed rows, in row order).
    Their mean is ``val_loss[task]``. A problem that cannot give them leaves None.
    """

    val_loss: dict[str, float]
    test_loss: dict[str, float]
    val_metric: dict[str, float] | None = None
    test_metric: dict[str, float] | None = None
    steps: int = 0
    seconds: float = 0.0
    val_rows: dict[str, list[float]] | None = None


@runtime_checkable
class Problem(Protocol):
    """A multi-task learning problem (see the module docstring)."""

    tasks: Sequence[str]

    def fingerprint(self) -> dict: ...

    def train(
        self, group: Sequence[str], seed: int, *, callbacks: Sequence[Any] = (), weighting: object | None = None
    ) -> GroupResult: ...


#: `check_result`'s tolerance between the mean of a task's `val_rows` and its `val_loss`.
ROWS_RTOL, ROWS_ATOL = 1e-4, 1e-8


def attempt(problem: Problem, group: Sequence[str], seed: int) -> GroupResult | Exception:
    """`problem.train(group, seed)`, or the exception it raised (a run that fails alone, with its message)."""
    try:
        return problem.train(group, seed)
    except Exception as exc:
        return exc


def check_result(result: object, group: Sequence[str], where: str) -> GroupResult:
    """Raise `DataError` unless `result` is a `GroupResult` with a finite val and test loss per member.

    `val_rows`, when given, must hold for every member a non-empty 1-D list of finite numbers whose mean
    is its `val_loss` (relative tolerance `ROWS_RTOL`, absolute `ROWS_ATOL`).
    """
    if not isinstance(result, GroupResult):
        raise DataError(f"{where} returned {type(result).__name__}, expected a taskrel.problems.GroupResult")
    for split in ("val_loss", "test_loss"):
        losses = getattr(result, split)
        missing = [t for t in group if t not in losses]
        if missing:
            raise DataError(f"{where} returned no {split} for task(s) {missing}")
        bad = [t for t in group if not isinstance(losses[t], int | float) or not math.isfinite(losses[t])]
        if bad:
            raise DataError(f"{where} returned a non-finite {split} for task(s) {bad}: {[losses[t] for t in bad]}")
    rows = getattr(result, "val_rows", None)
    if rows is not None:
        _check_rows(rows, result.val_loss, group, where)
    return result


def _check_rows(rows: object, val_loss: Mapping[str, float], group: Sequence[str], where: str) -> None:
    if not isinstance(rows, Mapping):
        raise DataError(f"{where} returned val_rows of type {type(rows).__name__}, expected {{task: [row losses]}}")
    missing = [t for t in group if t not in rows]
    if missing:
        raise DataError(f"{where} returned no val_rows for task(s) {missing}")
    for task in group:
        values = rows[task]
        if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence):
            raise DataError(
                f"{where} returned val_rows[{task!r}] of type {type(values).__name__}, expected a 1-D list of floats"
                " (e.g. tensor.cpu().tolist())"
            )
        if not values:
            raise DataError(f"{where} returned empty val_rows for task {task!r}")
        kinds = {type(v).__name__ for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)}
        if kinds:
            raise DataError(
                f"{where} returned val_rows[{task!r}] that is not a 1-D list of numbers (it holds {sorted(kinds)})"
            )
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            raise DataError(
                f"{where} returned a non-finite value in val_rows[{task!r}] at row(s) {bad[:5]}: "
                f"{[values[i] for i in bad[:5]]}"
            )
        mean = math.fsum(values) / len(values)
        if not math.isclose(mean, val_loss[task], rel_tol=ROWS_RTOL, abs_tol=ROWS_ATOL):
            raise DataError(
                f"{where} returned val_rows[{task!r}] whose mean {mean!r} over {len(values)} rows is not its "
                f"val_loss {val_loss[task]!r}"
            )


def check_fingerprint(problem: Problem) -> dict:
    """The problem's fingerprint, checked to be a JSON-able dict."""
    value = problem.fingerprint()
    if not isinstance(value, Mapping):
        raise ConfigError(f"fingerprint() of {type(problem).__name__} returned {type(value).__name__}, not a dict")
    try:
        json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"fingerprint() of {type(problem).__name__} is not JSON-serialisable ({exc})") from None
    return dict(value)


def check_problem(problem: object, where: str) -> Problem:
    """`problem` if it follows the protocol (tasks, fingerprint, train), else a `ConfigError`."""
    missing = [name for name in ("tasks", "fingerprint", "train") if not hasattr(problem, name)]
    if missing:
        raise ConfigError(f"{where} is a {type(problem).__name__}, not a problem: it lacks {', '.join(missing)}")
    check_task_names(list(problem.tasks), where)
    return problem


def check_task_names(tasks: Sequence[str], where: str) -> None:
    """`ConfigError` unless `tasks` are distinct non-empty strings without '|' (the group separator)."""
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, str) and t for t in tasks) or len(set(tasks)) != len(tasks):
        raise ConfigError(f"{where}: tasks must be distinct non-empty strings, got {tasks!r}")
    bad = [t for t in tasks if "|" in t]
    if bad:
        raise ConfigError(f"{where}: task names may not contain '|' (the group separator): {bad}")
