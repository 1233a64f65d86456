"""The multi-task dataset type: per task, its own train / validation / test arrays.

Tasks may have different sizes and their own inputs (multi-input MTL). Features are float32
arrays of shape (n, d) with the same d for every task; targets are float32 arrays of shape (n,):
0/1 labels for ``kind="binary"`` (loss: binary cross-entropy), real values for
``kind="regression"`` (loss: mean squared error).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from taskrel.errors import DataError, NonFiniteError, ShapeError, UnknownTaskError
from taskrel.groups import check_tasks

KINDS = ("binary", "regression")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Inputs `x` (n, d) and targets `y` (n,) of one task in one split."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class TaskData:
    """One task: its name and its three splits."""

    name: str
    train: Split
    val: Split
    test: Split

    def split(self, which: str) -> Split:
        if which not in SPLITS:
            raise DataError(f"unknown split {which!r}; use one of {SPLITS}")
        return getattr(self, which)


@dataclass(frozen=True)
class MultiTaskDataset:
    """A named, ordered collection of tasks of one kind with a common feature dimension.

    `target_scale` records how regression targets were standardised ((y - mean) / std with
    pooled training statistics), so losses can be read back in original units.
    """

    name: str
    kind: str
    tasks: tuple[TaskData, ...]
    target_scale: tuple[float, float] = (0.0, 1.0)
    source: str = ""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"dataset {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.tasks:
            raise DataError(f"dataset {self.name!r} has no tasks")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise DataError(f"dataset {self.name!r} has duplicate task names")
        dims = {t.train.x.shape[1] if t.train.x.ndim == 2 else -1 for t in self.tasks}
        for task in self.tasks:
            for which in SPLITS:
                _check_split(self, task.name, which, task.split(which), dims)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def n_features(self) -> int:
        return int(self.tasks[0].train.x.shape[1])

    def task(self, name: str) -> TaskData:
        try:
            return self.tasks[self._index[name]]
        except KeyError:
            raise UnknownTaskError(
                f"task {name!r} is not in dataset {self.name!r}; tasks: {', '.join(self.task_names)}"
            ) from None

    def subset(self, names: Iterable[str]) -> MultiTaskDataset:
        """The dataset restricted to `names`, kept in dataset order."""
        wanted = set(names)
        check_tasks(wanted, self.task_names, f"dataset {self.name!r}")
        kept = tuple(t for t in self.tasks if t.name in wanted)
        return MultiTaskDataset(self.name, self.kind, kept, self.target_scale, self.source)

    def sizes(self, which: str = "train") -> dict[str, int]:
        return {t.name: len(t.split(which)) for t in self.tasks}


def _check_split(ds: MultiTaskDataset, task: str, which: str, split: Split, dims: set[int]) -> None:
    where = f"dataset {ds.name!r}, task {task!r}, {which} split"
    x, y = split.x, split.y
    if x.ndim != 2 or y.ndim != 1:
        raise ShapeError(f"{where}: x must be 2-D and y 1-D, got shapes {x.shape} and {y.shape}")
    if len(dims) != 1:
        raise ShapeError(f"dataset {ds.name!r}: tasks disagree on the feature dimension ({sorted(dims)})")
    if x.shape[0] != y.shape[0]:
        raise ShapeError(f"{where}: {x.shape[0]} input rows but {y.shape[0]} targets")
    if x.shape[0] == 0:
        raise DataError(f"{where} is empty")
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise NonFiniteError(f"{where}: non-finite input in row {row}")
    if not np.isfinite(y).all():
        row = int(np.argwhere(~np.isfinite(y))[0, 0])
        raise NonFiniteError(f"{where}: non-finite target in row {row}")
    if ds.kind == "binary" and not np.isin(y, (0.0, 1.0)).all():
        row = int(np.argwhere(~np.isin(y, (0.0, 1.0)))[0, 0])
        raise DataError(f"{where}: binary target must be 0 or 1, row {row} has {y[row].item()!r}")


def split_rows(y: np.ndarray, fractions: Sequence[float], seed: int, stratify: bool) -> list[np.ndarray]:
    """Seeded split of row indices into parts of the given fractions (stratified by label if asked).

    Every part gets at least one row of each class when stratifying and enough rows exist.
    """
    rng = np.random.default_rng(seed)
    fractions = np.asarray(fractions, dtype=float)
    if (fractions <= 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise DataError(f"split fractions must be positive and sum to 1, got {fractions.tolist()}")
    strata = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for rows in strata:
        rows = rng.permutation(rows)
        cuts = np.floor(np.cumsum(fractions)[:-1] * len(rows) + 0.5).astype(int)
        for k, chunk in enumerate(np.split(rows, cuts)):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def split_groups(groups: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Seeded split of row indices in which all rows of a group land in the same part.

    `groups` holds one label per row (e.g. a recording day). The groups are shuffled and cut so that
    each part's row count is as close to its fraction as whole groups allow; every part gets at least
    one group. Rows are returned sorted, as `split_rows` does.
    """
    fractions = np.asarray(fractions, dtype=float)
    if (fractions <= 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise DataError(f"split fractions must be positive and sum to 1, got {fractions.tolist()}")
    labels, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    if len(labels) < len(fractions):
        raise DataError(f"{len(labels)} group(s) cannot fill {len(fractions)} split parts")
    order = np.random.default_rng(seed).permutation(len(labels))
    ends = np.cumsum(counts[order])  # rows in the first k + 1 shuffled groups
    cuts: list[int] = []  # part k takes shuffled groups [cuts[k-1], cuts[k])
    for k, target in enumerate(np.cumsum(fractions)[:-1] * len(inverse)):
        low = (cuts[-1] if cuts else 0) + 1  # at least one group in this part
        high = len(labels) - (len(fractions) - 1 - k)  # and one left for each later part
        candidates = np.arange(low, high + 1)
        cuts.append(int(candidates[np.argmin(np.abs(ends[candidates - 1] - target))]))
    part_of_group = np.empty(len(labels), dtype=int)
    for k, chunk in enumerate(np.split(order, cuts)):
        part_of_group[chunk] = k
    part_of_row = part_of_group[inverse]
    return [np.flatnonzero(part_of_row == k) for k in range(len(fractions))]


def make_task(name: str, x: np.ndarray, y: np.ndarray, parts: Sequence[np.ndarray]) -> TaskData:
    """Build a `TaskData` from full arrays and (train, val, test) row indices."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    train, val, test = (Split(x[rows], y[rows]) for rows in parts)
    return TaskData(name, train, val, test)
