"""The candidate MILP equals brute force for every constraint type, in overlap and partition modes."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskrel.errors import ConfigError, DataError, InfeasibleError, NonFiniteError, UnknownTaskError
from taskrel.select import Candidate, Constraints, GroupingProblem

from .select_reference import brute_force


@st.composite
def instances(draw):
    n = draw(st.integers(2, 8))
    tasks = [f"t{i}" for i in range(n)]
    m = draw(st.integers(1, 8))
    candidates = []
    for j in range(m):
        members = draw(st.sets(st.sampled_from(tasks), min_size=1, max_size=n))
        values = {t: draw(st.integers(-20, 20)) / 10 for t in members}
        costs = {"cost": draw(st.sampled_from([0.5, 1.0, 2.0])), "memory": float(draw(st.integers(0, 3)))}
        candidates.append({"id": f"c{j}", "tasks": frozenset(members), "values": values, "costs": costs})
    pair = st.tuples(st.sampled_from(tasks), st.sampled_from(tasks)).filter(lambda p: p[0] != p[1])
    together = draw(st.lists(pair, max_size=1))
    apart = draw(
        st.lists(pair, max_size=1).filter(lambda a: not set(map(frozenset, a)) & set(map(frozenset, together)))
    )
    count = draw(st.sampled_from(["none", "max", "exact"]))
    k = draw(st.integers(1, 4))
    min_size = draw(st.integers(1, 2))
    options = {
        "max_groups": k if count == "max" else None,
        "n_groups": k if count == "exact" else None,
        "budgets": draw(st.sampled_from([{}, {"cost": 2.0}, {"cost": 3.0, "memory": 3.0}])),
        "min_size": min_size,
        "max_size": draw(st.sampled_from([None, min_size + 2])),
        "together": tuple(together),
        "apart": tuple(apart),
        "partition": draw(st.booleans()),
        "cover": draw(st.booleans()),
        "uncovered_value": draw(st.sampled_from([0.0, 0.5])),
    }
    return tasks, candidates, draw(st.sampled_from(["max", "min"])), options


def _problem(tasks, candidates, sense, options):
    cands = [Candidate(c["id"], c["tasks"], c["values"], c["costs"]) for c in candidates]
    return GroupingProblem(tuple(tasks), tuple(cands), sense, Constraints(**options))


def _check_feasible(problem, selection, candidates):
    con = problem.constraints
    chosen = [c for c in candidates if c["id"] in selection.selected]
    if con.max_groups is not None:
        assert len(chosen) <= con.max_groups
    if con.n_groups is not None:
        assert len(chosen) == con.n_groups
    for resource, budget in con.budgets.items():
        assert sum(c["costs"][resource] for c in chosen) <= budget + 1e-9
    for c in chosen:
        assert con.min_size <= len(c["tasks"]) <= (con.max_size or math.inf)
        assert not any(a in c["tasks"] and b in c["tasks"] for a, b in con.apart)
    for a, b in con.together:
        assert selection.serving[a] is not None and selection.serving[a] == selection.serving[b]
    for task, cid in selection.serving.items():
        if cid is None:
            assert not con.cover
        else:
            assert task in next(c["tasks"] for c in chosen if c["id"] == cid)
    if con.partition:
        for task in problem.tasks:
            assert sum(task in c["tasks"] for c in chosen) <= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_milp_equals_brute_force(instance):
    tasks, candidates, sense, options = instance
    problem = _problem(tasks, candidates, sense, options)
    expected = brute_force(tasks, candidates, sense, **options)
    if expected is None:
        with pytest.raises(InfeasibleError) as info:
            problem.solve()
        assert info.value.constraint in {
            "cover",
            "size",
            "apart",
            "together",
            "partition",
            "max_groups",
            "n_groups",
            "budget[cost]",
            "budget[memory]",
        }
        return
    selection = problem.solve()
    assert selection.status == "optimal"
    assert selection.objective == pytest.approx(expected, abs=1e-7)
    _check_feasible(problem, selection, candidates)
    assert sum(selection.values.values()) == pytest.approx(selection.objective)


TASKS = ("a", "b", "c")
CANDIDATES = (
    Candidate("ab", frozenset("ab"), {"a": 0.2, "b": 0.1}),
    Candidate("bc", frozenset("bc"), {"b": 0.3, "c": -0.1}),
    Candidate("abc", frozenset("abc"), {"a": 0.0, "b": 0.0, "c": 0.05}, {"cost": 2.0}),
)


def test_overlap_serves_each_task_by_its_best_chosen_group():
    selection = GroupingProblem(TASKS, CANDIDATES, constraints=Constraints(max_groups=2)).solve()
    # {bc, abc}: a 0.0, b 0.3, c 0.05 → 0.35, tied with {ab, abc} (0.2 + 0.1 + 0.05); {ab, bc} gives 0.4
    assert set(selection.selected) == {"ab", "bc"}
    assert selection.serving == {"a": "ab", "b": "bc", "c": "bc"}
    assert selection.objective == pytest.approx(0.4)


def test_infeasible_names_the_constraint():
    problem = GroupingProblem(TASKS, CANDIDATES, constraints=Constraints(partition=True, budgets={"cost": 1.0}))
    with pytest.raises(InfeasibleError) as info:
        problem.solve()
    assert info.value.constraint == "budget[cost]"
    assert "budget cost ≤ 1" in str(info.value)
    orphan = GroupingProblem(("a", "b", "c", "d"), CANDIDATES)
    with pytest.raises(InfeasibleError, match=r"\['d'\] are in no candidate"):
        orphan.solve()


def test_unused_groups_are_dropped_and_time_limit_is_reported():
    useless = Candidate("abc", frozenset("abc"), {"a": -1.0, "b": -1.0, "c": -1.0})
    problem = GroupingProblem(TASKS, (*CANDIDATES[:2], useless), constraints=Constraints(max_groups=3))
    selection = problem.solve(time_limit=5)
    assert set(selection.selected) == {"ab", "bc"}  # the third group would serve no task
    assert selection.objective == pytest.approx(0.2 + 0.3 - 0.1)
    assert selection.gap == 0.0 and selection.bound == selection.objective


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(NonFiniteError, match="task 'a'"):
        Candidate("x", frozenset("a"), {"a": math.nan})
    with pytest.raises(DataError, match="cost"):
        Candidate("x", frozenset("a"), {"a": 1.0}, {"cost": -1.0})
    with pytest.raises(UnknownTaskError, match="'z'"):
        GroupingProblem(TASKS, (Candidate("x", frozenset("z"), {"z": 1.0}),))
    with pytest.raises(ConfigError, match="not both"):
        Constraints(max_groups=2, n_groups=2)
    with pytest.raises(ConfigError, match="together and apart"):
        Constraints(together=(("a", "b"),), apart=(("b", "a"),))
    with pytest.raises(DataError, match="appears twice"):
        GroupingProblem(TASKS, (CANDIDATES[0], CANDIDATES[0]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_groups": True}, r"max_groups must be an integer ≥ 1, got True"),
        ({"n_groups": 2.0}, r"n_groups must be an integer ≥ 1, got 2.0"),
        ({"max_groups": 0}, r"max_groups must be an integer ≥ 1, got 0"),
        ({"min_size": np.int64(0)}, r"min_size must be an integer ≥ 1, got 0"),
        ({"min_size": 3, "max_size": 2}, r"max_size must be an integer ≥ 3, got 2"),
        ({"budgets": {"cost": "2"}}, r"budget 'cost' must be a finite number ≥ 0, got '2'"),
        ({"budgets": {"cost": -1.0}}, r"budget 'cost' must be a finite number ≥ 0, got -1.0"),
        ({"budgets": 2.0}, r"budgets must map a resource name to its budget"),
        ({"cover": 1}, r"cover must be True or False, got 1"),
        ({"uncovered_value": math.inf}, r"uncovered_value must be a finite number, got inf"),
    ],
)
def test_constraint_arguments_are_checked_by_name(options, message):
    with pytest.raises(ConfigError, match=message):
        Constraints(**options)


def test_numpy_counts_are_accepted_and_solve_as_python_integers():
    numpy_built = Constraints(max_groups=np.int64(2), min_size=np.int32(1), partition=np.bool_(False))
    assert numpy_built == Constraints(max_groups=2) and type(numpy_built.max_groups) is int
    selection = GroupingProblem(TASKS, CANDIDATES, constraints=numpy_built).solve()
    assert set(selection.selected) == {"ab", "bc"}  # as with max_groups=2 (test above)


def test_evaluating_a_choice_that_leaves_a_task_unserved():
    problem = GroupingProblem(TASKS, CANDIDATES)
    with pytest.raises(InfeasibleError, match=r"serve no task 'c'; with cover=True") as info:
        problem.evaluate(["ab"])
    assert info.value.constraint == "cover"
    relaxed = problem.with_constraints(cover=False, uncovered_value=-0.5).evaluate(["ab"])
    assert relaxed.serving["c"] is None and relaxed.values["c"] == -0.5
    assert relaxed.objective == pytest.approx(0.2 + 0.1 - 0.5)  # values of a, b in "ab", plus c's uncovered value
