"""Chemical (MHC-I peptide binding): ETAP's 10 binary tasks, one per MHC molecule.

Each input is a 9-mer peptide one-hot encoded over 20 amino acids (180 binary features, nine 1s
per row); the label says whether the peptide binds (1) or not (0). The files hold ETAP's 70/30
train/test split; a stratified, seeded validation split (10 % of train, as in ETAP) is carved
from train here.
"""

from __future__ import annotations

import os

import numpy as np

from taskrel.data.dataset import MultiTaskDataset, Split, TaskData, split_rows
from taskrel.data.location import data_file
from taskrel.errors import DataError, ShapeError

#: Task ids in ETAP's order (largest training set first).
CHEMICAL_TASKS = ("83", "78", "84", "85", "76", "86", "81", "80", "87", "55")
FOLDER = "etap/chemical_task_splits/"
N_FEATURES = 180


def _load(task: str, part: str, which: str, data_dir: str | os.PathLike | None) -> np.ndarray:
    path = data_file(f"{FOLDER}{task}_{part}_{which}.npy", data_dir)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from exc


def _checked(task: str, which: str, data_dir: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    x = _load(task, "X", which, data_dir)
    y = _load(task, "y", which, data_dir)
    name = f"{FOLDER}{task}_X_{which}.npy"
    if x.ndim != 2 or x.shape[1] != N_FEATURES:
        raise ShapeError(f"{name}: expected shape (n, {N_FEATURES}), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ShapeError(f"{FOLDER}{task}_y_{which}.npy: expected shape ({x.shape[0]},), got {y.shape}")
    if not np.isin(x, (0, 1)).all():
        row = int(np.argwhere(~np.isin(x, (0, 1)))[0, 0])
        raise DataError(f"{name}: row {row} is not one-hot (values other than 0/1)")
    per_position = x.reshape(len(x), 9, 20).sum(axis=2)
    if not (per_position == 1).all():
        row = int(np.argwhere((per_position != 1).any(axis=1))[0, 0])
        raise DataError(f"{name}: row {row} does not encode exactly one amino acid per position")
    if not np.isin(y, (0, 1)).all():
        row = int(np.argwhere(~np.isin(y, (0, 1)))[0, 0])
        raise DataError(f"{FOLDER}{task}_y_{which}.npy: row {row} has label {y[row].item()!r}, expected 0 or 1")
    return x.astype(np.float32), y.astype(np.float32)


def load_chemical(
    data_dir: str | os.PathLike | None = None,
    tasks: tuple[str, ...] = CHEMICAL_TASKS,
    val_fraction: float = 0.1,
    split_seed: int = 42,
) -> MultiTaskDataset:
    """Load the Chemical tasks with a stratified validation split seeded by `split_seed`."""
    built = []
    for i, task in enumerate(tasks):
        x, y = _checked(task, "train", data_dir)
        fit, val = split_rows(y, (1 - val_fraction, val_fraction), seed=split_seed + i, stratify=True)
        xt, yt = _checked(task, "test", data_dir)
        built.append(TaskData(task, Split(x[fit], y[fit]), Split(x[val], y[val]), Split(xt, yt)))
    return MultiTaskDataset("chemical", "binary", tuple(built), source=FOLDER)
