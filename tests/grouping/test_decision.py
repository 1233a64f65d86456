"""Choosing groups with STL as a free option (against brute force) and safe serving."""

import itertools

import numpy as np
import pandas as pd
import pytest

from taskrel.decision import candidate_groups, choose_groups, serve
from taskrel.errors import UnknownTaskError
from taskrel.gains import GainTable
from taskrel.groups import group_name

TASKS = ("a", "b", "c", "d", "e")


def random_gains(seed):
    rng = np.random.default_rng(seed)
    rows = [(group_name(g, TASKS), t, rng.normal(0.0, 0.1)) for g in candidate_groups(TASKS) for t in sorted(g)]
    return pd.DataFrame(rows, columns=["group", "task", "gain"])


def brute_force(gains, stl, max_groups, budget):
    """Best predicted loss reduction over every set of ≤ max_groups candidates, tasks keeping STL at 0."""
    value = {(g, t): stl[t] * v for g, t, v in gains.itertuples(index=False)}
    groups = sorted(set(gains.group))
    best = 0.0
    for k in range(1, max_groups + 1):
        for chosen in itertools.combinations(groups, k):
            if budget is not None and sum(len(g.split("|")) for g in chosen) > budget:
                continue
            total = sum(max([0.0] + [value[(g, t)] for g in chosen if t in g.split("|")]) for t in TASKS)
            best = max(best, total)
    return best


@pytest.mark.parametrize(("seed", "max_groups", "budget"), [(0, 1, None), (1, 2, None), (2, 2, 5), (3, 3, 6)])
def test_choice_is_the_brute_force_optimum_with_stl_free(seed, max_groups, budget):
    gains = random_gains(seed)
    stl = {t: 1.0 + i for i, t in enumerate(TASKS)}
    choice = choose_groups(gains, TASKS, stl, max_groups=max_groups, budget=budget)
    assert choice.reduction == pytest.approx(brute_force(gains, stl, max_groups, budget), abs=1e-7)
    assert len(choice.groups) <= max_groups and all(len(g) >= 2 for g in choice.groups)
    if budget is not None:
        assert sum(len(g) for g in choice.groups) <= budget


def test_nothing_is_chosen_when_every_group_hurts():
    gains = random_gains(4).assign(gain=lambda f: -f.gain.abs() - 0.01)
    choice = choose_groups(gains, TASKS, dict.fromkeys(TASKS, 1.0), max_groups=2)
    assert choice.groups == [] and choice.reduction == pytest.approx(0.0, abs=1e-9)


def test_serving_takes_stl_where_the_chosen_groups_are_worse_on_validation():
    stl_val, stl_test = {"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.1, "b": 2.1, "c": 3.1}
    runs = [(t, 0, {t: stl_val[t]}, {t: stl_test[t]}) for t in "abc"]
    runs += [("a|b", 0, {"a": 0.9, "b": 2.5}, {"a": 1.2, "b": 1.0}),  # helps a, hurts b on validation
             ("b|c", 0, {"b": 2.2, "c": 2.0}, {"b": 0.5, "c": 2.9})]  # fmt: skip
    table = GainTable.from_runs(runs, ["a", "b", "c"])
    served = serve(table, ["a|b", "b|c"])
    assert {t: s.group for t, s in served.items()} == {"a": "a|b", "b": "b", "c": "b|c"}
    assert served["b"].options == 2 and "worse than STL" in served["b"].reason
    assert served["a"].val_loss == 0.9 and served["a"].stl_val_loss == 1.0
    assert all(s.val_loss <= s.stl_val_loss for s in served.values())
    # a task no chosen group contains keeps its STL model
    assert serve(table, ["a|b"])["c"].group == "c"


def test_a_task_without_an_stl_loss_is_named():
    with pytest.raises(UnknownTaskError, match=r"no STL loss for task\(s\) \['e'\]"):
        choose_groups(random_gains(5), TASKS, {t: 1.0 for t in "abcd"}, max_groups=2)
