"""Pairwise group scores: hand-computed values and the published HOA / TAG+HOA tables."""

import numpy as np
import pytest

from taskrel.data import data_file
from taskrel.data.published import MTGNET_TASKONOMY_TASKS, mtgnet_pair_matrix, mtgnet_table, tag_matrix
from taskrel.errors import DataError, NonFiniteError, ShapeError, UnknownTaskError
from taskrel.select import group_score, group_values, read_matrix_csv, write_matrix_csv

# S[source, target]
S = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
TASKS = ("a", "b", "c")


def test_rules_by_hand():
    assert group_values(S, TASKS, "abc", "ptg") == pytest.approx({"a": 12 / 3, "b": 15 / 3, "c": 18 / 3})
    assert group_values(S, TASKS, "ac", "tag") == pytest.approx({"a": 7.0, "c": 3.0})  # incoming = column
    assert group_values(S, TASKS, "abc", "hoa") == pytest.approx({"a": 5.5, "b": 5.0, "c": 4.5})
    assert group_values(S, TASKS, "b", "tag") == {"b": 0.0}
    assert group_values(S, TASKS, "b", "hoa") == {"b": 5.0}
    assert group_values(S, TASKS, "b", "ptg") == {"b": 5.0}


@pytest.mark.parametrize("dataset", ["ettm1", "mimic27"])
def test_hoa_rule_reproduces_mtgnet_hoa_files(dataset):
    tasks, matrix = mtgnet_pair_matrix(dataset, "val")
    _, masks, published = mtgnet_table(dataset, "hoa")
    worst = 0.0
    for mask, row in zip(masks, published, strict=True):
        if mask.sum() < 3:
            continue
        members = [t for t, m in zip(tasks, mask, strict=True) if m]
        ours = group_values(matrix, tasks, members, "hoa")
        worst = max(worst, max(abs(ours[t] - row[tasks.index(t)]) for t in members))
    assert worst < 6e-5  # the files are rounded to 4 decimals


def test_tag_matrices_are_transposed_to_source_target():
    tasks, matrix = tag_matrix("taskonomy", "affinity")
    order = ["ss_l", "norm_l", "depth_l", "key_l", "edge2d_l"]  # MTG-Net's column order
    assert len(order) == len(MTGNET_TASKONOMY_TASKS)
    _, masks, _published = mtgnet_table("taskonomy", "val")
    tag_hoa = np.loadtxt(data_file("mtgnet_song2022/taskonomy/taskonomy_TAGHOA.csv"))
    worst = 0.0
    for mask, row in zip(masks, tag_hoa, strict=True):
        if mask.sum() < 2:
            continue
        members = [order[i] for i in np.flatnonzero(mask)]
        ours = group_values(matrix, tasks, members, "tag")
        worst = max(worst, max(abs(ours[t] - row[order.index(t)]) for t in members))
    assert worst < 1e-4
    # the untransposed matrix does not reproduce the file
    wrong = group_values(matrix.T, tasks, ["ss_l", "norm_l"], "tag")["ss_l"]
    assert abs(wrong - tag_hoa[5][0]) > 1e-2


def test_matrix_csv_round_trip_and_errors(tmp_path):
    path = tmp_path / "m.csv"
    write_matrix_csv(path, TASKS, S)
    tasks, matrix = read_matrix_csv(path)
    assert tasks == list(TASKS) and np.array_equal(matrix, S)
    path.write_text("source,a,b\na,0,1\nc,1,0\n")
    with pytest.raises(DataError, match="row 3, column 1: source 'c' is not in the header"):
        read_matrix_csv(path)
    path.write_text("source,a,b\na,0,x\nb,1,0\n")
    with pytest.raises(DataError, match=r"row 2, column 3 .*'x' is not a number"):
        read_matrix_csv(path)
    path.write_text("source,a,b\na,0,1\nb,inf,0\n")
    with pytest.raises(NonFiniteError, match="row 3"):
        read_matrix_csv(path)


@pytest.mark.parametrize(
    ("matrix", "group", "error", "message"),
    [
        (np.where(np.eye(3) > 0, np.nan, S), "ab", NonFiniteError, r"entry \[a, a\] \(source, target\) is nan"),
        (S[:2, :2], "ab", ShapeError, r"expected a 3×3 matrix S\[source, target\] over 3 tasks, got \(2, 2\)"),
        (S.ravel(), "ab", ShapeError, r"got \(9,\)"),
        ([["1", "2", "x"]] * 3, "ab", DataError, "expected a square numeric matrix"),
        (S, "ad", UnknownTaskError, "unknown task.*'d'"),
        (S, "", DataError, "empty task group"),
    ],
)
def test_group_values_refuse_matrices_and_groups_they_cannot_score(matrix, group, error, message):
    for function in (group_values, group_score):
        with pytest.raises(error, match=message):
            function(matrix, TASKS, group, "tag")
