"""Candidates of a group selection, the constraints on choosing them, and the answer.

A *candidate* is one network that could be trained: the set of tasks it is trained on, the value
each of those tasks reaches in it, and what it costs per resource. With ``sense="max"`` values are
gains, gain(G → t) = (L_STL(t) − L_G(t)) / L_STL(t), positive = the group helps t; with
``sense="min"`` they are losses. A `Selection` picks candidates; every task is *served* by one chosen
candidate that contains it and scores that candidate's value for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from taskrel.arguments import flag, integer, real
from taskrel.choices import DEFAULT_RESOURCE
from taskrel.errors import ConfigError, DataError, NonFiniteError
from taskrel.groups import Group, check_tasks, group_name

Sense = Literal["max", "min"]


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


def candidate_for_group(
    group: Iterable[str],
    values: Mapping[str, float],
    tasks: Sequence[str],
    costs: Mapping[str, float] | None = None,
) -> Candidate:
    """A candidate named by the canonical text of its group (members in task order joined by ``|``)."""
    group = frozenset(group)
    return Candidate(group_name(group, tasks), group, dict(values), dict(costs or {DEFAULT_RESOURCE: 1.0}))
