"""`GainTable`: the sign convention against a hand computation, and every malformed file refused by name."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskrel.errors import DataError, NonFiniteError, UnknownTaskError
from taskrel.gains import GainTable

GOOD = """group,task,seed,val_loss,test_loss,gain
a,a,0,1.0,2.0,0
b,b,0,4.0,4.0,0
a|b,a,0,0.5,1.0,0
a|b,b,0,5.0,3.0,0
"""


def write(tmp_path, text, name="gains.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_gains_are_recomputed_from_the_losses_of_the_asked_split(tmp_path):
    path = write(tmp_path, GOOD)
    test = GainTable.read_csv(path)
    val = GainTable.read_csv(path, split="val")
    assert test.tasks == ("a", "b") and val.split == "val"
    row = lambda t, g, task: t.frame.query("group == @g and task == @task").gain.item()  # noqa: E731
    assert row(test, "a|b", "a") == pytest.approx((2.0 - 1.0) / 2.0)  # gain = (L_STL − L_G) / L_STL, test
    assert row(test, "a|b", "b") == pytest.approx((4.0 - 3.0) / 4.0)
    assert row(val, "a|b", "a") == pytest.approx((1.0 - 0.5) / 1.0)  # the same file, validation losses
    assert row(val, "a|b", "b") == pytest.approx((4.0 - 5.0) / 4.0)


BAD = [
    ("", DataError, "empty file; expected a header group,task,seed"),
    ("group,task,seed,val_loss,test_loss,gain\n", DataError, "no rows after the header"),
    ("group,task,seed,val_loss,gain\na,a,0,1,0\n", DataError, r"missing column\(s\) \['test_loss'\]"),
    (GOOD.replace("a|b,a,0,0.5", "a|b,a,0,abc"), DataError, r"row 4, column 'val_loss': 'abc' is not a finite number"),
    (GOOD.replace("a|b,a,0,0.5", "a|b,a,0,nan"), DataError, r"row 4, column 'val_loss'"),
    (GOOD.replace("a|b,b,0,5.0,3.0", "a|b,b,0,5.0,inf"), DataError, r"row 5, column 'test_loss'"),
    (GOOD.replace("a|b,a,0,", "a|b,a,0.5,"), DataError, r"row 4, column 'seed': 0.5 is not an integer"),
    (GOOD.replace("a|b,a,0", ",a,0"), DataError, "row 4: empty group cell"),
    (GOOD.replace("a|b,b", "b|a,b"), DataError, r"row 5: group 'b\|a' is not in task order \(a, b\); write 'a\|b'"),
    (GOOD.replace("a|b,b", "a|c,b"), UnknownTaskError, r"unknown task\(s\) 'c' in .* row 5"),
    (GOOD.replace("a|b,b,0", "a|b,a,0"), DataError, r"row 5: run 'a\|b' seed 0 task 'a' appears twice"),
    (GOOD + "a|b,c,0,1,1,0\n", UnknownTaskError, r"row 6: task 'c' is not a member of group 'a\|b'"),
    ("group,task,seed,val_loss,test_loss,gain\na|b,a,0,1,1,0\n", DataError, "no single-task rows"),
    (GOOD.replace("b,b,0,4.0,4.0", "b,b,0,4.0,0.0"), DataError, r"STL test loss of task\(s\) \['b'\] is not positive"),
]


@pytest.mark.parametrize(("text", "error", "message"), BAD)
def test_malformed_gain_tables_are_refused_naming_file_row_and_column(tmp_path, text, error, message):
    path = write(tmp_path, text)
    with pytest.raises(error, match=message) as raised:
        GainTable.read_csv(path)
    assert str(path) in str(raised.value)


def test_runs_without_a_members_loss_or_with_a_zero_stl_loss_are_refused():
    with pytest.raises(DataError, match=r"run 'a\|b' seed 0 has no test loss for its task 'b'"):
        GainTable.from_runs([("a", 0, {"a": 1.0}, {"a": 1.0}), ("a|b", 0, {"a": 1, "b": 1}, {"a": 1})], ["a", "b"])
    with pytest.raises(NonFiniteError, match="val loss of task 'a' is nan"):
        GainTable.from_runs([("a", 0, {"a": math.nan}, {"a": 1.0})], ["a"])
    with pytest.raises(DataError, match="not positive"):
        GainTable.from_runs([("a", 0, {"a": 1.0}, {"a": 0.0})], ["a"])


losses = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), losses, losses), min_size=1, max_size=6), losses, losses)
def test_any_table_written_reads_back_with_the_same_gains(tmp_path_factory, pair_runs, stl_val, stl_test):
    """Property: to_csv → read_csv keeps every row, and the gains equal the formula computed here by hand."""
    runs = [("a", 0, {"a": stl_val}, {"a": stl_test}), ("b", 0, {"b": stl_val}, {"b": stl_test})]
    seeds = {}
    for seed, val, test in pair_runs:
        seeds[seed] = (val, test)
    runs += [("a|b", s, {"a": v, "b": v}, {"a": t, "b": t}) for s, (v, t) in seeds.items()]
    table = GainTable.from_runs(runs, ["a", "b"])
    path = tmp_path_factory.mktemp("gains") / "g.csv"
    table.to_csv(path)
    back = GainTable.read_csv(path)
    assert len(back.frame) == len(table.frame) == 2 + 2 * len(seeds)
    pairs = back.frame[back.frame.group == "a|b"].sort_values(["seed", "task"])
    expected = np.array([(stl_test - seeds[s][1]) / stl_test for s in sorted(seeds) for _ in "ab"])
    # the CSV keeps 6 significant digits of each loss: the gain's rounding error is bounded by that
    bound = 1e-5 * (1 + np.array([seeds[s][1] / stl_test for s in sorted(seeds) for _ in "ab"]))
    assert (np.abs(pairs.gain.to_numpy() - expected) <= bound).all()
    assert isinstance(back.frame, pd.DataFrame) and back.tasks == ("a", "b")
