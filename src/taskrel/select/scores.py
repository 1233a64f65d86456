"""Group scores from pairwise data, for every rule users know.

The input is a square matrix ``S[source, target]`` over the tasks (row = source, column = target):
the gain (or loss) of the target task when it is trained together with the source task; the
diagonal holds a task's own entry. A group's score is the sum over its members ``k`` of a per-member
value built from the column ``S[:, k]`` restricted to the group:

- ``"ptg"`` (Principled Task Grouping): ``(1/|G|) Σ_{i∈G} S[i, k]``, the diagonal included;
- ``"tag"`` (TAG, and ETAP's group feature): ``(1/(|G|−1)) Σ_{i∈G, i≠k} S[i, k]``; a singleton
  scores 0 (single-task training: no gain over itself);
- ``"hoa"`` (Standley's higher-order approximation): the same mean over the other members (for a
  pair, the measured pair entry); a singleton scores its diagonal, the single-task measurement.

Note that TAG's published matrices are stored ``[recipient][source]``: transpose them first
(`taskrel.data.published` does).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from taskrel.choices import SELECTION_RULES as RULES
from taskrel.errors import ConfigError, DataError, NonFiniteError, ShapeError
from taskrel.groups import all_groups, make_group
from taskrel.matrix_csv import read_square_csv, write_square_csv
from taskrel.select.candidates import Candidate, candidate_for_group

Rule = Literal["ptg", "tag", "hoa"]
#: Largest task count for which every group is enumerated as a candidate (2^20 − 1 groups).
MAX_ENUMERATED_TASKS = 20


def check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ConfigError(f"unknown pairwise rule {rule!r}; use one of {RULES}")


def check_matrix(matrix: np.ndarray, tasks: Sequence[str], where: str = "matrix") -> np.ndarray:
    """Return `matrix` as float64 after checking it is square over `tasks` and finite."""
    try:
        matrix = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: expected a square numeric matrix S[source, target] ({exc})") from None
    n = len(tasks)
    if matrix.shape != (n, n):
        raise ShapeError(f"{where}: expected a {n}×{n} matrix S[source, target] over {n} tasks, got {matrix.shape}")
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        i, j = bad[0]
        raise NonFiniteError(f"{where}: entry [{tasks[i]}, {tasks[j]}] (source, target) is {matrix[i, j]}")
    if len(set(tasks)) != n:
        raise DataError(f"{where}: task names {list(tasks)} repeat")
    return matrix


def member_values(matrix: np.ndarray, members: Sequence[int], rule: Rule) -> np.ndarray:
    """Per-member values of the group ``members`` (indices into ``S[source, target]``)."""
    sub = matrix[np.ix_(members, members)]
    size = len(members)
    if rule == "ptg":
        return sub.sum(axis=0) / size
    if size == 1:
        return np.diag(sub).copy() if rule == "hoa" else np.zeros(1)
    return (sub.sum(axis=0) - np.diag(sub)) / (size - 1)


def group_values(matrix: np.ndarray, tasks: Sequence[str], group: Iterable[str], rule: Rule) -> dict[str, float]:
    """Value of each member of `group` under `rule` (see the module docstring).

    `matrix` must be a finite ``len(tasks) × len(tasks)`` matrix ``S[source, target]``; `group` a
    non-empty set of names from `tasks` (a string is read as its characters).
    """
    check_rule(rule)
    matrix = check_matrix(matrix, list(tasks))
    group = make_group(group, tasks, "group")
    index = {t: i for i, t in enumerate(tasks)}
    members = [t for t in tasks if t in group]
    values = member_values(matrix, [index[t] for t in members], rule)
    return dict(zip(members, values.tolist(), strict=True))


def group_score(matrix: np.ndarray, tasks: Sequence[str], group: Iterable[str], rule: Rule) -> float:
    """Sum of the member values of `group`."""
    return float(sum(group_values(matrix, tasks, group, rule).values()))


def pairwise_candidates(
    matrix: np.ndarray, tasks: Sequence[str], rule: Rule, sizes: Iterable[int] | None = None
) -> list[Candidate]:
    """Every group (of the given sizes) as a candidate scored by `rule`; each costs 1 network."""
    check_rule(rule)
    tasks = list(tasks)
    matrix = check_matrix(matrix, tasks)
    if len(tasks) > MAX_ENUMERATED_TASKS:
        raise ConfigError(
            f"{len(tasks)} tasks have {2 ** len(tasks) - 1} groups, too many to enumerate (limit "
            f"{MAX_ENUMERATED_TASKS} tasks); use the compact formulation taskrel.select.PairwiseProblem"
        )
    index = {t: i for i, t in enumerate(tasks)}
    out = []
    for group in all_groups(tasks, sizes):
        members = [t for t in tasks if t in group]
        values = member_values(matrix, [index[t] for t in members], rule)
        out.append(candidate_for_group(group, dict(zip(members, values.tolist(), strict=True)), tasks))
    return out


def read_matrix_csv(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a pairwise matrix ``S[source, target]`` in the layout ``taskrel affinity`` writes."""
    tasks, matrix = read_square_csv(path)
    return tasks, check_matrix(matrix, tasks, str(path))


def write_matrix_csv(path: str | os.PathLike, tasks: Sequence[str], matrix: np.ndarray) -> None:
    """Write ``S[source, target]`` in the layout `read_matrix_csv` reads."""
    write_square_csv(path, tasks, check_matrix(matrix, tasks))
