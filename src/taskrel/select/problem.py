"""Group selection problems over explicit candidates, and their answers.

A *candidate* is one network that could be trained: the set of tasks it is trained on, the value
each of those tasks reaches in it, and what it costs per resource. With ``sense="max"`` values are
gains, gain(G → t) = (L_STL(t) − L_G(t)) / L_STL(t), positive = the group helps t; with
``sense="min"`` they are losses. A selection picks candidates; every task is *served* by one chosen
candidate that contains it (the best one, unless a must-link pair says otherwise) and scores that
candidate's value for it. The objective is the sum over tasks of the served values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from taskrel.arguments import flag, integer, real
from taskrel.errors import ConfigError, DataError, InfeasibleError, NonFiniteError
from taskrel.groups import Group, check_tasks, group_name

Sense = Literal["max", "min"]
#: Resource charged when a candidate names no cost: one unit per trained network.
DEFAULT_RESOURCE = "cost"


@dataclass(frozen=True)
class Candidate:
    """One trainable network: its tasks, each task's value in it, and its cost per resource."""

    id: str
    tasks: Group
    values: Mapping[str, float]
    costs: Mapping[str, float] = field(default_factory=lambda: {DEFAULT_RESOURCE: 1.0})

    def __post_init__(self) -> None:
        if not self.tasks:
            raise DataError(f"candidate {self.id!r} has no tasks")
        if set(self.values) != set(self.tasks):
            raise DataError(
                f"candidate {self.id!r}: values given for {sorted(self.values)} but its tasks are {sorted(self.tasks)}"
            )
        for task, value in self.values.items():
            if not math.isfinite(value):
                raise NonFiniteError(f"candidate {self.id!r}: value of task {task!r} is {value}")
        for resource, cost in self.costs.items():
            if not math.isfinite(cost) or cost < 0:
                raise DataError(f"candidate {self.id!r}: cost {resource!r} is {cost}, expected finite ≥ 0")


@dataclass(frozen=True)
class Constraints:
    """What a selection must satisfy.

    - ``max_groups`` / ``n_groups``: at most / exactly this many chosen candidates.
    - ``budgets``: resource → largest total cost of the chosen candidates.
    - ``min_size`` / ``max_size``: allowed number of tasks in a chosen candidate.
    - ``together``: task pairs that must be served by the same chosen candidate.
    - ``apart``: task pairs that no chosen candidate may contain both of.
    - ``partition``: every task is in exactly one chosen candidate (otherwise candidates may
      overlap, and a task is served by the best chosen candidate containing it).
    - ``cover``: every task must be served. With ``cover=False`` a task may stay unserved (it keeps
      its single-task model) and then scores ``uncovered_value`` (0 = no gain over STL).
    """

    max_groups: int | None = None
    n_groups: int | None = None
    budgets: Mapping[str, float] = field(default_factory=dict)
    min_size: int = 1
    max_size: int | None = None
    together: tuple[tuple[str, str], ...] = ()
    apart: tuple[tuple[str, str], ...] = ()
    partition: bool = False
    cover: bool = True
    uncovered_value: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_groups", "n_groups"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, integer(name, getattr(self, name), 1))
        if self.max_groups is not None and self.n_groups is not None:
            raise ConfigError("give max_groups (at most k groups) or n_groups (exactly k), not both")
        if not isinstance(self.budgets, Mapping):
            raise ConfigError(f"budgets must map a resource name to its budget, got {self.budgets!r}")
        budgets = {resource: real(f"budget {resource!r}", b, 0.0) for resource, b in self.budgets.items()}
        object.__setattr__(self, "budgets", budgets)
        object.__setattr__(self, "min_size", integer("min_size", self.min_size, 1))
        if self.max_size is not None:
            object.__setattr__(self, "max_size", integer("max_size", self.max_size, self.min_size))
        for name in ("partition", "cover"):
            object.__setattr__(self, name, flag(name, getattr(self, name)))
        object.__setattr__(self, "uncovered_value", real("uncovered_value", self.uncovered_value))
        for name in ("together", "apart"):
            pairs = tuple(tuple(p) for p in getattr(self, name))
            for pair in pairs:
                if len(pair) != 2 or pair[0] == pair[1]:
                    raise ConfigError(f"{name} needs pairs of two different tasks, got {pair!r}")
            object.__setattr__(self, name, pairs)
        clash = {frozenset(p) for p in self.together} & {frozenset(p) for p in self.apart}
        if clash:
            raise ConfigError(f"task pair(s) {sorted(map(sorted, clash))} are both in together and apart")

    def check_tasks(self, tasks: Sequence[str]) -> None:
        """Raise `UnknownTaskError` when a must-/cannot-link pair names a task not in `tasks`."""
        for name in ("together", "apart"):
            check_tasks([t for pair in getattr(self, name) for t in pair], tasks, f"constraint {name}")

    def size_allowed(self, size: int) -> bool:
        return size >= self.min_size and (self.max_size is None or size <= self.max_size)


