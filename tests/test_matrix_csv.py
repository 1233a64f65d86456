"""The square task-matrix CSV: any valid matrix round-trips, every corruption is refused naming file, row and column."""

import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskrel.affinity import AffinityMatrix
from taskrel.errors import DataError, NonFiniteError, ShapeError, TaskrelError, UnknownTaskError
from taskrel.matrix_csv import read_square_csv, write_square_csv

names = st.text(st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="|"), min_size=1, max_size=6).filter(
    lambda s: s == s.strip()
)
entries = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def matrices(draw, max_tasks=6):
    tasks = draw(st.lists(names, min_size=1, max_size=max_tasks, unique=True))
    values = draw(st.lists(entries, min_size=len(tasks) ** 2, max_size=len(tasks) ** 2))
    return tasks, np.array(values).reshape(len(tasks), len(tasks))


@settings(max_examples=60, deadline=None)
@given(matrices())
def test_any_valid_matrix_reads_back_with_its_names_and_12_significant_digits(tmp_path_factory, case):
    tasks, matrix = case
    path = tmp_path_factory.mktemp("m") / "m.csv"
    write_square_csv(path, tasks, matrix)
    back_tasks, back = read_square_csv(path)
    assert back_tasks == tasks
    # %.12g keeps 12 significant digits: the relative error of each entry is at most 5e-12
    assert (np.abs(back - matrix) <= 5e-12 * np.abs(matrix)).all()
    with open(path, newline="", encoding="utf-8") as handle:  # the layout, read by the csv module itself
        rows = list(csv.reader(handle))
    assert rows[0] == ["source", *tasks] and [r[0] for r in rows[1:]] == tasks


@settings(max_examples=30, deadline=None)
@given(matrices(max_tasks=5), st.randoms(use_true_random=False))
def test_a_matrix_over_the_same_tasks_in_another_order_is_returned_in_the_asked_order(tmp_path_factory, case, rng):
    tasks, matrix = case
    path = tmp_path_factory.mktemp("m") / "m.csv"
    write_square_csv(path, tasks, matrix)
    order = rng.sample(tasks, len(tasks))
    back_tasks, back = read_square_csv(path, order)
    assert back_tasks == order
    for i, source in enumerate(order):
        for j, target in enumerate(order):
            expected = matrix[tasks.index(source), tasks.index(target)]
            assert abs(back[i, j] - expected) <= 5e-12 * abs(expected)


TASKS = ["a", "b", "c"]
GOOD = "source,a,b,c\na,1,2,3\nb,4,5,6\nc,7,8,9\n"


def corrupt(kind: str, i: int, j: int) -> tuple[str, type[TaskrelError], str]:
    """The good file with one corruption at source row i / target column j, the error it must raise, its message."""
    lines = GOOD.splitlines()
    cells = [line.split(",") for line in lines]
    row, col = i + 2, j + 2  # file numbering: header = row 1, source names = column 1
    if kind in ("text", "empty", "nan", "inf"):
        cells[i + 1][j + 1] = {"text": "abc", "empty": "", "nan": "nan", "inf": "-inf"}[kind]
        error, message = (DataError, "is not a number") if kind in ("text", "empty") else (NonFiniteError, "not finite")
        cell = rf"row {row}, column {col} \(source '{TASKS[i]}', target '{TASKS[j]}'\)"
        return _join(cells), error, rf"{cell}: .*{message}"
    if kind == "drop_row":
        del cells[i + 1]
        return _join(cells), ShapeError, r"2 source rows for the header's 3 tasks; the matrix must be square"
    if kind == "drop_column":
        for line in cells:
            del line[j + 1]
        return _join(cells), ShapeError, r"3 source rows for the header's 2 tasks; the matrix must be square"
    if kind == "extra_row":
        return GOOD + "d,1,2,3\n", ShapeError, r"4 source rows for the header's 3 tasks"
    if kind in ("short_row", "extra_cell"):
        cells[i + 1] = cells[i + 1][:-1] if kind == "short_row" else [*cells[i + 1], "0"]
        return _join(cells), ShapeError, rf"row {row} has {len(cells[i + 1])} cells, expected 4 \(the source task"
    if kind == "swap_rows":
        first, second = sorted([i, (i + 1) % 3])
        cells[first + 1], cells[second + 1] = cells[second + 1], cells[first + 1]
        return _join(cells), DataError, (
            rf"row {first + 2}, column 1: source '{TASKS[second]}' is listed in the header out of order; "
            rf"expected '{TASKS[first]}'"
        )
    if kind == "unknown_row":
        cells[i + 1][0] = "z"
        return _join(cells), DataError, rf"row {row}, column 1: source 'z' is not in the header; expected '{TASKS[i]}'"
    if kind == "duplicate_label":
        other = (j + 1) % 3
        cells[0][j + 1] = TASKS[other]
        first, second = sorted([j + 2, other + 2])
        twice = rf"task '{TASKS[other]}' appears twice \(columns {first} and {second}\)"
        return _join(cells), DataError, rf"row 1 \(header\): {twice}"
    if kind == "empty_label":
        cells[0][j + 1] = " "
        return _join(cells), DataError, rf"row 1 \(header\), column {col}: task name '' is empty$"
    if kind == "separator":
        cells[0][j + 1] = "a|b"
        return _join(cells), DataError, rf"column {col}: task name 'a\|b' contains '\|', the group separator"
    if kind == "empty_file":
        return "", DataError, "empty file; expected a header 'source,<task>"
    if kind == "header_only":
        return lines[0] + "\n", DataError, r"no rows after the header; expected one row per task \(3\)"
    if kind == "no_tasks":
        return "source\na\n", DataError, r"row 1 \(header\): no task names"
    raise AssertionError(kind)


