"""Per-agent real data: where agent k's rows come from, opened by agent k alone.

A source knows the agents' names, the loss and how to find each agent's data WITHOUT reading any
agent's rows; ``load(k)`` reads agent k's data only (``load_all()`` every agent's, for the
in-process engine). A process of the distributed engine calls
``load(rank)`` and nothing else, so an agent never holds another agent's rows:

* `DatasetSource`: agent k = task ``tasks[k]`` of a built-in multi-task dataset (School, Landmine,
  Parkinsons, ...). Such a dataset is one file whose features are standardised with statistics
  pooled over all tasks' training rows (`taskrel.data`), so the agent reads that file and keeps
  only ``load_dataset(name).task(tasks[k])``.
* `FileSource`: one file per agent (``.npz`` with arrays ``x`` (n, d) and ``y`` (n,), optionally
  ``x_test`` / ``y_test``; or ``.csv`` with a header, target column ``y``, every other column a
  feature); agent k opens ``paths[k]`` only. Without test arrays the rows are split seeded into
  train / test (`test_fraction`; stratified by label for the logistic loss).

Every source has a JSON `spec()` from which `source_from_spec` rebuilds it in another process.
Losses: ``"squared"`` (regression, test metric MSE) and ``"logistic"`` (labels 0/1, test AUC).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from taskrel.data import load_dataset
from taskrel.data.dataset import split_rows
from taskrel.errors import ConfigError, DataError
from taskrel.groups import check_tasks

LOSSES = ("squared", "logistic")
SUFFIXES = (".npz", ".csv")


@dataclass(frozen=True)
class AgentData:
    """One agent's rows: train and test inputs (n, d) without the bias column, targets (n,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def _check_agent(k: int, count: int) -> int:
    if not 0 <= int(k) < count:
        raise ConfigError(f"agent index {k} out of range for {count} agents")
    return int(k)


class DatasetSource:
    """Agent k = task ``tasks[k]`` of the built-in dataset `dataset` (train split to learn, test split to score)."""

    def __init__(
        self, dataset: str, tasks: Sequence[str], loss: str, *, split_seed: int = 0,
        data_dir: str | os.PathLike | None = None,
    ) -> None:  # fmt: skip
        self.dataset, self.names, self.loss = dataset, tuple(str(t) for t in tasks), _check_loss(loss)
        self.split_seed, self.data_dir = int(split_seed), None if data_dir is None else str(data_dir)
        if len(self.names) < 2 or len(set(self.names)) != len(self.names):
            raise ConfigError(f"need at least 2 distinct tasks (one per agent), got {list(self.names)}")

    @classmethod
    def open(
        cls, dataset: str, tasks: Sequence[str] | None = None, *, split_seed: int = 0,
        data_dir: str | os.PathLike | None = None,
    ) -> DatasetSource:  # fmt: skip
        """Resolve the task list (default: all tasks) and the loss from the dataset's kind (launcher side)."""
        data = load_dataset(dataset, data_dir=data_dir, split_seed=split_seed)
        names = data.task_names if tasks is None else [str(t) for t in tasks]
        check_tasks(names, data.task_names, f"dataset {dataset!r}")
        loss = "logistic" if data.kind == "binary" else "squared"
        return cls(dataset, names, loss, split_seed=split_seed, data_dir=data_dir)

    def load(self, k: int) -> AgentData:
        name = self.names[_check_agent(k, len(self.names))]
        return self._agent(self._dataset(), name)

    def load_all(self) -> list[AgentData]:
        """Every agent's data, reading the dataset once (the in-process engine)."""
        data = self._dataset()
        return [self._agent(data, name) for name in self.names]

    def _dataset(self):
        return load_dataset(self.dataset, data_dir=self.data_dir, split_seed=self.split_seed)

    @staticmethod
    def _agent(data, name: str) -> AgentData:
        task = data.task(name)
        return AgentData(name, task.train.x, task.train.y, task.test.x, task.test.y)

    def spec(self) -> dict:
        return {"kind": "dataset", "dataset": self.dataset, "tasks": list(self.names), "loss": self.loss,
                "split_seed": self.split_seed, "data_dir": self.data_dir}  # fmt: skip


