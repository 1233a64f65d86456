"""`GroupingProblem`: choose among explicit candidates under constraints (see `taskrel.select.candidates`).

Every task is *served* by one chosen candidate that contains it (the best one, unless a must-link
pair says otherwise) and scores that candidate's value for it. The objective is the sum over tasks
of the served values; `GroupingProblem.solve` finds the optimum with the MILP of `taskrel.select.milp`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from taskrel.errors import ConfigError, DataError, InfeasibleError, NonFiniteError
from taskrel.groups import check_tasks
from taskrel.select.candidates import DEFAULT_RESOURCE, Candidate, Constraints, Selection, Sense
from taskrel.select.milp import solve_candidates


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
