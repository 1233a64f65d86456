"""`AffinityMatrix`: how much each task's update helps each other task.

Orientation: ``values[i, j]`` = effect of **source** task i's update on **target** task j
(row = source, column = target). Positive = i's update lowers j's loss. The CSV layout is square
with task names in the header row and the first column (row = source, column = target).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from taskrel.errors import DataError, NonFiniteError, ShapeError
from taskrel.groups import check_tasks, make_group
from taskrel.matrix_csv import read_square_csv, write_square_csv


@dataclass(frozen=True)
class AffinityMatrix:
    """Pairwise affinity A[source, target] with its provenance (method, steps, seconds)."""

    values: np.ndarray
    tasks: tuple[str, ...]
    method: str = ""
    steps: int = 0
    seconds: float = 0.0
    stalled: tuple[str, ...] = ()  # validation weighting: target columns weighted by steps (never improved)
    update: str = ""  # ETAP: the update direction scored ("gradient", or the optimiser's step, e.g. "Adam step")
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        n = len(self.tasks)
        if values.shape != (n, n):
            raise ShapeError(f"affinity matrix must be {n}×{n} for {n} tasks, got shape {values.shape}")
        if len(set(self.tasks)) != n:
            raise DataError("affinity matrix has duplicate task names")
        if not np.isfinite(values).all():
            i, j = np.argwhere(~np.isfinite(values))[0]
            raise NonFiniteError(f"affinity[{self.tasks[i]!r} → {self.tasks[j]!r}] is {values[i, j]}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "_index", {t: k for k, t in enumerate(self.tasks)})

    def __getitem__(self, pair: tuple[str, str]) -> float:
        """``A[source, target]``."""
        source, target = pair
        check_tasks([source, target], self.tasks, "affinity matrix")
        return float(self.values[self._index[source], self._index[target]])

    def incoming(self, group: Iterable[str], target: str) -> float:
        """Mean affinity onto `target` from the other members of `group` (ETAP eq. 7); 0 for a singleton."""
        members = make_group(group, self.tasks, "affinity matrix")
        if target not in members:
            raise DataError(f"task {target!r} is not a member of group {sorted(members)}")
        sources = [self._index[s] for s in members if s != target]
        if not sources:
            return 0.0
        return float(self.values[sources, self._index[target]].mean())

    @classmethod
    def mean(cls, matrices: Sequence[AffinityMatrix]) -> AffinityMatrix:
        """Entry-wise mean of matrices over the same tasks (e.g. several seeds); steps and seconds add up."""
        if not matrices:
            raise DataError("no affinity matrices to average")
        tasks = matrices[0].tasks
        for m in matrices[1:]:
            if m.tasks != tasks:
                raise DataError(f"cannot average matrices over different tasks: {tasks} vs {m.tasks}")
        values = np.mean([m.values for m in matrices], axis=0)
        return cls(values, tasks, matrices[0].method, sum(m.steps for m in matrices), sum(m.seconds for m in matrices))

    def subset(self, tasks: Sequence[str]) -> AffinityMatrix:
        check_tasks(tasks, self.tasks, "affinity matrix")
        idx = [self._index[t] for t in tasks]
        return AffinityMatrix(self.values[np.ix_(idx, idx)], tuple(tasks), self.method, self.steps, self.seconds)

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.values, index=list(self.tasks), columns=list(self.tasks))
        frame.index.name = "source"
        return frame

    def to_csv(self, path: str | os.PathLike) -> None:
        write_square_csv(path, self.tasks, self.values)

    @classmethod
    def read_csv(cls, path: str | os.PathLike, method: str = "", tasks: Sequence[str] | None = None) -> AffinityMatrix:
        """Read the square CSV layout of `taskrel.matrix_csv` (row = source, column = target).

        With `tasks` (e.g. a problem's) the file must be over exactly those tasks; the matrix follows their order.
        """
        tasks, values = read_square_csv(path, tasks)
        return cls(values, tuple(tasks), method or Path(path).stem)

    def plot(self, path: str | os.PathLike, title: str | None = None) -> None:
        """Save a labelled heat map (diverging colours centred on 0) as PNG."""
        from taskrel.plots import heatmap  # start-up: matplotlib, only when a matrix is drawn

        heatmap(
            self.values,
            self.tasks,
            path,
            title=title or f"{self.method or 'affinity'}: A[source, target]",
            xlabel="target task",
            ylabel="source task",
        )
