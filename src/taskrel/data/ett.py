"""ETT (Electricity Transformer Temperature), hourly: ETTh1 and ETTh2, one task per channel.

Each file holds 17,420 hourly rows of one transformer station (2016-07-01 00:00 to 2018-06-26 19:00):
a ``date`` column and seven channels, the tasks ``HUFL, HULL, MUFL, MULL, LUFL, LULL, OT`` (high /
middle / low useful and useless load, oil temperature). The standard split of Informer and the
Time-Series-Library is used: train = the first 12 months (8,640 rows), validation = the next 4
(2,880), test = the next 4 (2,880); the remaining rows are unused. Every channel is standardised with
its training rows' mean and (population) standard deviation.

A sample is a window of ``input_len`` hours of all channels, x of shape (input_len, 7), and the next
``horizon`` hours of every channel, y of shape (7, horizon): channel k is task k (single input, one
output head per channel). Validation and test windows start ``input_len`` rows before their split, so
the first forecast hour is the split's first row and every target lies inside its split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from taskrel.data.location import data_file
from taskrel.errors import ConfigError, DataError, NonFiniteError

ETT_TASKS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
ETT_FILES = {"ETTh1": "ett/ETTh1.csv", "ETTh2": "ett/ETTh2.csv"}
MONTH_ROWS = 30 * 24  # a "month" of the standard split, in hourly rows
SPLIT_ROWS = {"train": 12 * MONTH_ROWS, "val": 4 * MONTH_ROWS, "test": 4 * MONTH_ROWS}


@dataclass(frozen=True)
class ETTWindows:
    """Windowed, standardised ETT splits: per split a pair (x (n, input_len, 7), y (n, 7, horizon)).

    `mean` and `std` (7,) are the training rows' per-channel statistics used for standardising, so a
    loss of task k times ``std[k] ** 2`` is an MSE in the channel's own units.
    """

    name: str
    tasks: tuple[str, ...]
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    source: str


def read_ett_csv(relpath: str, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The seven channels (rows, 7) of an ETT file, float64, after checking its layout.

    Raises `DataError` naming the file, the line and the column for a missing column, a value that is
    not a number, or a date that does not follow the previous one by exactly one hour;
    `NonFiniteError` for NaN or infinite values.
    """
    path = data_file(relpath, data_dir)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: cannot parse as CSV ({exc})") from exc
    expected = ["date", *ETT_TASKS]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected header {','.join(expected)}")
    dates = pd.to_datetime(frame["date"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    steps = np.diff(dates.to_numpy().astype("datetime64[s]").astype(np.int64))
    bad_date = np.flatnonzero(dates.isna().to_numpy())
    if bad_date.size == 0:
        bad_date = np.flatnonzero(steps != 3600) + 1
    if bad_date.size:
        row = int(bad_date[0])
        raise DataError(
            f"{path}: line {row + 2}, column 'date': {frame['date'].iloc[row]!r} is not one hour after the "
            "previous row (expected consecutive hourly timestamps YYYY-MM-DD HH:MM:SS)"
        )
    values = np.empty((len(frame), len(ETT_TASKS)))
    for k, channel in enumerate(ETT_TASKS):
        column = pd.to_numeric(frame[channel].str.strip(), errors="coerce").to_numpy(float)
        text = frame[channel].to_numpy()
        unparsed = np.flatnonzero(np.isnan(column) & ~np.isin(np.char.lower(text.astype(str)), ("nan", "-nan")))
        if unparsed.size:
            row = int(unparsed[0])
            raise DataError(f"{path}: line {row + 2}, column {channel!r}: {text[row]!r} is not a number")
        if not np.isfinite(column).all():
            row = int(np.flatnonzero(~np.isfinite(column))[0])
            raise NonFiniteError(f"{path}: line {row + 2}, column {channel!r} is {text[row]!r} (not finite)")
        values[:, k] = column
    needed = sum(SPLIT_ROWS.values())
    if len(values) < needed:
        raise DataError(f"{path}: {len(values)} data rows, the standard 12/4/4-month split needs {needed}")
    return values


def load_ett(
    name: str = "ETTh1",
    data_dir: str | os.PathLike | None = None,
    input_len: int = 96,
    horizon: int = 24,
) -> ETTWindows:
    """Load ETTh1 or ETTh2 as standardised windows ``input_len`` → ``horizon`` (see the module docstring)."""
    if name not in ETT_FILES:
        raise ConfigError(f"unknown ETT file {name!r}; available: {', '.join(ETT_FILES)}")
    if input_len < 1 or horizon < 1:
        raise ConfigError(f"input_len and horizon must be >= 1, got {input_len} and {horizon}")
    if input_len + horizon > SPLIT_ROWS["val"]:
        raise ConfigError(f"input_len + horizon = {input_len + horizon} exceeds a 4-month split ({SPLIT_ROWS['val']})")
    values = read_ett_csv(ETT_FILES[name], data_dir)
    n_train = SPLIT_ROWS["train"]
    mean = values[:n_train].mean(axis=0)
    std = values[:n_train].std(axis=0)
    if (std == 0).any():
        raise DataError(
            f"{ETT_FILES[name]}: channel {ETT_TASKS[int(np.argmin(std))]!r} is constant on the training rows"
        )
    scaled = ((values - mean) / std).astype(np.float32)
    splits = {}
    start = 0
    for which, rows in SPLIT_ROWS.items():
        begin = start - input_len if which != "train" else 0
        splits[which] = _windows(scaled[begin : start + rows], input_len, horizon)
        start += rows
    return ETTWindows(
        name, ETT_TASKS, splits["train"], splits["val"], splits["test"],
        mean.astype(np.float32), std.astype(np.float32), ETT_FILES[name],
    )  # fmt: skip


def _windows(series: np.ndarray, input_len: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """All (rows, C) windows: x (n, input_len, C), y (n, C, horizon), n = rows - input_len - horizon + 1."""
    view = sliding_window_view(series, input_len + horizon, axis=0)  # (n, C, input_len + horizon)
    x = np.ascontiguousarray(view[:, :, :input_len].transpose(0, 2, 1))
    y = np.ascontiguousarray(view[:, :, input_len:])
    return x, y
