"""`GainTable`: measured per-(group, task) MTL gains over single-task learning.

gain(G → t) = (L_STL(t) − L_G(t)) / L_STL(t); positive means training t with the group helps t.
L_STL(t) is the single-task loss of t averaged over the seeds in the table (a steadier reference
than pairing seeds); L_G(t) is t's loss in the run of group G with one seed. `split` says whether
the `gain` column is computed from test (default) or validation losses. Rows: one per
(group, member task, seed), singles included (their gains scatter around 0 by seed noise).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from taskrel.errors import DataError, NonFiniteError, UnknownTaskError
from taskrel.groups import Group, group_name, parse_group
from taskrel.problems.protocol import Problem, check_fingerprint
from taskrel.train.store import RunStore

COLUMNS = ("group", "task", "seed", "val_loss", "test_loss", "gain")
SPLITS = ("test", "val")


@dataclass(frozen=True)
class GainTable:
    """Long table of measured gains; `tasks` fixes the task order of canonical group names."""

    frame: pd.DataFrame
    tasks: tuple[str, ...]
    split: str = "test"

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise DataError(f"gain table lacks column(s) {missing}")
        if self.split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {self.split!r}")

    @classmethod
    def from_runs(
        cls,
        runs: Iterable[tuple[str, int, dict[str, float], dict[str, float]]],
        tasks: Sequence[str],
        split: str = "test",
    ) -> GainTable:
        """Build from (group text, seed, per-task val losses, per-task test losses) of finished runs.

        Every task that appears in a group must have at least one single-task run.
        """
        rows = []
        for group, seed, val, test in runs:
            members = parse_group(group, tasks)
            for task in members:
                losses = []
                for name, split_losses in (("val", val), ("test", test)):
                    if split_losses is None or task not in split_losses:
                        raise DataError(f"run {group!r} seed {seed} has no {name} loss for its task {task!r}")
                    losses.append(float(split_losses[task]))
                    if not np.isfinite(losses[-1]):
                        raise NonFiniteError(f"run {group!r} seed {seed}: {name} loss of task {task!r} is {losses[-1]}")
                rows.append((group_name(members, tasks), task, int(seed), *losses))
        frame = _with_gains(pd.DataFrame(rows, columns=list(COLUMNS[:-1])), split, tasks)
        frame = frame.sort_values(["group", "task", "seed"], key=_order_key(tasks), ignore_index=True)
        return cls(frame, tuple(tasks), split)

    @classmethod
    def from_store(cls, path: str | os.PathLike, problem: Problem, split: str = "test") -> GainTable:
        """Every finished run of `problem` in the run store at `path` (see `from_runs`)."""
        with RunStore.open(path, check_fingerprint(problem).get("name", "problem")) as store:
            runs = [(r.group, r.seed, r.val_loss, r.test_loss) for r in store.records("done")]
        return cls.from_runs(runs, problem.tasks, split=split)

    def with_split(self, split: str) -> GainTable:
        """The same runs with the `gain` column computed from the losses on `split` ("test" or "val")."""
        return GainTable(_with_gains(self.frame, split, self.tasks), self.tasks, split)

    @classmethod
    def read_csv(cls, path: str | os.PathLike, tasks: Sequence[str] | None = None, split: str = "test") -> GainTable:
        """Read a table written by `to_csv` or `taskrel gains`, checking every row.

        `tasks` fixes the task order; by default it is the order of the single-task rows in the file
        (every task needs one: it is the STL reference). The `gain` column is recomputed from the
        `split` losses with the formula of `from_runs`, so a table read with ``split="val"`` holds
        validation gains whatever split it was exported with. Raises `DataError` naming the file,
        row and column of the first problem (empty file, missing column, non-numeric or non-finite
        value, empty or non-canonical group, task outside its group, duplicated run, no STL row).
        """
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {split!r}")
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: empty file; expected a header {','.join(COLUMNS)} and rows") from None
        except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise DataError(f"{path}: cannot read gain table ({exc})") from None
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; expected {','.join(COLUMNS)}")
        if frame.empty:
            raise DataError(f"{path}: no rows after the header")
        frame = frame[list(COLUMNS)].copy()
        for column in ("seed", "val_loss", "test_loss", "gain"):
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = values.isna() | ~np.isfinite(values.to_numpy(float))
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{path} row {row + 2}, column {column!r}: {frame[column].iloc[row]!r} is not a finite number"
                )
            frame[column] = values
        if (frame["seed"] != frame["seed"].round()).any():
            row = int(np.flatnonzero((frame["seed"] != frame["seed"].round()).to_numpy())[0])
            raise DataError(f"{path} row {row + 2}, column 'seed': {frame['seed'].iloc[row]} is not an integer")
        frame["seed"] = frame["seed"].astype(int)
        for row, (group, task) in enumerate(zip(frame["group"], frame["task"], strict=True)):
            if not group.strip() or not task.strip():
                raise DataError(f"{path} row {row + 2}: empty {'group' if not group.strip() else 'task'} cell")
        if tasks is None:
            tasks = list(dict.fromkeys(frame.loc[frame["group"] == frame["task"], "task"]))
            if not tasks:
                raise DataError(f"{path}: no single-task rows (group = task); gains need an STL reference per task")
        for row, (group, task) in enumerate(zip(frame["group"], frame["task"], strict=True)):
            where = f"{path} row {row + 2}"
            members = parse_group(group, tasks, where)
            canonical = group_name(members, tasks)
            if canonical != group:
                raise DataError(
                    f"{where}: group {group!r} is not in task order ({', '.join(tasks)}); write {canonical!r}"
                )
            if task not in members:
                raise UnknownTaskError(f"{where}: task {task!r} is not a member of group {group!r}")
        duplicated = frame.duplicated(["group", "task", "seed"])
        if duplicated.any():
            row = int(np.flatnonzero(duplicated.to_numpy())[0])
            raise DataError(
                f"{path} row {row + 2}: run {frame['group'].iloc[row]!r} seed {frame['seed'].iloc[row]} task "
                f"{frame['task'].iloc[row]!r} appears twice"
            )
        return cls(_with_gains(frame, split, tasks, str(path)), tuple(tasks), split)

    def to_csv(self, path: str | os.PathLike) -> None:
        self.frame.to_csv(path, index=False, float_format="%.6g")

    def to_parquet(self, path: str | os.PathLike) -> None:
        self.frame.to_parquet(path, index=False)

    # ---------------------------------------------------------------------------------------
    def mean(self) -> pd.DataFrame:
        """Per (group, task): mean and standard deviation of the gain over seeds, and the seed count."""
        out = (
            self.frame.groupby(["group", "task"], sort=False)
            .agg(
                gain=("gain", "mean"),
                gain_std=("gain", "std"),
                seeds=("seed", "nunique"),
                val_loss=("val_loss", "mean"),
                test_loss=("test_loss", "mean"),
            )
            .reset_index()
        )
        out["gain_std"] = out["gain_std"].fillna(0.0)
        return out

    def groups(self) -> list[Group]:
        """The distinct groups of the table, in table order."""
        return [parse_group(g, self.tasks) for g in dict.fromkeys(self.frame["group"])]

    def stl_loss(self) -> dict[str, float]:
        """Mean single-task loss per task on the table's split."""
        singles = self.frame[self.frame["group"] == self.frame["task"]]
        return singles.groupby("task")[f"{self.split}_loss"].mean().to_dict()

    def gains(self) -> dict[tuple[Group, str], float]:
        """Mean gain per (group, member task)."""
        means = self.mean()
        return {
            (parse_group(g, self.tasks), t): float(v)
            for g, t, v in zip(means["group"], means["task"], means["gain"], strict=True)
        }

    def pairwise(self) -> np.ndarray:
        """Matrix P[source, target] = mean gain of `target` when trained in the pair {source, target}.

        Entries of pairs that were not measured are NaN; the diagonal is 0.
        """
        n = len(self.tasks)
        index = {t: i for i, t in enumerate(self.tasks)}
        out = np.full((n, n), np.nan)
        np.fill_diagonal(out, 0.0)
        for (group, task), value in self.gains().items():
            if len(group) == 2:
                (source,) = group - {task}
                out[index[source], index[task]] = value
        return out


def _with_gains(frame: pd.DataFrame, split: str, tasks: Sequence[str], where: str = "gain table") -> pd.DataFrame:
    """`frame` with ``gain`` from its `split` losses against the seed-mean single-task loss of each task."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    loss = f"{split}_loss"
    singles = frame[frame["group"] == frame["task"]]
    reference = singles.groupby("task")[loss].mean()
    lacking = sorted(set(frame["task"]) - set(reference.index), key=list(tasks).index)
    if lacking:
        raise DataError(f"{where}: no single-task run for task(s) {lacking}: gains need an STL reference")
    zero = sorted(t for t, v in reference.items() if not v > 0)
    if zero:
        raise DataError(f"{where}: the STL {split} loss of task(s) {zero} is not positive; gains are relative to it")
    stl = frame["task"].map(reference)
    return frame.assign(gain=(stl - frame[loss]) / stl)


def _order_key(tasks: Sequence[str]):
    position = {t: i for i, t in enumerate(tasks)}

    def key(column: pd.Series) -> pd.Series:
        if column.name == "group":
            return column.map(lambda g: (len(g.split("|")), tuple(position[t] for t in g.split("|"))))
        if column.name == "task":
            return column.map(position)
        return column

    return key
