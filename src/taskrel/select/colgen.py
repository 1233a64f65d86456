"""A column-generation (set-partitioning LP) upper bound for partitions under a pairwise rule.

The partition problem is ``max Σ_G v(G) λ_G`` over groups ``G`` with every task in exactly one chosen
group and at most (or exactly) ``K`` groups. For any multipliers ``π`` on the "each task once" rows,
Lagrangian relaxation gives the valid bound (Farley's bound)

    OPT ≤ Σ_i π_i + K · max(0, r*(π)),   r*(π) = max_G [v(G) − Σ_{i∈G} π_i]

(``K · r*`` without the ``max(0, ·)`` for exactly ``K`` groups). The multipliers come from the LP
over a growing set of columns (HiGHS through `scipy.optimize.linprog`), the columns from a seeded
local search for groups with a positive reduced value, size by size. The bound needs ``r*``
exactly, or an upper bound on it: for every allowed size ``s`` the pricing problem
``max Σ_{i<k} a_s P_ik x_i x_k + Σ_k (b_s d_k − π_k) x_k`` over ``|x| = s`` is solved as a small
MILP with HiGHS, whose dual bound (not its incumbent) enters the bound. The LP value itself is only
reported as the bound once exact pricing finds no positive column. Apart and together pairs are
ignored by the bound (a relaxation, so it stays valid) and respected by `restricted_master`.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import linprog

from taskrel.select.highs import LinearModel
from taskrel.select.partition_search import rule_weights


class ColumnGeneration:
    """Set-partitioning LP bound for ``matrix`` (maximisation form) under `rule`."""

    def __init__(
        self,
        matrix: np.ndarray,
        rule: str,
        groups_max: int,
        exact: bool = False,
        min_size: int = 1,
        max_size: int | None = None,
        seed: int = 0,
    ) -> None:
        S = np.asarray(matrix, dtype=np.float64)
        self.n = n = len(S)
        self.S, self.rule, self.K, self.exact = S, rule, min(groups_max, n), exact
        self.pair = S + S.T
        np.fill_diagonal(self.pair, 0.0)
        self.diag = np.diag(S).copy()
        upper = n if max_size is None else min(max_size, n)
        self.sizes = list(range(min_size, upper + 1))
        self.rng = np.random.default_rng(seed)
        self.columns: list[np.ndarray] = []
        self.values: list[float] = []
        self._seen: set[bytes] = set()

    def value(self, x: np.ndarray) -> float:
        s = int(x.sum())
        a, b = rule_weights(self.rule, s)
        return float(a * 0.5 * x @ self.pair @ x + b * self.diag @ x)

    def add(self, members) -> bool:
        x = np.zeros(self.n)
        x[list(members)] = 1.0
        key = np.packbits(x.astype(bool)).tobytes()
        if key in self._seen or int(x.sum()) not in self.sizes:
            return False
        self._seen.add(key)
        self.columns.append(x)
        self.values.append(self.value(x))
        return True

    def value_of(self, members) -> float:
        x = np.zeros(self.n)
        x[list(members)] = 1.0
        return self.value(x)

    def restricted_master(
        self, apart: list[tuple[int, int]], together: list[tuple[int, int]], time_limit: float | None
    ) -> list[list[int]] | None:
        """Best partition using only generated columns (a MILP over them).

        Columns holding both tasks of an apart pair, or one task of a together pair, are skipped.
        """
        keep = [
            j
            for j, x in enumerate(self.columns)
            if not any(x[a] > 0.5 and x[b] > 0.5 for a, b in apart)
            and not any((x[a] > 0.5) != (x[b] > 0.5) for a, b in together)
        ]
        if not keep:
            return None
        model = LinearModel()
        lam = [model.binary(-self.values[j]) for j in keep]
        for i in range(self.n):
            model.row({v: 1.0 for v, j in zip(lam, keep, strict=True) if self.columns[j][i] > 0.5}, 1.0, 1.0)
        model.row(dict.fromkeys(lam, 1.0), self.K if self.exact else 0.0, self.K)
        solution = model.solve(time_limit, 0.0, allow_no_solution=True)
        if solution.x is None:
            return None
        chosen = [keep[j] for j, v in enumerate(lam) if solution.x[v] > 0.5]
        return [[int(k) for k in np.flatnonzero(self.columns[j] > 0.5)] for j in chosen]

    def master(self) -> tuple[float, np.ndarray, float] | None:
        """LP value, multipliers π and the group-count multiplier ρ (None when the LP is infeasible)."""
        if not self.columns:
            return None
        A = np.array(self.columns).T
        c = -np.array(self.values)
        count = np.ones((1, A.shape[1]))
        if self.exact:
            res = linprog(c, A_eq=np.vstack([A, count]), b_eq=np.r_[np.ones(self.n), self.K], method="highs")
        else:
            res = linprog(c, A_ub=count, b_ub=[self.K], A_eq=A, b_eq=np.ones(self.n), method="highs")
        if res.status != 0:
            return None
        if self.exact:
            return -float(res.fun), -np.asarray(res.eqlin.marginals[: self.n]), -float(res.eqlin.marginals[-1])
        return -float(res.fun), -np.asarray(res.eqlin.marginals), -float(res.ineqlin.marginals[0])

    def _weights(self, s: int, pi: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = rule_weights(self.rule, s)
        return a, b * self.diag - pi

    def price_heuristic(self, pi: np.ndarray, starts: int = 8) -> list[tuple[float, list[int]]]:
        """Groups with a large reduced value, one local search (swap in/out) per size and start."""
        found = []
        n = self.n
        for s in self.sizes:
            a, lin = self._weights(s, pi)
            if s == n:
                found.append((a * 0.5 * self.pair.sum() + lin.sum(), list(range(n))))
                continue
            for start in range(starts):
                if start == 0:
                    order = np.argsort(-(lin + a * np.maximum(self.pair, 0).sum(axis=1) * s / n))
                    x = np.zeros(n)
                    x[order[:s]] = 1.0
                else:
                    x = np.zeros(n)
                    x[self.rng.choice(n, s, replace=False)] = 1.0
                while True:
                    inside = self.pair @ x
                    # swap out k (in G) and in l (not in G): Δ = a(inside_l − inside_k − P_kl) + lin_l − lin_k
                    gain = a * (inside[None, :] - inside[:, None] - self.pair) + lin[None, :] - lin[:, None]
                    gain = np.where((x[:, None] > 0.5) & (x[None, :] < 0.5), gain, -np.inf)
                    k, m = np.unravel_index(int(np.argmax(gain)), gain.shape)
                    if gain[k, m] <= 1e-12:
                        break
                    x[k], x[m] = 0.0, 1.0
                members = list(np.flatnonzero(x > 0.5))
                found.append((a * 0.5 * x @ self.pair @ x + lin @ x, members))
        return found

    def price_bound(self, pi: np.ndarray, s: int) -> float:
        """A cheap upper bound on the best reduced value at size s (each member's best half-pairs)."""
        a, lin = self._weights(s, pi)
        P = a * self.pair
        top = -np.sort(-P, axis=1)[:, : max(s - 1, 0)]  # the s−1 largest weighted pair entries per row
        per_task = lin + 0.5 * top.sum(axis=1)
        return float(np.sort(per_task)[::-1][:s].sum())

    def price_exact(
        self, pi: np.ndarray, s: int, time_limit: float | None, floor: float = -np.inf
    ) -> tuple[float, list[int] | None]:
        """(upper bound on the best reduced value at size s, the best group HiGHS found or None).

        With a finite `floor`, only groups with reduced value ≥ `floor` are searched; when HiGHS
        proves there is none, `floor` is returned as the (valid) bound.
        """
        a, lin = self._weights(s, pi)
        n = self.n
        model = LinearModel()
        objective: dict[int, float] = {}
        x = [model.binary(-lin[k]) for k in range(n)]  # minimise the negated reduced value
        objective.update({x[k]: -lin[k] for k in range(n)})
        model.row(dict.fromkeys(x, 1.0), s, s)
        for i in range(n):
            for k in range(i + 1, n):
                w = a * self.pair[i, k]
                if w == 0.0:
                    continue
                z = model.var(0.0, 1.0, cost=-w)
                objective[z] = -w
                if w > 0:
                    model.row({z: 1.0, x[i]: -1.0}, upper=0.0)
                    model.row({z: 1.0, x[k]: -1.0}, upper=0.0)
                else:
                    model.row({z: 1.0, x[i]: -1.0, x[k]: -1.0}, lower=-1.0)
        if np.isfinite(floor):
            model.row(objective, upper=-floor)
        solution = model.solve(time_limit, 0.0, allow_no_solution=True)
        if solution.status == "infeasible":
            return floor, None
        members = None if solution.x is None else [k for k in range(n) if solution.x[x[k]] > 0.5]
        return -solution.bound, members

    def run(
        self, initial: list[list[int]], time_limit: float | None, rounds: int = 200, enough: float = -np.inf
    ) -> dict:
        """Column generation from the `initial` groups; returns the best valid bound and the LP value.

        ``bound`` is None unless a round of exact pricing completed (every allowed size priced).
        Stops early once the bound is ≤ `enough` (e.g. the incumbent plus the accepted gap).
        """
        start = time.perf_counter()
        time_limit = np.inf if time_limit is None else time_limit
        for group in initial:
            self.add(group)
        if 1 in self.sizes:
            for k in range(self.n):
                self.add([k])
        best_bound, lp_value, exact_done = np.inf, None, False
        for _ in range(rounds):
            solved = self.master()
            if solved is None:
                return {"bound": None, "lp": None, "columns": len(self.columns), "exact_pricing": False}
            lp_value, pi, rho = solved
            tol = 1e-7 * (1.0 + abs(lp_value)) / self.K  # Farley − LP ≤ K·tol when pricing certifies
            added = sum(self.add(m) for r, m in self.price_heuristic(pi) if r > rho + tol)
            if added:
                if time.perf_counter() - start > time_limit:
                    break
                continue
            # no column found heuristically: certify (or not) with exact pricing, size by size
            r_star, new = -np.inf, 0
            floor = rho + tol
            for s in self.sizes:
                cheap = self.price_bound(pi, s)
                if cheap <= floor:
                    r_star = max(r_star, cheap)
                    continue
                left = time_limit - (time.perf_counter() - start)
                share = left / max(len(self.sizes), 1)
                r_s, members = self.price_exact(pi, s, max(share, 0.5) if np.isfinite(share) else None, floor)
                r_star = max(r_star, r_s)
                if members is not None and self.add(members):
                    new += 1
            farley = pi.sum() + self.K * (r_star if self.exact else max(0.0, r_star))
            best_bound = min(best_bound, farley)
            if r_star <= rho + tol:
                exact_done = True
                break
            if best_bound <= enough:
                break
            if new == 0 or time.perf_counter() - start > time_limit:
                break
        return {
            "bound": None if not np.isfinite(best_bound) else float(best_bound),
            "lp": lp_value,
            "columns": len(self.columns),
            "exact_pricing": exact_done,
            "seconds": time.perf_counter() - start,
        }
