import math

import pytest

from taskrel.errors import DataError, UnknownTaskError
from taskrel.groups import all_groups, from_mask, group_name, ordered, parse_group, to_mask

TASKS = ["83", "78", "84", "85"]


def test_canonical_name_follows_task_order():
    assert group_name({"84", "83"}, TASKS) == "83|84"
    assert parse_group("84|83", TASKS) == frozenset({"83", "84"})
    assert ordered({"85", "78"}, TASKS) == ["78", "85"]


def test_parse_rejects_unknown_duplicate_and_empty_members():
    with pytest.raises(UnknownTaskError, match="'99'"):
        parse_group("83|99", TASKS)
    with pytest.raises(DataError, match="twice"):
        parse_group("83|83", TASKS)
    with pytest.raises(DataError, match="empty member"):
        parse_group("83||84", TASKS)


def test_masks_round_trip_for_every_group():
    groups = list(all_groups(TASKS))
    assert len(groups) == 2 ** len(TASKS) - 1
    masks = {to_mask(g, TASKS) for g in groups}
    assert masks == set(range(1, 2 ** len(TASKS)))
    assert all(from_mask(to_mask(g, TASKS), TASKS) == g for g in groups)


def test_all_groups_by_size():
    for size in range(1, 5):
        assert len(list(all_groups(TASKS, [size]))) == math.comb(4, size)
    with pytest.raises(DataError, match=r"group size 5 out of range 1\.\.4"):
        list(all_groups(TASKS, [5]))
