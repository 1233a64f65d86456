"""A small sparse MILP builder solved by HiGHS (through `scipy.optimize.milp`).

Both selection formulations (explicit candidates and the compact pairwise program) are written
against `LinearModel`: add variables and rows, then `solve`. All arithmetic is float64; the model
is minimised (callers negate a maximisation). Solver failures are never swallowed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from taskrel.errors import ConfigError, SolverError

Status = Literal["optimal", "time_limit", "infeasible"]


@dataclass(frozen=True)
class Solution:
    """What HiGHS returned: ``x`` is None when no feasible point was found."""

    status: Status
    x: np.ndarray | None
    objective: float
    bound: float
    seconds: float


class LinearModel:
    """Minimise ``cost @ x`` over rows ``lower ≤ A x ≤ upper`` and variable bounds."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[int] = []
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.data: list[float] = []
        self.row_lower: list[float] = []
        self.row_upper: list[float] = []

    @property
    def n_vars(self) -> int:
        return len(self.cost)

    @property
    def n_rows(self) -> int:
        return len(self.row_lower)

    def var(self, lower: float = 0.0, upper: float = 1.0, integer: bool = False, cost: float = 0.0) -> int:
        """Add one variable and return its index."""
        self.cost.append(float(cost))
        self.lower.append(float(lower))
        self.upper.append(float(upper))
        self.integer.append(int(integer))
        return len(self.cost) - 1

    def binary(self, cost: float = 0.0, fixed_zero: bool = False) -> int:
        return self.var(0.0, 0.0 if fixed_zero else 1.0, True, cost)

    def row(self, coefs: Mapping[int, float], lower: float = -np.inf, upper: float = np.inf) -> int:
        """Add ``lower ≤ Σ coefs[v] x[v] ≤ upper`` and return the row index."""
        index = self.n_rows
        for col, value in coefs.items():
            if value != 0.0:
                self.rows.append(index)
                self.cols.append(col)
                self.data.append(float(value))
        self.row_lower.append(float(lower))
        self.row_upper.append(float(upper))
        return index

    def solve(self, time_limit: float | None = None, gap: float = 0.0, allow_no_solution: bool = False) -> Solution:
        """Solve with HiGHS; ``gap`` is the relative MIP gap at which it may stop.

        When the time limit passes before any feasible point is found, raise `SolverError`, or
        with ``allow_no_solution`` return status ``"time_limit"`` with ``x=None`` and HiGHS's dual
        bound (``-inf`` when it has none).
        """
        if time_limit is not None and not time_limit > 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {time_limit}")
        if not 0.0 <= gap < 1.0:
            raise ConfigError(f"gap must be in [0, 1), got {gap}")
        options: dict = {"disp": False, "mip_rel_gap": gap}
        if time_limit is not None:
            options["time_limit"] = float(time_limit)
        constraints = ()
        if self.n_rows:
            matrix = coo_matrix((self.data, (self.rows, self.cols)), shape=(self.n_rows, self.n_vars)).tocsr()
            constraints = (LinearConstraint(matrix, self.row_lower, self.row_upper),)
        start = time.perf_counter()
        result = milp(
            np.asarray(self.cost, dtype=np.float64),
            integrality=np.asarray(self.integer),
            bounds=Bounds(self.lower, self.upper),
            constraints=constraints,
            options=options,
        )
        seconds = time.perf_counter() - start
        if result.status == 2:
            return Solution("infeasible", None, np.inf, np.inf, seconds)
        if result.status not in (0, 1):
            raise SolverError(f"HiGHS failed (status {result.status}): {result.message}")
        if result.x is None and allow_no_solution:
            bound = getattr(result, "mip_dual_bound", None)
            bound = float(bound) if bound is not None and np.isfinite(bound) else -np.inf
            return Solution("time_limit", None, np.inf, bound, seconds)
        if result.x is None:
            raise SolverError(f"HiGHS found no feasible selection within the time limit of {time_limit} s; raise it")
        bound = getattr(result, "mip_dual_bound", None)
        bound = float(result.fun) if bound is None or not np.isfinite(bound) else float(bound)
        status: Status = "optimal" if result.status == 0 else "time_limit"
        return Solution(status, np.asarray(result.x, dtype=np.float64), float(result.fun), bound, seconds)


def relative_gap(objective: float, bound: float) -> float:
    """Proven relative distance between a solution and the solver's bound on the optimum."""
    difference = abs(bound - objective)
    if difference <= 1e-9 * max(1.0, abs(objective)):
        return 0.0
    return difference / max(abs(objective), 1e-9)
