"""The CSV layout of every square task matrix (affinity, pairwise gains): row = source, column = target.

The header row and the first column list the task names in the same order; every entry is a
finite number. ``taskrel affinity`` writes this layout and ``taskrel select --pairwise`` reads it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from taskrel.errors import DataError, NonFiniteError


def read_square_csv(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read ``(tasks, M[source, target])``; malformed files raise `DataError` naming the file and row."""
    try:
        frame = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from exc
    columns = [str(c).strip() for c in frame.columns]
    rows = [str(r).strip() for r in frame.index]
    if rows != columns:
        raise DataError(
            f"{path}: the first column (sources) must list the header's tasks in the same order; "
            f"header {columns}, first column {rows}"
        )
    if len(set(columns)) != len(columns):
        raise DataError(f"{path}: task names {columns} repeat")
    matrix = np.empty((len(rows), len(columns)))
    for r, (name, line) in enumerate(zip(rows, frame.itertuples(index=False), strict=True)):
        for c, text in enumerate(line):
            try:
                matrix[r, c] = float(text)
            except ValueError:
                raise DataError(
                    f"{path}: row {r + 2} (source {name}): {columns[c]} entry {text!r} is not a number"
                ) from None
            if not np.isfinite(matrix[r, c]):
                raise NonFiniteError(f"{path}: row {r + 2} (source {name}): {columns[c]} entry is {text!r}")
    return columns, matrix


def write_square_csv(path: str | os.PathLike, tasks: Sequence[str], matrix: np.ndarray) -> None:
    """Write ``M[source, target]`` in the layout `read_square_csv` reads (12 significant digits)."""
    frame = pd.DataFrame(np.asarray(matrix, dtype=np.float64), index=list(tasks), columns=list(tasks))
    frame.index.name = "source"
    frame.to_csv(path, float_format="%.12g")
