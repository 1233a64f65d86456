"""Single-input multi-task data: one input per row, a target for every task.

The common MTL setup (image attributes, multichannel forecasting, molecules with many assays):
one batch feeds every task head. Per split, `x` is a float32 array (n, *input_shape) and `y` a
float32 array (n, K, *target_shape) whose column k holds task k's targets; `mask` (n, K), if
given, is False where a label is missing (that row does not count in that task's loss).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from taskrel.data.dataset import SPLITS
from taskrel.errors import DataError, NonFiniteError, ShapeError
from taskrel.groups import check_tasks


@dataclass(frozen=True)
class SharedSplit:
    """Inputs `x` (n, ...), targets `y` (n, K, ...) and the optional label mask (n, K) of one split."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)


class SingleInputDataset:
    """Named tasks sharing one input; `train`, `val`, `test` are `SharedSplit`s or (x, y[, mask]) tuples.

    `task_kind` is "binary" when every target is 0/1, else "regression" (it picks the default loss).
    """

    def __init__(
        self,
        name: str,
        tasks: Sequence[str],
        train: SharedSplit | tuple,
        val: SharedSplit | tuple,
        test: SharedSplit | tuple,
        source: str = "",
    ) -> None:
        self.name = name
        self.task_names = list(tasks)
        if not self.task_names:
            raise DataError(f"dataset {name!r} has no tasks")
        if len(set(self.task_names)) != len(self.task_names):
            raise DataError(f"dataset {name!r} has duplicate task names")
        self.source = source
        self.splits = {
            which: _as_split(part, name, which, self.task_names)
            for which, part in zip(SPLITS, (train, val, test), strict=True)
        }
        shapes = {which: (s.x.shape[1:], s.y.shape[2:]) for which, s in self.splits.items()}
        if len(set(shapes.values())) != 1:
            raise ShapeError(f"dataset {name!r}: splits disagree on input/target shapes {shapes}")
        labels = np.concatenate([s.y.reshape(-1) for s in self.splits.values()])
        self.task_kind = "binary" if np.isin(labels, (0.0, 1.0)).all() else "regression"

    @property
    def train(self) -> SharedSplit:
        return self.splits["train"]

    @property
    def val(self) -> SharedSplit:
        return self.splits["val"]

    @property
    def test(self) -> SharedSplit:
        return self.splits["test"]

    def split(self, which: str) -> SharedSplit:
        if which not in SPLITS:
            raise DataError(f"unknown split {which!r}; use one of {SPLITS}")
        return self.splits[which]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def target_shape(self) -> tuple[int, ...]:
        return tuple(self.train.y.shape[2:])

    def columns(self, names: Iterable[str]) -> list[int]:
        """Target columns of `names`, in dataset order."""
        wanted = set(names)
        check_tasks(wanted, self.task_names, f"dataset {self.name!r}")
        return [k for k, t in enumerate(self.task_names) if t in wanted]

    @classmethod
    def from_torch(cls, name: str, tasks: Sequence[str], train, val, test) -> SingleInputDataset:
        """Materialise three map-style `torch.utils.data.Dataset`s yielding (x, y) or (x, y, mask)."""
        return cls(
            name,
            tasks,
            *(_materialise(part, name, which) for part, which in zip((train, val, test), SPLITS, strict=True)),
        )


def _materialise(dataset, name: str, which: str) -> tuple:
    import torch  # start-up: torch, only for a user's torch datasets (the built-in data are arrays)

    try:
        items = [dataset[i] for i in range(len(dataset))]
    except TypeError as exc:
        raise DataError(
            f"dataset {name!r}, {which} split: a map-style Dataset with __len__ is needed ({exc})"
        ) from None
    if not items:
        raise DataError(f"dataset {name!r}, {which} split is empty")
    width = len(items[0])
    if width not in (2, 3) or any(len(item) != width for item in items):
        raise DataError(f"dataset {name!r}, {which} split: every item must be (x, y) or (x, y, mask)")
    columns = [torch.stack([torch.as_tensor(item[c]) for item in items]).numpy() for c in range(width)]
    return tuple(columns)


def _as_split(part: SharedSplit | tuple, name: str, which: str, tasks: Sequence[str]) -> SharedSplit:
    where = f"dataset {name!r}, {which} split"
    k = len(tasks)
    if not isinstance(part, SharedSplit):
        if not isinstance(part, tuple | list) or len(part) not in (2, 3):
            raise DataError(f"{where}: expected (x, y) or (x, y, mask), got {type(part).__name__}")
        part = SharedSplit(*part)
    x = np.ascontiguousarray(part.x, dtype=np.float32)
    y = np.ascontiguousarray(part.y, dtype=np.float32)
    if y.ndim == 1 and k == 1:
        y = y[:, None]
    if x.ndim < 2 or y.ndim < 2:
        raise ShapeError(f"{where}: x must be (n, ...) with n ≥ 1 and y (n, {k}, ...), got {x.shape} and {y.shape}")
    if y.shape[1] != k:
        raise ShapeError(f"{where}: y has {y.shape[1]} task columns, expected {k} (one per task)")
    if len(x) != len(y):
        raise ShapeError(f"{where}: {len(x)} input rows but {len(y)} target rows")
    if len(x) == 0:
        raise DataError(f"{where} is empty")
    mask = None
    if part.mask is not None:
        mask = np.asarray(part.mask)
        if mask.shape != y.shape[:2]:
            raise ShapeError(f"{where}: mask must have shape {y.shape[:2]}, got {mask.shape}")
        mask = mask.astype(bool)
        empty = [tasks[c] for c in range(k) if not mask[:, c].any()]
        if empty:
            raise DataError(f"{where}: task(s) {empty} have no labelled row")
    if not np.isfinite(x).all():
        raise NonFiniteError(f"{where}: non-finite input in row {int(np.argwhere(~np.isfinite(x))[0, 0])}")
    finite = np.isfinite(y).reshape(len(y), k, -1).all(axis=2)
    if mask is not None:
        finite |= ~mask
    if not finite.all():
        row, col = (int(v) for v in np.argwhere(~finite)[0])
        raise NonFiniteError(f"{where}: non-finite target of task {tasks[col]!r} in row {row} (mask it if missing)")
    if mask is not None:
        y = np.where(mask.reshape(*mask.shape, *([1] * (y.ndim - 2))), y, 0.0).astype(np.float32)
    return SharedSplit(x, y, mask)
