"""School (139 schools), Landmine (29 fields) and Parkinsons (42 subjects): one task per entity.

These sets ship without a test split, so every task's rows are split seeded into
train / validation / test (default 60/20/20; stratified by label for Landmine). Continuous
features and regression targets are standardised with statistics pooled over all tasks' training
rows; categorical codes are one-hot encoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.io

from taskrel.data.dataset import MultiTaskDataset, Split, TaskData, make_task, split_rows
from taskrel.data.location import data_file
from taskrel.errors import DataError, NonFiniteError

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)

SCHOOL_FILE = "ayman2023/school/School_Data.csv"
SCHOOL_CATEGORICAL = {  # column -> allowed codes (ILEA567.ASC codebook)
    "Year": (1, 2, 3),
    "VR_BAND_Student": (0, 1, 2, 3),  # 0 = band not recorded (15 rows)
    "Ethnicity": tuple(range(1, 12)),
    "School_Gender": (1, 2, 3),
    "School_Denomination": (1, 2, 3),
}
SCHOOL_NUMERIC = ("FSM", "VR_Band", "Gender")
LANDMINE_FILE = "ayman2023/landmine/LandmineData.mat"
PARKINSONS_FILE = "ayman2023/parkinsons/parkinsons_updrs.csv"
PARKINSONS_TARGETS = ("motor_UPDRS", "total_UPDRS")


def _read_csv(relpath: str, required: Sequence[str], data_dir: str | os.PathLike | None) -> pd.DataFrame:
    path = data_file(relpath, data_dir)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: cannot parse as CSV ({exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    values = frame[list(required)]
    bad = ~np.isfinite(values.to_numpy(dtype=float))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise NonFiniteError(f"{path}: row {row + 2} has a non-finite {required[col]!r}")
    return frame


def _standardise(tasks: list[TaskData], columns: slice | None, target: bool) -> tuple[list[TaskData], tuple]:
    """Standardise inputs (the given columns) and optionally targets with pooled train statistics."""
    x_train = np.concatenate([t.train.x for t in tasks])
    y_train = np.concatenate([t.train.y for t in tasks])
    mu = np.zeros(x_train.shape[1], np.float32)
    sd = np.ones(x_train.shape[1], np.float32)
    if columns is not None:
        mu[columns] = x_train[:, columns].mean(axis=0)
        sd[columns] = x_train[:, columns].std(axis=0) + 1e-8
    y_mu, y_sd = (float(y_train.mean()), float(y_train.std())) if target else (0.0, 1.0)

    def scaled(split: Split) -> Split:
        return Split(((split.x - mu) / sd).astype(np.float32), ((split.y - y_mu) / y_sd).astype(np.float32))

    out = [TaskData(t.name, scaled(t.train), scaled(t.val), scaled(t.test)) for t in tasks]
    return out, (y_mu, y_sd)


def load_school(
    data_dir: str | os.PathLike | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    split_seed: int = 0,
) -> MultiTaskDataset:
    """ILEA exam scores: 139 regression tasks (one per school), 27 features, standardised score."""
    required = ["School", *SCHOOL_CATEGORICAL, *SCHOOL_NUMERIC, "ExamScore"]
    frame = _read_csv(SCHOOL_FILE, required, data_dir)
    for column, codes in SCHOOL_CATEGORICAL.items():
        bad = ~frame[column].isin(codes)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = frame[column].iloc[row].item()
            raise DataError(f"{SCHOOL_FILE}: row {row + 2} has {column}={value!r}, allowed {codes}")
    parts = [frame[list(SCHOOL_NUMERIC)].to_numpy(float)]
    for column, codes in SCHOOL_CATEGORICAL.items():
        parts.append((frame[column].to_numpy()[:, None] == np.asarray(codes)[None, :]).astype(float))
    x_all = np.concatenate(parts, axis=1)
    y_all = frame["ExamScore"].to_numpy(float)
    tasks = []
    for school in sorted(frame["School"].unique()):
        rows = np.flatnonzero(frame["School"].to_numpy() == school)
        split = split_rows(y_all[rows], fractions, seed=split_seed + int(school), stratify=False)
        tasks.append(make_task(str(school), x_all[rows], y_all[rows], split))
    tasks, scale = _standardise(tasks, slice(0, 2), target=True)
    return MultiTaskDataset("school", "regression", tuple(tasks), scale, SCHOOL_FILE)


def load_landmine(
    data_dir: str | os.PathLike | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    split_seed: int = 0,
) -> MultiTaskDataset:
    """Landmine detection: 29 binary tasks (one per field), 9 standardised radar features."""
    path = data_file(LANDMINE_FILE, data_dir)
    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, OSError, NotImplementedError) as exc:
        raise DataError(f"{path}: not a readable MATLAB file ({exc})") from exc
    if "feature" not in mat or "label" not in mat:
        raise DataError(f"{path}: expected cell arrays 'feature' and 'label', found {sorted(mat)}")
    features, labels = mat["feature"], mat["label"]
    if features.shape != labels.shape or features.shape[0] != 1:
        raise DataError(f"{path}: 'feature' {features.shape} and 'label' {labels.shape} must both be 1×n")
    tasks = []
    for m in range(features.shape[1]):
        x = np.asarray(features[0, m], dtype=float)
        y = np.asarray(labels[0, m], dtype=float).ravel()
        if x.ndim != 2 or x.shape[0] != y.shape[0]:
            raise DataError(f"{path}: task {m} has features {x.shape} but {y.shape[0]} labels")
        split = split_rows(y, fractions, seed=split_seed + m, stratify=True)
        tasks.append(make_task(str(m), x, y, split))
    tasks, scale = _standardise(tasks, slice(None), target=False)
    return MultiTaskDataset("landmine", "binary", tuple(tasks), scale, LANDMINE_FILE)


def load_parkinsons(
    data_dir: str | os.PathLike | None = None,
    target: str = "motor_UPDRS",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    split_seed: int = 0,
) -> MultiTaskDataset:
    """Parkinson's telemonitoring: 42 regression tasks (one per subject), 19 standardised features."""
    if target not in PARKINSONS_TARGETS:
        raise DataError(f"target must be one of {PARKINSONS_TARGETS}, got {target!r}")
    frame = _read_csv(PARKINSONS_FILE, ["subject#", *PARKINSONS_TARGETS], data_dir)
    feature_columns = [c for c in frame.columns if c not in ("subject#", *PARKINSONS_TARGETS)]
    x_all = frame[feature_columns].to_numpy(float)
    if not np.isfinite(x_all).all():
        row = int(np.argwhere(~np.isfinite(x_all))[0, 0])
        raise NonFiniteError(f"{PARKINSONS_FILE}: row {row + 2} has a non-finite feature")
    y_all = frame[target].to_numpy(float)
    tasks = []
    for subject in sorted(frame["subject#"].unique()):
        rows = np.flatnonzero(frame["subject#"].to_numpy() == subject)
        split = split_rows(y_all[rows], fractions, seed=split_seed + int(subject), stratify=False)
        tasks.append(make_task(str(subject), x_all[rows], y_all[rows], split))
    tasks, scale = _standardise(tasks, slice(None), target=True)
    return MultiTaskDataset(f"parkinsons-{target}", "regression", tuple(tasks), scale, PARKINSONS_FILE)
