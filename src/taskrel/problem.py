"""The problem protocol: what every stage of taskrel runs on.

A *problem* is the user's multi-task learning setup: task names, a fingerprint that identifies the
training protocol, and ``train(group, seed, callbacks=, weighting=)`` which trains one group of
tasks (a single task is a group of one) and returns a `GroupResult`. Sweeps, affinity measurement
and the pipeline only ever call these three things, so a user's own model, data and training loop
go through every stage exactly like the built-in datasets. See ``docs/problems.md``.

A problem may also offer ``train_many(runs, max_batch=None)``: train several (group, seed) runs at
once (e.g. as one batched model) and return, per run in order, its `GroupResult` or the exception
that ended it. Sweeps use it when present (`TorchProblem` has it); otherwise each run is `train`ed.

A *spec* names a problem so that another process (a sweep worker, a Ray task) can build it itself:
``pkg.module:attr``, ``path/to/file.py:attr`` (``attr`` is a `Problem` or a zero-argument callable
returning one), a built-in name (`BUILTIN_PROBLEMS`), or a name registered under the entry-point
group ``taskrel.problems``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import math
import numbers
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from taskrel.errors import ConfigError, DataError

#: Built-in problems by name: "module:factory", factory(data_dir=None, **train_options) -> Problem.
BUILTIN_PROBLEMS: dict[str, str] = {
    "chemical": "taskrel.data.builtin:chemical",
    "school": "taskrel.data.builtin:school",
    "landmine": "taskrel.data.builtin:landmine",
    "parkinsons": "taskrel.data.builtin:parkinsons",
    "ett": "taskrel.data.builtin:ett",
    "etth2": "taskrel.data.builtin:etth2",
}
ENTRY_POINT_GROUP = "taskrel.problems"


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
        raise DataError(f"{where} returned {type(result).__name__}, expected a taskrel.problem.GroupResult")
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


def registered_problems() -> dict[str, str]:
    """Every problem name a spec can use: the built-ins plus the ``taskrel.problems`` entry points."""
    names = dict(BUILTIN_PROBLEMS)
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(point.name, point.value)
    return names


def load_problem(spec: str | Problem, **options: Any) -> Problem:
    """Resolve a spec (see the module docstring) into a problem; a `Problem` is returned as is.

    `options` go to a built-in or registered factory (``data_dir=``, training options such as
    ``max_steps=``); for a user's ``module:attr`` spec they are passed to ``attr`` when it is
    callable. The returned problem remembers its spec (`problem_spec`), so workers can rebuild it.
    """
    if not isinstance(spec, str):
        if options:
            raise ConfigError(f"options {sorted(options)} only apply to a problem given by name or spec")
        return check_problem(spec, f"problem {type(spec).__name__}")
    registry = registered_problems()
    target = registry.get(spec, spec)
    if ":" not in target:
        raise ConfigError(
            f"unknown problem {spec!r}: use a built-in name ({', '.join(registry)}), "
            "pkg.module:attr or path/to/file.py:attr"
        )
    location, _, attr = target.rpartition(":")
    value = _import_attr(location, attr, spec)
    if isinstance(value, type) or (callable(value) and not hasattr(value, "train")):  # a factory or a class
        try:
            value = value(**options)
        except TypeError as exc:
            if options:
                raise ConfigError(f"problem {spec!r} does not take the options {sorted(options)} ({exc})") from None
            raise
    elif options:
        raise ConfigError(f"problem {spec!r} is an object, so options {sorted(options)} cannot be applied to it")
    problem = check_problem(value, f"problem {spec!r}")
    with contextlib.suppress(AttributeError):  # an object refusing new attributes is sent to workers as is
        problem.problem_spec = (_portable(spec, location, attr, registry), dict(options))
    return problem


def problem_spec(problem: Problem) -> tuple[str, dict] | None:
    """(spec, options) that rebuild `problem` in another process, if it was loaded from a spec."""
    return getattr(problem, "problem_spec", None)


def _portable(spec: str, location: str, attr: str, registry: Mapping[str, str]) -> str:
    """A spec another process can resolve from any working directory (file paths made absolute)."""
    if spec in registry or not location.endswith(".py"):
        return spec
    return f"{Path(location).resolve()}:{attr}"


def _import_attr(location: str, attr: str, spec: str) -> object:
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise ConfigError(f"problem {spec!r}: no file {path}")
        module_name = "taskrel_user_problem_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        module = sys.modules.get(module_name)
        if module is None:
            folder = str(path.resolve().parent)
            if folder not in sys.path:  # as Python does for a script: modules beside the file import
                sys.path.insert(0, folder)
            loader = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[module_name] = module
            try:
                loader.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise ConfigError(f"problem {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
            except BaseException:
                del sys.modules[module_name]
                raise
    else:
        try:
            module = importlib.import_module(location)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"problem {spec!r}: cannot import module {location!r} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"problem {spec!r}: {location} has no attribute {attr!r}") from None


__all__ = [
    "BUILTIN_PROBLEMS",
    "GroupResult",
    "Problem",
    "check_result",
    "load_problem",
    "problem_spec",
    "registered_problems",
]
