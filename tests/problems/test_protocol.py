"""`check_result` on a result's per-row validation losses (`GroupResult.val_rows`)."""

import math

import numpy as np
import pytest

from taskrel.errors import DataError
from taskrel.problems.protocol import GroupResult, check_result
from taskrel.train import TrainResult

VAL = {"a": 0.5, "b": 2.0}
TEST = {"a": 0.6, "b": 2.1}


def result(rows, val=VAL):
    return GroupResult(val, TEST, val_rows=rows)


def test_positional_construction_and_the_subclass_still_work():
    old = GroupResult(VAL, TEST, None, None, 3, 1.5)
    assert old.val_rows is None and old.steps == 3 and old.seconds == 1.5
    assert check_result(old, ["a", "b"], "train") is old
    sub = TrainResult(VAL, TEST, val_rows={"a": [0.5], "b": [2.0]}, dataset="toy", group=("a", "b"))
    assert check_result(sub, ["a", "b"], "train") is sub


def test_rows_whose_mean_is_the_val_loss_pass():
    good = result({"a": [0.25, 0.75], "b": [1.0, 3.0, 2.0], "extra": [9.0]})
    assert check_result(good, ["a", "b"], "train") is good
    near = result({"a": [0.5 * (1 + 5e-5)], "b": (np.array([2.0, 2.0]) * (1 - 5e-5)).tolist()})
    check_result(near, ["a", "b"], "train")  # within the relative tolerance 1e-4
    tiny = GroupResult({"a": 0.0}, {"a": 0.0}, val_rows={"a": [5e-9, 0.0]})
    check_result(tiny, ["a"], "train")  # within the absolute tolerance 1e-8
    check_result(result({"a": [np.float32(0.5)], "b": (2.0, 2.0)}), ["a", "b"], "train")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"a": [0.25, 0.75], "b": [1.0, 3.5]}, r"val_rows\[.b.\] whose mean 2\.25 over 2 rows is not its val_loss 2"),
        ({"a": [0.5 * (1 + 3e-4)], "b": [2.0]}, r"val_rows\['a'\] whose mean .* is not its val_loss 0\.5"),
        ({"a": [0.5]}, r"no val_rows for task\(s\) \['b'\]"),
        ({"a": [0.5], "b": [2.0, math.nan]}, r"non-finite value in val_rows\['b'\] at row\(s\) \[1\]: \[nan\]"),
        ({"a": [math.inf, 0.5], "b": [2.0]}, r"non-finite value in val_rows\['a'\] at row\(s\) \[0\]: \[inf\]"),
        ({"a": [], "b": [2.0]}, r"empty val_rows for task 'a'"),
        ({"a": [[0.5]], "b": [2.0]}, r"val_rows\['a'\] that is not a 1-D list of numbers"),
        ({"a": [0.5], "b": np.array([2.0])}, r"val_rows\['b'\] of type ndarray, expected a 1-D list"),
        ({"a": [0.5], "b": "2.0"}, r"val_rows\['b'\] of type str"),
        ([[0.5], [2.0]], r"val_rows of type list, expected \{task: \[row losses\]\}"),
    ],
)
def test_bad_rows_are_refused_naming_the_task_and_the_fault(rows, message):
    with pytest.raises(DataError, match=message):
        check_result(result(rows), ["a", "b"], "train('a|b', seed=0)")