class FileSource:
    """Agent k's rows in ``paths[k]`` (``.npz`` or ``.csv``, see the module doc); names are the file stems."""

    def __init__(
        self, paths: Sequence[str | os.PathLike], loss: str = "squared", *, test_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:  # fmt: skip
        self.paths = tuple(str(p) for p in paths)
        self.names = tuple(Path(p).stem for p in self.paths)
        self.loss, self.split_seed = _check_loss(loss), int(split_seed)
        if not 0 < test_fraction < 1:
            raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.test_fraction = float(test_fraction)
        if len(self.paths) < 2:
            raise ConfigError(f"need at least 2 agent files, got {len(self.paths)}")
        bad = [p for p in self.paths if Path(p).suffix.lower() not in SUFFIXES]
        if bad:
            raise DataError(f"agent files must end in {' or '.join(SUFFIXES)}, got {bad[0]}")
        if len(set(self.names)) != len(self.names):
            raise DataError(f"two agent files share the name of one agent: {sorted(self.paths)}")

    @classmethod
    def from_directory(cls, directory: str | os.PathLike, loss: str = "squared", **options) -> FileSource:
        """One agent per ``.npz`` / ``.csv`` file of `directory`, in sorted file-name order (only names are listed)."""
        root = Path(directory)
        if not root.is_dir():
            raise DataError(f"agent data directory {root} does not exist")
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in SUFFIXES)
        if len(paths) < 2:
            raise DataError(f"{root} holds {len(paths)} agent file(s) (.npz or .csv); need at least 2")
        return cls(paths, loss, **options)

    def load(self, k: int) -> AgentData:
        path = Path(self.paths[_check_agent(k, len(self.paths))])
        if not path.is_file():
            raise DataError(f"data file {path} is missing")
        arrays = _read_npz(path) if path.suffix.lower() == ".npz" else _read_csv(path)
        loss = self.loss
        x, y = _check_rows(path, "x", "y", arrays.get("x"), arrays.get("y"), loss)
        if "x_test" in arrays or "y_test" in arrays:
            x_test, y_test = _check_rows(path, "x_test", "y_test", arrays.get("x_test"), arrays.get("y_test"), loss)
            if x_test.shape[1] != x.shape[1]:
                raise DataError(f"{path}: x_test has {x_test.shape[1]} features, x has {x.shape[1]}")
            return AgentData(self.names[k], x, y, x_test, y_test)
        if len(y) < 2:
            raise DataError(f"{path}: {len(y)} row(s) cannot be split into train and test")
        fractions = (1 - self.test_fraction, self.test_fraction)
        train, test = split_rows(y, fractions, seed=self.split_seed + k, stratify=self.loss == "logistic")
        if train.size == 0 or test.size == 0:
            raise DataError(f"{path}: {len(y)} rows leave the train or the test part empty")
        return AgentData(self.names[k], x[train], y[train], x[test], y[test])

    def load_all(self) -> list[AgentData]:
        """Every agent's data (the in-process engine)."""
        return [self.load(k) for k in range(len(self.paths))]

    def spec(self) -> dict:
        return {"kind": "files", "paths": list(self.paths), "loss": self.loss, "test_fraction": self.test_fraction,
                "split_seed": self.split_seed}  # fmt: skip


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: cannot parse as CSV ({exc})") from exc
    if "y" not in frame.columns:
        raise DataError(f"{path}: no target column 'y' (columns: {list(frame.columns)})")
    features = [c for c in frame.columns if c != "y"]
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & frame.notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        value = frame.iat[row, col]
        raise DataError(f"{path}: row {row + 2}, column {frame.columns[col]!r}: {value!r} is not a number")
    return {"x": numeric[features].to_numpy(float), "y": numeric["y"].to_numpy(float)}


def _check_rows(path: Path, xname: str, yname: str, x, y, loss: str) -> tuple[np.ndarray, np.ndarray]:
    if x is None or y is None:
        raise DataError(f"{path}: needs arrays {xname!r} and {yname!r}")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{path}: need {xname} (n, d) and {yname} (n,) with n, d ≥ 1, got {x.shape} and {y.shape}")
    for name, a in ((xname, x), (yname, y)):
        if not np.isfinite(a).all():
            row = int(np.argwhere(~np.isfinite(a))[0][0])
            raise DataError(f"{path}: {name} row {row} is not finite")
    if loss == "logistic" and not np.isin(y, (0.0, 1.0)).all():
        row = int(np.flatnonzero(~np.isin(y, (0.0, 1.0)))[0])
        raise DataError(f"{path}: the logistic loss needs labels 0/1, {yname} row {row} is {y[row]:g}")
    return x, y


def source_from_spec(spec: dict) -> DatasetSource | FileSource:
    """Rebuild a source from its `spec()` (what a process of the distributed engine receives)."""
    kind = spec.get("kind")
    if kind == "dataset":
        return DatasetSource(spec["dataset"], spec["tasks"], spec["loss"], split_seed=spec["split_seed"],
                             data_dir=spec["data_dir"])  # fmt: skip
    if kind == "files":
        return FileSource(spec["paths"], spec["loss"], test_fraction=spec["test_fraction"],
                          split_seed=spec["split_seed"])  # fmt: skip
    raise ConfigError(f"unknown data source kind {kind!r}; use 'dataset' or 'files'")