@dataclass(frozen=True)
class Selection:
    """The answer to a selection problem.

    ``serving`` maps every task to the id of the chosen candidate serving it (``None`` when it is
    unserved, possible only with ``cover=False``); ``values`` gives the value each task scores.
    ``status`` is ``"optimal"`` (proven within ``gap``) or ``"time_limit"`` (best found; ``gap`` is
    the proven relative distance to ``bound``, the solver's bound on the optimum).
    """

    selected: tuple[str, ...]
    groups: Mapping[str, Group]
    serving: Mapping[str, str | None]
    values: Mapping[str, float]
    objective: float
    status: Literal["optimal", "time_limit"]
    gap: float
    bound: float
    seconds: float

    def to_dict(self) -> dict:
        """The JSON document of ``taskrel select --json``."""
        return {
            "selected": list(self.selected),
            "serving": dict(self.serving),
            "objective": self.objective,
            "status": self.status,
            "gap": self.gap,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class GroupingProblem:
    """Choose candidates under `constraints`, maximising total gain or minimising total loss.

    Solve it exactly with `solve` (a MILP on HiGHS, see `taskrel.select.milp`).
    """

    tasks: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    sense: Sense = "max"
    constraints: Constraints = field(default_factory=Constraints)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "candidates", tuple(self.candidates))
        if self.sense not in ("max", "min"):
            raise ConfigError(f"sense must be 'max' or 'min', got {self.sense!r}")
        if len(set(self.tasks)) != len(self.tasks):
            raise DataError(f"task list {list(self.tasks)} names a task twice")
        if not self.candidates:
            raise DataError("a grouping problem needs at least one candidate")
        ids = [c.id for c in self.candidates]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DataError(f"candidate id {dup!r} appears twice")
        for c in self.candidates:
            check_tasks(c.tasks, self.tasks, f"candidate {c.id!r}")
        self.constraints.check_tasks(self.tasks)

    @property
    def resources(self) -> tuple[str, ...]:
        """Every resource some candidate has a cost for, in order of appearance."""
        return tuple(dict.fromkeys(r for c in self.candidates for r in c.costs))

    def with_constraints(self, **changes) -> GroupingProblem:
        """The same candidates under modified constraints (keyword arguments of `Constraints`)."""
        fields = {**self.constraints.__dict__, **changes}
        return GroupingProblem(self.tasks, self.candidates, self.sense, Constraints(**fields))

    def solve(self, time_limit: float | None = None, gap: float = 0.0) -> Selection:
        """Solve exactly (proven optimal up to relative `gap`) or until `time_limit` seconds."""
        from taskrel.select.milp import solve_candidates

        return solve_candidates(self, time_limit=time_limit, gap=gap)

    def evaluate(self, selected: Iterable[str]) -> Selection:
        """Score a given set of candidate ids: each task served by its best chosen candidate.

        Checks no constraint but cover: with ``cover=True`` a task in no chosen candidate raises
        `InfeasibleError` (``constraint="cover"``). ``status`` is ``"optimal"`` only in the sense that
        the serving is optimal for this fixed choice. Useful to score a choice made on one table on another.
        """
        chosen = [self._by_id(i) for i in selected]
        if self.constraints.cover:
            served = set().union(*(c.tasks for c in chosen))
            missing = [t for t in self.tasks if t not in served]
            if missing:
                raise InfeasibleError(
                    f"candidate(s) {[c.id for c in chosen]} serve no task {', '.join(map(repr, missing))}; "
                    "with cover=True every task needs a chosen candidate (or use cover=False)",
                    constraint="cover",
                )
        best = np.argmax if self.sense == "max" else np.argmin
        serving: dict[str, str | None] = {}
        values: dict[str, float] = {}
        for task in self.tasks:
            options = [c for c in chosen if task in c.tasks]
            scores = [c.values[task] for c in options]
            if not self.constraints.cover:
                options.append(None)
                scores.append(self.constraints.uncovered_value)
            pick = int(best(scores))
            serving[task] = options[pick].id if options[pick] is not None else None
            values[task] = float(scores[pick])
        objective = float(sum(values.values()))
        groups = {c.id: c.tasks for c in chosen}
        return Selection(
            tuple(c.id for c in chosen), groups, serving, values, objective, "optimal", 0.0, objective, 0.0
        )

    def _by_id(self, candidate_id: str) -> Candidate:
        for c in self.candidates:
            if c.id == candidate_id:
                return c
        raise DataError(f"no candidate with id {candidate_id!r}")

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        sense: Sense = "max",
        constraints: Constraints | None = None,
        tasks: Sequence[str] | None = None,
        cost_columns: Sequence[str] | None = None,
        value_column: str = "value",
        source: str = "table",
    ) -> GroupingProblem:
        """Build a problem from a long table with one row per (candidate, member task).

        Columns: ``candidate`` (or ``group``: any id, e.g. the canonical ``"a|c"``), ``task``,
        `value_column` (gain for ``sense="max"``, loss for ``"min"``; e.g. ``"gain"`` for a gain
        table aggregated to one row per (group, task)), and optional cost columns (default:
        ``cost`` when present, else every candidate costs 1 ``cost``); a cost is one number per
        candidate, repeated on its rows. A candidate's tasks are the tasks on its rows. Rows are
        reported 1-based with the header as row 1, as in the CSV file `source`.
        """
        id_column = "candidate" if "candidate" in frame.columns else "group"
        for column in (id_column, "task", value_column):
            if column not in frame.columns:
                raise DataError(f"{source}: missing column {column!r} (have {list(frame.columns)})")
        if cost_columns is None:
            cost_columns = [DEFAULT_RESOURCE] if DEFAULT_RESOURCE in frame.columns else []
        for column in cost_columns:
            if column not in frame.columns:
                raise DataError(f"{source}: missing cost column {column!r}")
        ids = frame[id_column].astype(str).str.strip().tolist()
        task_names = frame["task"].astype(str).str.strip().tolist()
        values = _numeric(frame[value_column], value_column, source)
        costs = {column: _numeric(frame[column], column, source) for column in cost_columns}
        for column, array in costs.items():
            bad = np.flatnonzero(array < 0)
            if bad.size:
                raise DataError(f"{source}: row {bad[0] + 2}: negative {column} {array[bad[0]]}")
        members: dict[str, dict[str, float]] = {}
        cand_costs: dict[str, dict[str, float]] = {}
        for row, (cid, task) in enumerate(zip(ids, task_names, strict=True)):
            where = f"{source}: row {row + 2}"
            if not cid or not task or cid == "nan" or task == "nan":
                raise DataError(f"{where}: empty {id_column} or task")
            if task in members.setdefault(cid, {}):
                raise DataError(f"{where}: duplicate row for {id_column} {cid!r}, task {task!r}")
            members[cid][task] = float(values[row])
            row_costs = {column: float(costs[column][row]) for column in cost_columns}
            if cid in cand_costs and cand_costs[cid] != row_costs:
                raise DataError(f"{where}: {id_column} {cid!r} has a different cost than on its first row")
            cand_costs[cid] = row_costs
        if not members:
            raise DataError(f"{source}: no rows")
        if tasks is None:
            tasks = list(dict.fromkeys(task_names))
        else:
            check_tasks(task_names, tasks, source)
        candidates = [
            Candidate(cid, frozenset(vals), vals, cand_costs[cid] or {DEFAULT_RESOURCE: 1.0})
            for cid, vals in members.items()
        ]
        return cls(tuple(tasks), tuple(candidates), sense, constraints or Constraints())

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        sense: Sense = "max",
        constraints: Constraints | None = None,
        tasks: Sequence[str] | None = None,
    ) -> GroupingProblem:
        """Read a long CSV (see `from_frame`) and reject malformed rows naming file and row."""
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
            raise DataError(f"{path}: cannot read as CSV ({exc})") from exc
        return cls.from_frame(frame, sense, constraints, tasks, source=str(path))

    def to_frame(self) -> pd.DataFrame:
        """The long table `from_frame` reads (one cost column per resource)."""
        rows = []
        for c in self.candidates:
            for task in self.tasks:
                if task in c.tasks:
                    rows.append({"candidate": c.id, "task": task, "value": c.values[task], **c.costs})
        return pd.DataFrame(rows)


def candidate_for_group(
    group: Iterable[str],
    values: Mapping[str, float],
    tasks: Sequence[str],
    costs: Mapping[str, float] | None = None,
) -> Candidate:
    """A candidate named by the canonical text of its group (members in task order joined by ``|``)."""
    group = frozenset(group)
    return Candidate(group_name(group, tasks), group, dict(values), dict(costs or {DEFAULT_RESOURCE: 1.0}))


def _numeric(column: pd.Series, name: str, source: str) -> np.ndarray:
    out = np.empty(len(column))
    for row, text in enumerate(column.astype(str)):
        try:
            out[row] = float(text)
        except ValueError:
            raise DataError(f"{source}: row {row + 2}: {name} {text!r} is not a number") from None
        if not math.isfinite(out[row]):
            raise NonFiniteError(f"{source}: row {row + 2}: {name} is {text!r} (not finite)")
    return out
