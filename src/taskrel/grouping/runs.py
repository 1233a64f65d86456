"""`Runs`: the one door to a problem's trained runs — train groups into its store, read them back as gain tables.

The store is opened once, bound to the problem's fingerprint (a store of another problem is refused
before any training). Training goes through `run_sweep` (every executor, resumable); any failed run
of a requested group stops with a `TrainingFailed` naming the group, the seed and the error. Reads
are cached until the next training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from taskrel.errors import ConfigError, DataError, TaskrelError
from taskrel.gains import GainTable
from taskrel.groups import Group, group_name
from taskrel.problems.protocol import GroupResult, Problem, check_fingerprint
from taskrel.train.store import RunKey, RunRecord, RunStore
from taskrel.train.sweep import result_record, run_sweep


class TrainingFailed(TaskrelError):
    """A training the caller needs failed; the message names the group, seed and the error."""


class Runs:
    """The runs of `problem` with training `seeds` in the store at `path` (see the module docstring).

    `seeds`: a count S (seeds 0 … S − 1) or the seeds themselves. `sweep` holds `run_sweep`'s
    options (workers, executor, address, progress).
    """

    def __init__(self, problem: Problem, path: str | os.PathLike, seeds: int | Sequence[int] = 1, **sweep) -> None:
        self.problem = problem
        self.tasks = list(problem.tasks)
        self.path = Path(path)
        self.seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
        if not self.seeds:
            raise ConfigError("at least one training seed is needed")
        self.sweep = sweep
        self.fingerprint = check_fingerprint(problem)
        self.store = RunStore(self.path, self.fingerprint)
        self._records: list[RunRecord] | None = None

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Runs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def train(self, groups: Sequence[Group]) -> None:
        """Train every (group, seed) not yet done; raise `TrainingFailed` if one of them failed."""
        report = run_sweep(self.problem, list(groups), self.seeds, self.path, **self.sweep)
        self._records = None
        if report.failures:
            key, error = report.failures[0]
            more = f" ({len(report.failures) - 1} more failed)" if len(report.failures) > 1 else ""
            raise TrainingFailed(
                f"training {key.group} (seed {key.seed}) failed: {error}{more}; fix it and rerun, "
                f"or `taskrel sweep --retry-failed` on {self.path}"
            )

    def keep(self, group: Group, seed: int, result: GroupResult) -> None:
        """Record a run trained elsewhere (e.g. the all-task affinity run), unless it is already done."""
        name = group_name(group, self.tasks)
        if seed in self.seeds and not self.store.status([RunKey(name, seed)]):
            self.store.record(result_record(name, seed, result))
            self._records = None

    def records(self) -> list[RunRecord]:
        if self._records is None:
            self._records = list(self.store.records("done"))
        return self._records

    def table(self, groups: Sequence[Group] | None = None) -> GainTable:
        """Finished runs (of `groups` and the single tasks, or all) as a gain table of test gains with val losses."""
        wanted = None if groups is None else {group_name(g, self.tasks) for g in groups} | set(self.tasks)
        records = [(r.group, r.seed, r.val_loss, r.test_loss) for r in self.records()
                   if r.seed in self.seeds and (wanted is None or r.group in wanted)]  # fmt: skip
        return GainTable.from_runs(records, self.tasks)

    def validation_rows(self) -> dict[tuple[str, str], np.ndarray]:
        """Per (group text, task): seed-mean loss of every validation row, for runs that recorded them."""
        rows: dict[tuple[str, str], list[np.ndarray]] = {}
        for record in self.records():
            if record.seed in self.seeds and record.val_rows:
                for task, values in record.val_rows.items():
                    rows.setdefault((record.group, task), []).append(np.asarray(values, float))
        for (group, task), parts in rows.items():
            if len({len(p) for p in parts}) > 1:
                raise DataError(f"runs of {group!r} score {sorted({len(p) for p in parts})} validation rows of "
                                f"task {task!r} in different seeds; a problem must score the same rows every time")
        return {key: np.mean(np.stack(parts), axis=0) for key, parts in rows.items()}


__all__ = ["Runs", "TrainingFailed"]
