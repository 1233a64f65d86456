"""The published searches agree with the MILP where they are exact, and never beat it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskrel.select import Candidate, Constraints, GroupingProblem, PairwiseProblem
from taskrel.select.baselines import (
    beam_search,
    best_random_partition,
    standley_branch_and_bound,
    tag_exhaustive,
)


def _random_problem(seed, sense):
    rng = np.random.default_rng(seed)
    tasks = tuple(f"t{i}" for i in range(5))
    candidates = []
    for j in range(9):
        members = frozenset(t for t in tasks if rng.random() < 0.5) or frozenset([tasks[j % 5]])
        candidates.append(
            Candidate(
                f"c{j}",
                members,
                {t: float(rng.normal()) for t in members},
                {"cost": float(rng.choice([0.5, 1.0]))},
            )
        )
    candidates += [Candidate(f"s{t}", frozenset([t]), {t: float(rng.normal())}) for t in tasks]
    candidates.append(Candidate("all", frozenset(tasks), {t: float(rng.normal()) for t in tasks}))  # k=1 feasible
    return GroupingProblem(tasks, tuple(candidates), sense)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), sense=st.sampled_from(["max", "min"]), k=st.integers(1, 3))
def test_exact_searches_match_the_milp(seed, sense, k):
    problem = _random_problem(seed, sense)
    _, exhaustive = tag_exhaustive(problem, k)
    assert problem.with_constraints(max_groups=k).solve().objective == pytest.approx(exhaustive)
    _, bnb = standley_branch_and_bound(problem, float(k))
    assert problem.with_constraints(budgets={"cost": float(k)}).solve().objective == pytest.approx(bnb)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4))
def test_beam_search_never_beats_the_milp(seed, k):
    problem = _random_problem(seed, "max").with_constraints(cover=False)
    chosen, value = beam_search(problem, k)
    assert len(chosen) <= k
    assert problem.evaluate(chosen).objective == pytest.approx(value)
    assert value <= problem.with_constraints(max_groups=k).solve().objective + 1e-9


def test_best_random_partition_is_scored_by_the_rule():
    S = np.array([[0.0, 1.0, -1.0], [1.0, 0.0, -1.0], [-1.0, -1.0, 0.0]])
    problem = PairwiseProblem(("a", "b", "c"), S, "tag", "max", Constraints(partition=True))
    best, value = best_random_partition(problem, [[["a", "c"], ["b"]], [["a", "b"], ["c"]], [["a", "b", "c"]]])
    assert best == [["a", "b"], ["c"]] and value == pytest.approx(2.0)
    assert value == pytest.approx(problem.solve().objective)
