"""Published tables as selection problems: Standley val→test reproduction, MTG-Net, TAG, partitions."""

import itertools

import numpy as np
import pytest

from taskrel.data.published import random_partitions
from taskrel.errors import ConfigError
from taskrel.select.baselines import standley_branch_and_bound, tag_exhaustive
from taskrel.select.published import mtgnet_problem, standley_problem, tag_problem


def _reference_selection(val, budget):
    """Brute force over every set of networks within the budget (≤ 4 networks for budget ≤ 2)."""
    best, best_set = np.inf, None
    for r in range(1, 5):
        for subset in itertools.combinations(val.candidates, r):
            if sum(c.costs["cost"] for c in subset) > budget + 1e-9:
                continue
            per_task = [min((c.values[t] for c in subset if t in c.tasks), default=np.inf) for t in val.tasks]
            if sum(per_task) < best:
                best, best_set = sum(per_task), subset
    return best, best_set


def _test_score(test, chosen):
    by_id = {c.id: c for c in test.candidates}
    return sum(min(by_id[c.id].values[t] for c in chosen if t in c.tasks) for t in test.tasks)


def test_standley_select_on_val_score_on_test():
    val, test = standley_problem("small", "val"), standley_problem("small", "test")
    assert len(val.candidates) == 36 and {c.costs["cost"] for c in val.candidates} == {0.5, 1.0}
    previous = np.inf
    for budget in (1.0, 1.5, 2.0):
        selection = val.with_constraints(budgets={"cost": budget}).solve()
        expected, chosen = _reference_selection(val, budget)
        assert selection.objective == pytest.approx(expected)
        scored = test.evaluate(selection.selected)
        assert scored.objective == pytest.approx(_test_score(test, chosen))
        assert scored.objective <= previous + 1e-12  # more budget never hurts on this table
        previous = scored.objective
    for budget in (3.0, 5.0):  # larger budgets: Standley's own search as the reference
        selection = val.with_constraints(budgets={"cost": budget}).solve()
        chosen, objective = standley_branch_and_bound(val, budget)
        assert selection.objective == pytest.approx(objective)
        assert test.evaluate(selection.selected).objective == pytest.approx(test.evaluate(chosen).objective)


def test_mtgnet_tables_follow_mtgnet_conventions():
    val = mtgnet_problem("ettm1", "val")
    assert len(val.tasks) == 7 and len(val.candidates) == 127
    assert not val.constraints.cover
    singles = [c for c in val.candidates if len(c.tasks) == 1]
    assert all(v == 0.0 for c in singles for v in c.values.values())
    best = val.with_constraints(max_groups=1).solve()
    by_hand = max(sum(max(v, 0.0) for v in c.values.values()) for c in val.candidates)
    assert best.objective == pytest.approx(by_hand)
    with pytest.raises(ConfigError, match="split"):
        mtgnet_problem("ettm1", "train")


def test_tag_celeba_milp_equals_tag_search():
    problem = tag_problem("celeba", "affinity")
    assert len(problem.tasks) == 9
    selection = problem.with_constraints(max_groups=2).solve()
    chosen, objective = tag_exhaustive(problem, 2)
    assert selection.objective == pytest.approx(objective)
    assert set(selection.selected) == set(chosen)


def test_random_partitions_cover_the_school_tasks():
    partitions = random_partitions("school")
    assert len(partitions) == 1000
    for partition in partitions[:50]:
        flat = sorted(int(t) for group in partition for t in group)
        assert flat == list(range(1, 140))