def _join(cells):
    return "\n".join(",".join(line) for line in cells) + "\n"


KINDS = ["text", "empty", "nan", "inf", "drop_row", "drop_column", "extra_row", "short_row", "extra_cell",
         "swap_rows", "unknown_row", "duplicate_label", "empty_label", "separator", "empty_file", "header_only",
         "no_tasks"]  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(KINDS), st.integers(0, 2), st.integers(0, 2))
def test_every_corruption_is_refused_naming_the_file_row_and_column(tmp_path_factory, kind, i, j):
    text, error, message = corrupt(kind, i, j)
    path = tmp_path_factory.mktemp("bad") / "m.csv"
    path.write_text(text)
    for read in (read_square_csv, AffinityMatrix.read_csv):
        with pytest.raises(error, match=message) as raised:
            read(path)
        assert str(raised.value).startswith(f"{path}: ")
        assert "\n" not in str(raised.value)


def test_files_that_are_not_text_or_not_there(tmp_path):
    binary = tmp_path / "m.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(DataError, match=r"m\.csv: not a UTF-8 text file"):
        read_square_csv(binary)
    with pytest.raises(DataError, match=r"nope\.csv: cannot read \(No such file or directory\)"):
        read_square_csv(tmp_path / "nope.csv")


def test_a_matrix_over_other_tasks_than_the_expected_ones(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(GOOD)
    with pytest.raises(UnknownTaskError, match=r"m\.csv: task\(s\) 'c' are not among the expected tasks \(a, b, d\)"):
        read_square_csv(path, ["a", "b", "d"])
    with pytest.raises(DataError, match=r"m\.csv: no row and column for task\(s\) 'd'"):
        read_square_csv(path, ["a", "b", "c", "d"])
    with pytest.raises(UnknownTaskError, match="'c' are not among"):
        AffinityMatrix.read_csv(path, tasks=["a", "b"])
    tasks, matrix = read_square_csv(path, ["c", "a", "b"])
    assert tasks == ["c", "a", "b"] and matrix[0].tolist() == [9.0, 7.0, 8.0]  # row c of GOOD, columns c, a, b


@pytest.mark.parametrize(
    ("tasks", "matrix", "error", "message"),
    [
        (["a", "b"], np.zeros((2, 3)), ShapeError, r"expected a 2×2 matrix for tasks \['a', 'b'\], got shape \(2, 3\)"),
        (["a", "b"], [[0.0, np.nan], [0.0, 0.0]], NonFiniteError, r"entry \['a', 'b'\] \(source, target\) is nan"),
        (["a", "a"], np.zeros((2, 2)), DataError, r"task 'a' appears twice \(columns 2 and 3\)"),
        ([" a", "b"], np.zeros((2, 2)), DataError, r"column 2: task name ' a' has surrounding spaces"),
        (["a|b", "c"], np.zeros((2, 2)), DataError, "the group separator"),
        ([], np.zeros((0, 0)), DataError, "no task names"),
    ],
)
def test_the_writer_refuses_what_the_layout_cannot_hold_and_writes_nothing(tmp_path, tasks, matrix, error, message):
    path = tmp_path / "m.csv"
    with pytest.raises(error, match=message):
        write_square_csv(path, tasks, matrix)
    assert not path.exists()
