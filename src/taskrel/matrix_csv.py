"""The CSV layout of every square task matrix (affinity, pairwise gains): row = source, column = target.

A header row ``source,<task 1>,…,<task n>``, then one row per source task in the header's order,
``<task i>,M[i, 1],…,M[i, n]``. Every entry is a finite number; task names are non-empty, distinct,
without surrounding spaces and without ``|`` (the group separator). ``taskrel affinity`` writes this
layout and ``taskrel select --pairwise`` reads it. Errors number rows as in the file (header = row 1)
and columns from 1 (the source names are column 1).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence

import numpy as np

from taskrel.errors import DataError, NonFiniteError, ShapeError, UnknownTaskError
from taskrel.groups import SEPARATOR

LAYOUT = "a header 'source,<task>,…' and one row '<task>,<entries>' per task, in the header's order"


def read_square_csv(path: str | os.PathLike, tasks: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Read ``(tasks, M[source, target])``; a malformed file raises a `DataError` naming the file, row and column.

    With `tasks` (e.g. a problem's), the file must be over exactly those tasks, in any order; the
    matrix is then returned in the order of `tasks`.
    """
    rows = _rows(path)
    if not rows:
        raise DataError(f"{path}: empty file; expected {LAYOUT}")
    _, header = rows[0]
    names = [cell.strip() for cell in header[1:]]
    _check_names(names, f"{path}: row 1 (header)")
    n = len(names)
    body = rows[1:]
    if not body:
        raise DataError(f"{path}: no rows after the header; expected one row per task ({n})")
    if len(body) != n:
        raise ShapeError(f"{path}: {len(body)} source rows for the header's {n} tasks; the matrix must be square")
    matrix = np.empty((n, n))
    for i, (line, cells) in enumerate(body):
        where = f"{path}: row {line}"
        if len(cells) != n + 1:
            raise ShapeError(f"{where} has {len(cells)} cells, expected {n + 1} (the source task and {n} entries)")
        source = cells[0].strip()
        if source != names[i]:
            known = "listed in the header out of order" if source in names else "not in the header"
            raise DataError(f"{where}, column 1: source {source!r} is {known}; expected {names[i]!r} ({LAYOUT})")
        for j, text in enumerate(cells[1:]):
            cell = f"{where}, column {j + 2} (source {source!r}, target {names[j]!r})"
            try:
                matrix[i, j] = float(text)
            except ValueError:
                raise DataError(f"{cell}: {text.strip()!r} is not a number") from None
            if not math.isfinite(matrix[i, j]):
                raise NonFiniteError(f"{cell}: {text.strip()!r} is not finite")
    if tasks is None:
        return names, matrix
    return list(tasks), matrix[np.ix_(*[_order(path, names, tasks)] * 2)]


def write_square_csv(path: str | os.PathLike, tasks: Sequence[str], matrix: np.ndarray) -> None:
    """Write ``M[source, target]`` in the layout `read_square_csv` reads (12 significant digits).

    Refuses, before writing anything, names the layout cannot hold and matrices that are not finite
    ``len(tasks) × len(tasks)``.
    """
    names = list(tasks)
    _check_names(names, "task names")
    values = np.asarray(matrix, dtype=np.float64)
    if values.shape != (len(names), len(names)):
        raise ShapeError(f"expected a {len(names)}×{len(names)} matrix for tasks {names}, got shape {values.shape}")
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        i, j = bad[0]
        raise NonFiniteError(f"entry [{names[i]!r}, {names[j]!r}] (source, target) is {values[i, j]}")
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["source", *names])
        writer.writerows([name, *(f"{v:.12g}" for v in row)] for name, row in zip(names, values, strict=True))


def _rows(path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with their line numbers in the file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            return [(reader.line_num, row) for row in reader if row]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a CSV file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_names(names: Sequence[str], where: str) -> None:
    if not names:
        raise DataError(f"{where}: no task names; expected {LAYOUT}")
    first: dict[str, int] = {}
    for column, name in enumerate(names, start=2):
        problem = ("is not text" if not isinstance(name, str) else "is empty" if not name
                   else "has surrounding spaces" if name != name.strip() else "")  # fmt: skip
        if problem:
            raise DataError(f"{where}, column {column}: task name {name!r} {problem}")
        if SEPARATOR in name:
            raise DataError(f"{where}, column {column}: task name {name!r} contains {SEPARATOR!r}, the group separator")
        if name in first:
            raise DataError(f"{where}: task {name!r} appears twice (columns {first[name]} and {column})")
        first[name] = column


def _order(path: str | os.PathLike, names: list[str], tasks: Sequence[str]) -> list[int]:
    """Indices into `names` of each of `tasks`, after checking both list the same tasks."""
    unknown = [t for t in names if t not in set(tasks)]
    if unknown:
        raise UnknownTaskError(
            f"{path}: task(s) {', '.join(map(repr, unknown))} are not among the expected tasks ({', '.join(tasks)})"
        )
    missing = [t for t in tasks if t not in set(names)]
    if missing:
        raise DataError(f"{path}: no row and column for task(s) {', '.join(map(repr, missing))}")
    return [names.index(t) for t in tasks]
