"""The exact MILP over explicit candidates (PTG's program with resource constraints), on HiGHS.

Variables: ``x[c] ∈ {0,1}`` chooses candidate c. With overlapping candidates, ``a[t,c] ∈ [0,1]``
says task t is served by c (``a[t,c] ≤ x[c]``, ``Σ_c a[t,c] = 1``, or ``≤ 1`` when ``cover=False``);
maximising ``Σ a[t,c]·value[t,c]`` serves each task by its best chosen candidate, and for a fixed
choice the serving problem is integral. With ``partition=True`` the rows are ``Σ_{c∋t} x[c] = 1``
and no serving variables are needed. Count, budgets, sizes, must-link (``a[i,c] = a[j,c]``) and
cannot-link rows are added as named constraint families; when HiGHS reports infeasibility the
families are re-added one at a time to name the first one that breaks feasibility.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from taskrel.errors import DataError, InfeasibleError, SolverError
from taskrel.select.candidates import Selection
from taskrel.select.highs import LinearModel, relative_gap

if TYPE_CHECKING:
    from taskrel.select.program import GroupingProblem


@dataclass
class _Built:
    model: LinearModel
    x: list[int]
    serve: dict[tuple[str, int], int]
    constant: float


def families(problem: GroupingProblem) -> list[str]:
    """The constraint families a problem uses, in the order the infeasibility diagnosis adds them."""
    con = problem.constraints
    out = ["cover"] if con.cover else []
    if con.min_size > 1 or con.max_size is not None:
        out.append("size")
    if con.apart:
        out.append("apart")
    if con.together:
        out.append("together")
    if con.partition:
        out.append("partition")
    if con.max_groups is not None:
        out.append("max_groups")
    if con.n_groups is not None:
        out.append("n_groups")
    out += [f"budget[{r}]" for r in con.budgets]
    return out


def describe(problem: GroupingProblem, family: str) -> str:
    con = problem.constraints
    if family == "cover":
        return "serving every task"
    if family == "size":
        return f"group sizes in [{con.min_size}, {con.max_size if con.max_size is not None else '∞'}]"
    if family in ("apart", "together"):
        pairs = ", ".join(f"{a}+{b}" for a, b in getattr(con, family))
        return f"{family} pairs ({pairs})"
    if family == "partition":
        return "partition (each task in exactly one group)"
    if family in ("max_groups", "n_groups"):
        return f"{family}={getattr(con, family)}"
    resource = family[len("budget[") : -1]
    return f"budget {resource} ≤ {con.budgets[resource]:g}"


def build(problem: GroupingProblem, active: set[str], with_objective: bool = True) -> _Built:
    """The MILP of `problem` restricted to the constraint families in `active`."""
    con = problem.constraints
    sign = -1.0 if problem.sense == "max" else 1.0
    cover = "cover" in active
    partition = "partition" in active
    # With cover=False an unserved task scores uncovered_value: serve it only if that helps.
    offset = 0.0 if con.cover else con.uncovered_value
    constant = 0.0 if con.cover else offset * len(problem.tasks)
    together = con.together if "together" in active else ()
    apart = con.apart if "apart" in active else ()
    model = LinearModel()
    x = []
    for c in problem.candidates:
        allowed = "size" not in active or con.size_allowed(len(c.tasks))
        allowed &= not any(a in c.tasks and b in c.tasks for a, b in apart)
        if partition:
            allowed &= not any((a in c.tasks) != (b in c.tasks) for a, b in together)
        weight = sum(v - offset for v in c.values.values()) if partition and with_objective else 0.0
        x.append(model.binary(sign * weight, fixed_zero=not allowed))
    serve: dict[tuple[str, int], int] = {}
    partner: dict[str, set[str]] = {}
    for a, b in together:  # must-linked tasks are always served, by the same candidate
        partner.setdefault(a, set()).add(b)
        partner.setdefault(b, set()).add(a)
    if partition:
        for task in problem.tasks:
            row = {x[ci]: 1.0 for ci, c in enumerate(problem.candidates) if task in c.tasks}
            model.row(row, 1.0 if cover or task in partner else -np.inf, 1.0)
    else:
        for ci, c in enumerate(problem.candidates):
            for task in c.tasks:
                usable = partner.get(task, set()) <= c.tasks
                value = sign * (c.values[task] - offset) if with_objective else 0.0
                serve[task, ci] = model.var(0.0, 1.0 if usable else 0.0, cost=value)
                model.row({serve[task, ci]: 1.0, x[ci]: -1.0}, upper=0.0)
        for task in problem.tasks:
            row = {serve[task, ci]: 1.0 for ci, c in enumerate(problem.candidates) if task in c.tasks}
            model.row(row, 1.0 if cover or task in partner else -np.inf, 1.0)
        for a, b in together:
            for ci, c in enumerate(problem.candidates):
                if a in c.tasks and b in c.tasks:
                    model.row({serve[a, ci]: 1.0, serve[b, ci]: -1.0}, 0.0, 0.0)
    if "max_groups" in active:
        model.row(dict.fromkeys(x, 1.0), upper=con.max_groups)
    if "n_groups" in active:
        model.row(dict.fromkeys(x, 1.0), con.n_groups, con.n_groups)
    for resource, budget in con.budgets.items():
        if f"budget[{resource}]" not in active:
            continue
        missing = [c.id for c in problem.candidates if resource not in c.costs]
        if missing:
            raise DataError(f"budget on {resource!r}, but candidate(s) {missing[:5]} have no {resource!r} cost")
        model.row({x[ci]: c.costs[resource] for ci, c in enumerate(problem.candidates)}, upper=budget)
    return _Built(model, x, serve, constant)


def solve_candidates(problem: GroupingProblem, time_limit: float | None = None, gap: float = 0.0) -> Selection:
    """Solve `problem` exactly with HiGHS; raise `InfeasibleError` naming the culprit constraint."""
    built = build(problem, set(families(problem)))
    solution = built.model.solve(time_limit, gap)
    if solution.status == "infeasible":
        raise diagnose(problem, time_limit)
    sign = -1.0 if problem.sense == "max" else 1.0
    chosen = [ci for ci, v in enumerate(built.x) if solution.x[v] > 0.5]
    serving: dict[str, str | None] = {}
    values: dict[str, float] = {}
    con = problem.constraints
    for task in problem.tasks:
        if con.partition:
            options = [ci for ci in chosen if task in problem.candidates[ci].tasks]
            pick = options[0] if options else None
        else:
            options = [(solution.x[built.serve[task, ci]], ci) for ci in chosen if task in problem.candidates[ci].tasks]
            share, pick = max(options, default=(0.0, None))
            pick = pick if share > 0.5 else None
        serving[task] = problem.candidates[pick].id if pick is not None else None
        values[task] = problem.candidates[pick].values[task] if pick is not None else con.uncovered_value
    objective = float(sum(values.values()))
    solver_objective = sign * solution.objective + built.constant
    if abs(objective - solver_objective) > 1e-6 * (1.0 + abs(objective)):
        raise SolverError(f"HiGHS objective {solver_objective} disagrees with its solution's value {objective}")
    if con.n_groups is None and not con.partition:
        used = {serving[t] for t in problem.tasks}
        chosen = [ci for ci in chosen if problem.candidates[ci].id in used]
    bound = sign * solution.bound + built.constant
    selected = tuple(problem.candidates[ci].id for ci in chosen)
    return Selection(
        selected=selected,
        groups={problem.candidates[ci].id: problem.candidates[ci].tasks for ci in chosen},
        serving=serving,
        values=values,
        objective=objective,
        status=solution.status,
        gap=relative_gap(objective, bound) if solution.status == "time_limit" else 0.0,
        bound=bound if solution.status == "time_limit" else objective,
        seconds=solution.seconds,
    )


def diagnose(problem: GroupingProblem, time_limit: float | None = None) -> InfeasibleError:
    """Add the constraint families one at a time; blame the first that makes the problem infeasible."""
    active: list[str] = []
    for family in families(problem):
        if family == "cover":
            orphans = [t for t in problem.tasks if not any(t in c.tasks for c in problem.candidates)]
            if orphans:
                return InfeasibleError(
                    f"infeasible: serving every task is impossible, task(s) {orphans} are in no candidate",
                    constraint="cover",
                )
        active.append(family)
        if build(problem, set(active), with_objective=False).model.solve(time_limit).status == "infeasible":
            earlier = ", ".join(describe(problem, f) for f in active[:-1]) or "no other constraint"
            return InfeasibleError(
                f"infeasible: {describe(problem, family)} cannot hold together with {earlier}",
                constraint=family,
            )
    return InfeasibleError("infeasible: the constraints cannot all hold together", constraint="all")
