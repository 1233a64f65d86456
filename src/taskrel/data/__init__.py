"""Datasets: the multi-task dataset type and loaders for the real benchmarks."""

from __future__ import annotations

import os
from collections.abc import Callable

from taskrel.data.chemical import CHEMICAL_TASKS, load_chemical
from taskrel.data.dataset import MultiTaskDataset, Split, TaskData
from taskrel.data.location import data_file, data_root
from taskrel.data.single import SharedSplit, SingleInputDataset
from taskrel.data.tabular import load_landmine, load_parkinsons, load_school
from taskrel.errors import DataError

LOADERS: dict[str, Callable[..., MultiTaskDataset]] = {
    "chemical": load_chemical,
    "school": load_school,
    "landmine": load_landmine,
    "parkinsons": load_parkinsons,
}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, **options) -> MultiTaskDataset:
    """Load a dataset by name (one of `LOADERS`)."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(LOADERS)}") from None
    return loader(data_dir=data_dir, **options)


__all__ = [
    "CHEMICAL_TASKS",
    "LOADERS",
    "MultiTaskDataset",
    "SharedSplit",
    "SingleInputDataset",
    "Split",
    "TaskData",
    "data_file",
    "data_root",
    "load_chemical",
    "load_dataset",
    "load_landmine",
    "load_parkinsons",
    "load_school",
]
