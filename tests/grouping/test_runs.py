"""The run door: per-row validation losses averaged over seeds, and rows that do not pair refused."""

import numpy as np
import pytest

from taskrel.errors import DataError
from taskrel.grouping.runs import Runs
from taskrel.train.store import RunRecord


class Unused:
    """A problem that is only stored against, never trained."""

    tasks = ("a", "b")

    def fingerprint(self):
        return {"name": "unused"}

    def train(self, group, seed, *, callbacks=(), weighting=None):  # pragma: no cover - never called
        raise AssertionError("not trained here")


def record(group, seed, rows):
    losses = {t: float(np.mean(v)) for t, v in rows.items()}
    return RunRecord(group, seed, "done", losses, losses, None, None, None, None, 1, 0.0, None, rows)


def test_validation_rows_are_seed_means_and_unpairable_rows_are_refused(tmp_path):
    with Runs(Unused(), tmp_path / "runs.db", seeds=2) as runs:
        runs.store.record(record("a", 0, {"a": [1.0, 3.0]}))
        runs.store.record(record("a", 1, {"a": [3.0, 5.0]}))
        runs.store.record(record("a", 2, {"a": [9.0, 9.0]}))  # a seed outside the two asked for
        assert runs.validation_rows()[("a", "a")].tolist() == [2.0, 4.0]
        runs.store.record(record("b", 0, {"b": [1.0, 2.0]}))
        runs.store.record(record("b", 1, {"b": [1.0]}))
    unpaired = r"runs of 'b' score \[1, 2\] validation rows of task 'b'"
    with Runs(Unused(), tmp_path / "runs.db", seeds=2) as runs, pytest.raises(DataError, match=unpaired):
        runs.validation_rows()
