"""PTG's compact program on a pairwise matrix, for task sets too large to enumerate (n ≳ 20).

The tasks are partitioned into at most K groups (slots). A group's score is the sum over members of
the pairwise rule's per-member value (`taskrel.select.scores`), e.g. PTG's
``(1/|G|) Σ_{i,k∈G} S[i, k]``. The non-convex terms are linearised exactly:

- ``X[k, j] ∈ {0,1}``: task k in slot j; ``σ[j, s] ∈ {0,1}``: slot j has size s (one per slot,
  ``Σ_s s·σ[j, s] = Σ_k X[k, j]``), so the size-dependent weight 1/w(s) multiplies a binary;
- ``z[i, k, j] = X[i, j]·X[k, j]`` by McCormick rows (only the side the objective pushes against
  is needed: ≤ both factors for a positive pair weight, ≥ their sum − 1 for a negative one);
- the slot's pair total ``P[j]`` and diagonal total ``D[j]`` are split into size buckets
  ``R[j, s] ∈ [L_s, U_s]·σ[j, s]`` with bounds from the sorted columns of S, and the objective
  is ``Σ_{j,s} w_off(s)·R_off[j, s] + w_diag(s)·R_diag[j, s]``.

Two families of valid rows tighten the relaxation: each member contributes at most its best
achievable value (a per-slot "ideal" row), and slots are ordered by their smallest task index
(symmetry breaking). Minimising (losses) is maximising the negated matrix.

HiGHS alone on this MILP is slow beyond a few dozen tasks (weak relaxation, no way to hand it an
incumbent through SciPy), so `PairwiseProblem.solve` runs, in order and stopping as soon as the
proven gap is within the requested one:

1. a seeded local search (`taskrel.select.partition_search`): the incumbent, in about a second;
2. an eigenvalue bound (`taskrel.select.bounds`): valid for every rule, tight when the matrix is
   dominated by a group structure (School-sized planted matrices: ≈ 0.3 % at n = 139);
3. for n ≤ `COLGEN_MAX_TASKS`, column generation (`taskrel.select.colgen`): the set-partitioning
   LP over groups with exact pricing (Farley's bound), plus the best partition over its columns;
4. HiGHS on the compact MILP with the time that is left (skipped, when a partition is already
   known, for models above `MAX_COMPACT_PRODUCTS` linearised products).

The answer is the best partition found by any part and the bound the smallest valid one, so the
reported gap is always proven.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from taskrel.errors import ConfigError, InfeasibleError, SolverError
from taskrel.groups import group_name
from taskrel.select.bounds import EigenBound
from taskrel.select.candidates import Constraints, Selection, Sense
from taskrel.select.colgen import ColumnGeneration
from taskrel.select.highs import LinearModel, relative_gap
from taskrel.select.partition_search import PartitionSearch, SearchResult, rule_weights
from taskrel.select.program import GroupingProblem
from taskrel.select.scores import Rule, check_matrix, check_rule, member_values, pairwise_candidates

#: Largest task count for which the set-partitioning (column generation) bound is computed: its
#: exact pricing solves one small MILP per allowed group size.
COLGEN_MAX_TASKS = 60
#: Above this many linearised products (slots × task pairs) HiGHS is not run when the local search
#: has a partition: the model alone would take minutes to build and HiGHS finds nothing better.
MAX_COMPACT_PRODUCTS = 200_000


@dataclass(frozen=True)
class PairwiseProblem:
    """Partition `tasks` into groups scored from ``matrix[source, target]`` by a pairwise `rule`.

    ``constraints`` must have ``partition=True`` (the compact program assigns every task to one
    group; for overlapping groups enumerate candidates with `to_grouping_problem`). Supported:
    ``max_groups`` / ``n_groups`` (default: at most n groups), ``min_size`` / ``max_size``,
    ``together``, ``apart``, ``cover`` / ``uncovered_value``. Budgets need explicit candidates.
    """

    tasks: tuple[str, ...]
    matrix: np.ndarray
    rule: Rule = "ptg"
    sense: Sense = "max"
    constraints: Constraints = field(default_factory=lambda: Constraints(partition=True))

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "matrix", check_matrix(self.matrix, self.tasks))
        check_rule(self.rule)
        if self.sense not in ("max", "min"):
            raise ConfigError(f"sense must be 'max' or 'min', got {self.sense!r}")
        con = self.constraints
        if not con.partition:
            raise ConfigError(
                "the compact pairwise program partitions the tasks: pass Constraints(partition=True), or "
                "enumerate candidates with PairwiseProblem.to_grouping_problem() for overlapping groups"
            )
        if con.budgets:
            raise ConfigError("budgets need explicit candidates: use to_grouping_problem() and GroupingProblem")
        con.check_tasks(self.tasks)

    @property
    def sign(self) -> float:
        """+1 for maximisation, −1 for minimisation: the search and the bounds work in maximisation form."""
        return 1.0 if self.sense == "max" else -1.0

    @property
    def slots(self) -> int:
        con = self.constraints
        return con.n_groups or con.max_groups or len(self.tasks)

    def to_grouping_problem(self) -> GroupingProblem:
        """The same problem over every enumerated group (n ≤ 20), solved by the explicit MILP."""
        candidates = pairwise_candidates(self.matrix, self.tasks, self.rule)
        return GroupingProblem(self.tasks, tuple(candidates), self.sense, self.constraints)

    def group_values(self, members: Sequence[int]) -> np.ndarray:
        return member_values(self.matrix, list(members), self.rule)

    def solve(self, time_limit: float | None = None, gap: float = 0.0, seed: int = 0) -> Selection:
        """Best partition found, proven optimal up to `gap` or stopped at `time_limit` seconds.

        Runs the local search (seeded by `seed`), the eigenvalue bound, column generation (n ≤
        `COLGEN_MAX_TASKS`, up to half the time left) and HiGHS on the compact MILP (the rest),
        stopping once the proven gap is within `gap` (see the module docstring). The answer is the
        best partition found; ``bound`` is the smallest valid bound, so ``gap`` is always proven,
        never estimated. ``status`` is ``"optimal"`` when the proven gap is within `gap` (within
        1e-6, relative or absolute, at ``gap=0``), else ``"time_limit"``. Without a
        `time_limit` and with ``gap=0`` large instances can run for a very long time.

        Raises `InfeasibleError` naming the first constraint family (sizes, apart, together, group
        count) whose addition makes the problem infeasible.
        """
        start = time.perf_counter()
        n = len(self.tasks)
        if self.constraints.n_groups is not None and self.constraints.n_groups > n:
            raise InfeasibleError(
                f"infeasible: n_groups={self.constraints.n_groups} groups cannot be formed from {n} tasks",
                constraint="n_groups",
            )
        if time_limit is not None and not time_limit > 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {time_limit}")
        if not 0.0 <= gap < 1.0:
            raise ConfigError(f"gap must be in [0, 1), got {gap}")
        sign = self.sign
        incumbent = self._search(seed, None if time_limit is None else 0.25 * time_limit)
        best_groups, best_value = (incumbent.groups, incumbent.value) if incumbent else (None, -np.inf)
        bound = self._eigen_bound()
        proven = best_groups is not None and bound is not None and _within(best_value, bound, gap)
        status = "optimal" if proven else "time_limit"
        if not proven and self._colgen_applies():
            left = None if time_limit is None else time_limit - (time.perf_counter() - start)
            enough = best_value + gap * abs(best_value) if best_groups is not None else -np.inf
            found = self._column_generation(best_groups, seed, None if left is None else 0.5 * left, enough)
            if found is not None:
                cg_bound, cg_groups, cg_value = found
                if cg_bound is not None:
                    bound = cg_bound if bound is None else min(bound, cg_bound)
                if cg_groups is not None and cg_value > best_value:
                    best_groups, best_value = cg_groups, cg_value
                proven = best_groups is not None and bound is not None and _within(best_value, bound, gap)
                status = "optimal" if proven else "time_limit"
        left = None if time_limit is None else time_limit - (time.perf_counter() - start)
        too_big = self.slots * len(self.tasks) ** 2 / 2 > MAX_COMPACT_PRODUCTS
        if not proven and (left is None or left > 0.05) and not (too_big and best_groups is not None):
            families = self._families()
            model, X, constant = self._build(set(families))
            solution = model.solve(left, gap, allow_no_solution=True)
            if solution.status == "infeasible":
                if best_groups is not None:
                    raise SolverError("HiGHS reports the compact program infeasible but a feasible partition exists")
                raise self._diagnose(families, time_limit)
            highs_bound = constant - solution.bound
            bound = highs_bound if bound is None else min(bound, highs_bound)
            if solution.x is not None:
                groups = [
                    members
                    for column in zip(*X, strict=True)
                    if (members := [k for k, v in enumerate(column) if solution.x[v] > 0.5])
                ]
                value = constant - solution.objective
                if best_groups is None or value > best_value:
                    best_groups, best_value = groups, value
            status = "optimal" if solution.status == "optimal" else status
        if best_groups is None:
            raise SolverError(
                f"no feasible partition found within the time limit of {time_limit} s (HiGHS and the local "
                "search); raise it"
            )
        if bound is None or not np.isfinite(bound):
            bound = np.inf
        if status != "optimal" and _within(best_value, bound, gap):
            status = "optimal"
        return self._selection(best_groups, sign * best_value, sign * bound, status, time.perf_counter() - start)

    def _search(self, seed: int, time_limit: float | None) -> SearchResult | None:
        """The local search's best partition (maximisation form), or None where it does not apply."""
        con = self.constraints
        if not con.cover:
            return None
        search = PartitionSearch(
            *self._partition_space(),
            apart=self._index_pairs(con.apart),
            together=self._index_pairs(con.together),
        )
        return search.run(seed=seed, starts=8, rounds=150, time_limit=time_limit)

    def _partition_space(self) -> tuple:
        """(matrix in maximisation form, rule, slots, exact group count, min size, max size): the
        positional arguments `PartitionSearch` and `ColumnGeneration` share."""
        con = self.constraints
        return self.sign * self.matrix, self.rule, self.slots, con.n_groups is not None, con.min_size, con.max_size

    def _index_pairs(self, pairs) -> list[tuple[int, int]]:
        """Task-name pairs (`apart`, `together`) as index pairs."""
        index = {t: i for i, t in enumerate(self.tasks)}
        return [(index[a], index[b]) for a, b in pairs]

    def _colgen_applies(self) -> bool:
        con = self.constraints
        return con.cover and len(self.tasks) <= COLGEN_MAX_TASKS

    def _column_generation(
        self, incumbent: list[list[int]] | None, seed: int, time_limit: float | None, enough: float = -np.inf
    ) -> tuple[float | None, list[list[int]] | None, float] | None:
        """(set-partitioning bound, best partition over the generated columns, its value) or None."""
        cg = ColumnGeneration(*self._partition_space(), seed=seed)
        start = time.perf_counter()
        info = cg.run(incumbent or [], time_limit, enough=enough)
        if info["lp"] is None:
            return None
        con = self.constraints
        apart, together = self._index_pairs(con.apart), self._index_pairs(con.together)
        left = None if time_limit is None else max(time_limit - (time.perf_counter() - start), 0.5)
        groups = cg.restricted_master(apart, together, None if left is None else min(left, 10.0))
        value = sum(cg.value_of(g) for g in groups) if groups is not None else -np.inf
        return info["bound"], groups, value

    def _eigen_bound(self) -> float | None:
        """The eigenvalue bound of `taskrel.select.bounds` (maximisation form), where it applies."""
        con = self.constraints
        if not con.cover:
            return None
        n = len(self.tasks)
        parts = [con.n_groups] if con.n_groups is not None else list(range(1, min(self.slots, n) + 1))
        return EigenBound(self.sign * self.matrix, self.rule).bound(parts, con.min_size, con.max_size)

    def _families(self) -> list[str]:
        con = self.constraints
        named = (
            ("size", con.min_size > 1 or con.max_size is not None),
            ("apart", bool(con.apart)),
            ("together", bool(con.together)),
            ("n_groups", con.n_groups is not None),
            ("max_groups", con.max_groups is not None),
        )
        return [family for family, used in named if used]

    def _diagnose(self, families: list[str], time_limit: float | None) -> InfeasibleError:
        for last in range(1, len(families) + 1):
            model, _, _ = self._build(set(families[:last]), with_objective=False)
            if model.solve(time_limit).status == "infeasible":
                earlier = ", ".join(families[: last - 1]) or "no other constraint"
                return InfeasibleError(
                    f"infeasible: constraint {families[last - 1]} cannot hold together with {earlier} "
                    f"when partitioning the {len(self.tasks)} tasks",
                    constraint=families[last - 1],
                )
        return InfeasibleError("infeasible: the constraints cannot all hold together", constraint="all")

    def _build(self, active: set[str], with_objective: bool = True) -> tuple[LinearModel, list[list[int]], float]:
        """The compact MILP restricted to the constraint families in `active` (minimisation form)."""
        con = self.constraints
        n = len(self.tasks)
        slots = min(con.n_groups if "n_groups" in active else con.max_groups if "max_groups" in active else n, n)
        sign = self.sign
        S = sign * self.matrix if with_objective else np.zeros_like(self.matrix)
        offset = 0.0 if con.cover or not with_objective else sign * con.uncovered_value
        sizes = [s for s in range(1, n + 1) if "size" not in active or con.size_allowed(s)]
        weights = {s: rule_weights(self.rule, s) for s in sizes}
        pair = S + S.T
        diag = np.diag(S)
        off_bounds, member_best = self._bounds(S, sizes, weights)
        model = LinearModel()
        X = [[model.binary(offset, fixed_zero=j > k) for j in range(slots)] for k in range(n)]
        empty_ok = "n_groups" not in active
        sigma = [{s: model.binary(fixed_zero=s == 0 and not empty_ok) for s in [0, *sizes]} for _ in range(slots)]
        linked = {t for pair in con.together for t in pair} if "together" in active else set()
        for k, task in enumerate(self.tasks):  # one slot each (with cover=False maybe none: uncovered_value)
            model.row({X[k][j]: 1.0 for j in range(slots)}, 1.0 if con.cover or task in linked else 0.0, 1.0)
        pairs = [(i, k) for i in range(n) for k in range(i + 1, n) if pair[i, k] != 0.0]
        for j in range(slots):
            model.row({v: 1.0 for v in sigma[j].values()}, 1.0, 1.0)
            size_row = {X[k][j]: 1.0 for k in range(n)}
            size_row.update({v: -float(s) for s, v in sigma[j].items()})
            model.row(size_row, 0.0, 0.0)
            off_total = {}
            for i, k in pairs:
                z = model.var(0.0, 1.0)
                off_total[z] = pair[i, k]
                if pair[i, k] > 0:
                    model.row({z: 1.0, X[i][j]: -1.0}, upper=0.0)
                    model.row({z: 1.0, X[k][j]: -1.0}, upper=0.0)
                else:
                    model.row({z: 1.0, X[i][j]: -1.0, X[k][j]: -1.0}, lower=-1.0)
            diag_total = {X[k][j]: diag[k] for k in range(n)}
            score_row = {}
            for total, which in ((off_total, 0), (diag_total, 1)):
                split = dict(total)
                for s in sizes:
                    lo, hi = off_bounds[s] if which == 0 else _diag_bounds(diag, s)
                    r = model.var(-np.inf, np.inf, cost=-weights[s][which])  # HiGHS minimises
                    split[r] = -1.0
                    model.row({r: 1.0, sigma[j][s]: -hi}, upper=0.0)
                    model.row({r: 1.0, sigma[j][s]: -lo}, lower=0.0)
                    score_row[r] = weights[s][which]
                model.row(split, 0.0, 0.0)
            score_row.update({X[k][j]: -member_best[k] for k in range(n)})
            model.row(score_row, upper=0.0)  # a slot scores at most its members' best values
        for k in range(1, n):  # slot j is used only if slot j−1 holds a task of smaller index
            for j in range(1, slots):
                row = {X[k][j]: 1.0}
                row.update({X[i][j - 1]: -1.0 for i in range(k)})
                model.row(row, upper=0.0)
        index = {t: i for i, t in enumerate(self.tasks)}
        for a, b in con.together if "together" in active else ():
            for j in range(slots):
                model.row({X[index[a]][j]: 1.0, X[index[b]][j]: -1.0}, 0.0, 0.0)
        for a, b in con.apart if "apart" in active else ():
            for j in range(slots):
                model.row({X[index[a]][j]: 1.0, X[index[b]][j]: 1.0}, upper=1.0)
        return model, X, offset * n

    def _bounds(self, S: np.ndarray, sizes: list[int], weights: dict) -> tuple[dict, np.ndarray]:
        """Bounds on a slot's off-diagonal total per size, and each task's best member value."""
        n = len(S)
        incoming_hi, incoming_lo = [], []
        for k in range(n):
            column = np.delete(S[:, k], k)
            incoming_hi.append(np.concatenate([[0.0], np.cumsum(np.sort(column)[::-1])]))
            incoming_lo.append(np.concatenate([[0.0], np.cumsum(np.sort(column))]))
        off_bounds = {}
        for s in sizes:
            hi = np.sort([incoming_hi[k][s - 1] for k in range(n)])[::-1][:s].sum()
            lo = np.sort([incoming_lo[k][s - 1] for k in range(n)])[:s].sum()
            off_bounds[s] = (lo, hi)
        member_best = np.array(
            [max(weights[s][0] * incoming_hi[k][s - 1] + weights[s][1] * S[k, k] for s in sizes) for k in range(n)]
        )
        return off_bounds, member_best

    def _selection(
        self, groups: list[list[int]], objective: float, bound: float, status: str, seconds: float
    ) -> Selection:
        con = self.constraints
        serving: dict[str, str | None] = dict.fromkeys(self.tasks)
        values = dict.fromkeys(self.tasks, con.uncovered_value)
        named = {}
        for members in groups:
            name = group_name([self.tasks[k] for k in members], self.tasks)
            named[name] = frozenset(self.tasks[k] for k in members)
            for k, value in zip(members, self.group_values(members), strict=True):
                serving[self.tasks[k]] = name
                values[self.tasks[k]] = float(value)
        total = float(sum(values.values()))
        if abs(total - objective) > 1e-6 * (1.0 + abs(total)):
            raise SolverError(f"objective {objective} disagrees with its partition's score {total}")
        return Selection(
            selected=tuple(named),
            groups=named,
            serving=serving,
            values=values,
            objective=total,
            status=status,
            gap=relative_gap(total, bound) if np.isfinite(bound) else np.inf,
            bound=float(bound),
            seconds=seconds,
        )


def _within(value: float, bound: float, gap: float) -> bool:
    """Whether `value` is proven within relative `gap` of the upper `bound` (maximisation form).

    At ``gap=0`` a relative difference up to 1e-6, or an absolute one up to 1e-6 (HiGHS's default
    absolute MIP gap), counts as optimal; the reported gap is always the computed one.
    """
    return bool(np.isfinite(bound) and (relative_gap(value, bound) <= max(gap, 1e-6) or bound - value <= 1e-6))


def _diag_bounds(diag: np.ndarray, size: int) -> tuple[float, float]:
    ordered = np.sort(diag)
    return float(ordered[:size].sum()), float(ordered[::-1][:size].sum())
