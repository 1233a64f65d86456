"""PTG's compact program equals enumeration + the candidate MILP and brute force over partitions."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskrel.errors import ConfigError, InfeasibleError, ShapeError
from taskrel.select import Constraints, PairwiseProblem

from .select_reference import member_value, set_partitions


def _brute(S, n, rule, sense, con):
    best = None
    better = max if sense == "max" else min
    for partition in set_partitions(list(range(n))):
        if con.max_groups is not None and len(partition) > con.max_groups:
            continue
        if con.n_groups is not None and len(partition) != con.n_groups:
            continue
        if any(not (con.min_size <= len(g) <= (con.max_size or n)) for g in partition):
            continue
        if any(any(a in g and b in g for g in partition) for a, b in con.apart):
            continue
        if any(not any(a in g and b in g for g in partition) for a, b in con.together):
            continue
        total = sum(member_value(S, g, k, rule) for g in partition for k in g)
        best = total if best is None else better(best, total)
    return best


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 6),
    seed=st.integers(0, 10_000),
    rule=st.sampled_from(["ptg", "tag", "hoa"]),
    sense=st.sampled_from(["max", "min"]),
    count=st.sampled_from([("max_groups", 2), ("max_groups", 3), ("n_groups", 2), (None, None)]),
    min_size=st.integers(1, 2),
    linked=st.booleans(),
)
def test_compact_equals_enumeration_and_brute_force(n, seed, rule, sense, count, min_size, linked):
    rng = np.random.default_rng(seed)
    S = np.round(rng.normal(size=(n, n)), 2)
    tasks = tuple(f"t{i}" for i in range(n))
    options = {"partition": True, "min_size": min_size}
    if count[0]:
        options[count[0]] = count[1]
    if linked:
        options.update(together=((0, 1),), apart=((0, n - 1),) if n > 2 else ())
    con_idx = Constraints(**options)
    named = {
        k: tuple((tasks[a], tasks[b]) for a, b in v) if k in ("together", "apart") else v for k, v in options.items()
    }
    problem = PairwiseProblem(tasks, S, rule, sense, Constraints(**named))
    expected = _brute(S.tolist(), n, rule, sense, con_idx)
    if expected is None:
        with pytest.raises(InfeasibleError, match=r"^infeasible: .*(cannot|constraint)"):
            problem.solve()
        return
    compact = problem.solve()
    enumerated = problem.to_grouping_problem().solve()
    assert compact.objective == pytest.approx(expected, abs=1e-7)
    assert enumerated.objective == pytest.approx(expected, abs=1e-7)
    assert sorted(t for g in compact.groups.values() for t in g) == sorted(tasks)


def test_uncovered_tasks_keep_their_single_task_value():
    S = np.array([[0.0, 1.0, -2.0], [1.0, 0.0, -2.0], [-2.0, -2.0, 0.0]])
    con = Constraints(partition=True, max_groups=1, cover=False, uncovered_value=0.0)
    selection = PairwiseProblem(("a", "b", "c"), S, "tag", "max", con).solve()
    assert selection.selected == ("a|b",)
    assert selection.serving["c"] is None
    assert selection.objective == pytest.approx(2.0)


def test_compact_rejects_what_it_cannot_model():
    S = np.zeros((3, 3))
    with pytest.raises(ConfigError, match="partition"):
        PairwiseProblem(("a", "b", "c"), S, "ptg", "max", Constraints(max_groups=2))
    with pytest.raises(ConfigError, match="budgets"):
        PairwiseProblem(("a", "b", "c"), S, "ptg", "max", Constraints(partition=True, budgets={"cost": 1.0}))
    with pytest.raises(ShapeError, match="3×3"):
        PairwiseProblem(("a", "b", "c"), np.zeros((3, 2)), constraints=Constraints(partition=True))
    with pytest.raises(InfeasibleError) as info:
        PairwiseProblem(("a", "b", "c"), S, constraints=Constraints(partition=True, max_groups=1, max_size=2)).solve()
    assert info.value.constraint == "max_groups"
