"""Valid upper bounds on the best partition score under a pairwise rule (eigenvalue bounds).

For a group ``G`` of size ``s`` with indicator ``x`` and unit vector ``y = x/√s``, every rule scores
the group's off-diagonal part as ``c(s) · yᵀ A y`` with ``A`` the symmetrised matrix
``(S + Sᵀ)/2`` (PTG: ``c = 1`` and the diagonal of ``S`` kept in ``A``; TAG and HOA: ``c = s/(s−1)``
for ``s ≥ 2`` with a zero diagonal; a TAG singleton scores 0, an HOA singleton its diagonal entry).
The unit vectors of disjoint groups are orthonormal, and ``yᵀ J y = s`` for the all-ones matrix
``J``, so for any real ``μ`` and any partition with group sizes ``s_1 … s_m``:

    score = Σ_j c_j y_jᵀ (A + μJ) y_j − μ Σ_j c_j s_j ≤ Σ_i c↓_i λ↓_i(A + μJ) − μ Σ_j c_j s_j,

by Fan's (von Neumann's) trace inequality for orthonormal columns and weights ``c↓ ≥ 0`` sorted
in decreasing order against the decreasing eigenvalues ``λ↓``. Every ``μ`` gives a valid bound for
that size multiset; the bound used is the maximum, over all size multisets the constraints allow, of
the smallest value found over a grid of ``μ`` refined by golden-section search (the function is
convex in ``μ``). For equal weights (PTG) the ``μ → +∞`` limit is the projected eigenvalue bound
``c·(ēᵀAē + Σ_{i<m−1} λ↓_i(PAP))`` with ``ē = 1/√n`` and ``P = I − ēēᵀ``, added as a candidate.
A small margin covers the eigenvalue solver's rounding. The bound needs every task covered.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def size_multisets(n: int, parts: int, min_size: int, max_size: int) -> Iterator[tuple[int, ...]]:
    """Non-increasing tuples of `parts` sizes in [min_size, max_size] summing to n."""
    if parts == 0:
        if n == 0:
            yield ()
        return
    for first in range(min(max_size, n - min_size * (parts - 1)), min_size - 1, -1):
        if first * parts < n:
            break
        for rest in size_multisets(n - first, parts - 1, min_size, min(first, max_size)):
            yield (first, *rest)


class EigenBound:
    """Upper bound on ``Σ_G score(G)`` over partitions of all tasks (matrix in maximisation form)."""

    def __init__(self, matrix: np.ndarray, rule: str) -> None:
        S = np.asarray(matrix, dtype=np.float64)
        self.n = len(S)
        self.rule = rule
        A = 0.5 * (S + S.T)
        if rule != "ptg":
            np.fill_diagonal(A, 0.0)
        self.A = A
        self.diag = np.sort(np.diag(S))[::-1]
        self.scale = float(np.abs(A).sum() / max(self.n, 1)) + float(np.linalg.norm(A, 2)) + 1e-12
        self._eig: dict[float, np.ndarray] = {}
        self._projected: np.ndarray | None = None

    def weights(self, sizes: tuple[int, ...]) -> tuple[np.ndarray, float, float]:
        """(weights c↓ of the non-singleton part, Σ c_j s_j, constant from singletons).

        TAG and HOA singletons carry no weight (their off-diagonal part is empty); the weighted
        groups then do not cover every task, which `equal_covering` checks.
        """
        if self.rule == "ptg":
            c = np.ones(len(sizes))
            return c, float(sum(sizes)), 0.0
        groups = [s for s in sizes if s >= 2]
        singletons = len(sizes) - len(groups)
        c = np.array(sorted((s / (s - 1) for s in groups), reverse=True))
        constant = float(self.diag[:singletons].sum()) if self.rule == "hoa" and singletons else 0.0
        return c, float(sum(s * s / (s - 1) for s in groups)), constant

    def eigenvalues(self, mu: float) -> np.ndarray:
        if mu not in self._eig:
            self._eig[mu] = np.linalg.eigvalsh(self.A + mu)[::-1]  # A + μJ
        return self._eig[mu]

    def value(self, c: np.ndarray, total: float, mu: float) -> float:
        lam = self.eigenvalues(mu)
        return float(c @ lam[: len(c)] - mu * total)

    def projected(self, c: np.ndarray) -> float:
        """The μ → +∞ limit for equal weights: c·(ēᵀAē + top m−1 eigenvalues of PAP)."""
        if self._projected is None:
            n = self.n
            e = np.full(n, 1.0 / math.sqrt(n))
            P = np.eye(n) - np.outer(e, e)
            lam = np.linalg.eigvalsh(P @ self.A @ P)[::-1]
            self._projected = np.concatenate([[float(e @ self.A @ e)], lam])
        return float(c[0] * self._projected[: len(c)].sum())

    def bound_for(self, c: np.ndarray, total: float, grid: list[float], refine: int = 40) -> float:
        """Smallest valid bound found for one weight vector (grid, then golden section)."""
        if len(c) == 0:
            return 0.0
        values = [self.value(c, total, mu) for mu in grid]
        best = min(values)
        if self._equal_covering(c, total):
            best = min(best, self.projected(c))
        i = int(np.argmin(values))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        fa, fb = self.value(c, total, a), self.value(c, total, b)
        for _ in range(refine):
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - _GOLDEN * (hi - lo)
                fa = self.value(c, total, a)
            else:
                lo, a, fa = a, b, fb
                b = lo + _GOLDEN * (hi - lo)
                fb = self.value(c, total, b)
            best = min(best, fa, fb)
        return best + self.margin(c)

    def _equal_covering(self, c: np.ndarray, total: float) -> bool:
        """Equal weights on groups covering every task (Σ_j c_j s_j = c·n): the projected bound holds."""
        return bool(np.allclose(c, c[0]) and abs(total - c[0] * self.n) <= 1e-9 * total)

    def margin(self, c: np.ndarray) -> float:
        return 1e-9 * float(c.sum()) * self.scale * self.n

    def bound(
        self,
        parts: list[int],
        min_size: int = 1,
        max_size: int | None = None,
        max_refined: int = 400,
        max_multisets: int = 50_000,
    ) -> float | None:
        """Bound over all partitions into a number of groups in `parts` with sizes in range.

        Returns None when no size multiset is feasible, or (TAG / HOA) when there are more than
        `max_multisets` of them to bound (many groups on many tasks).
        """
        n = self.n
        upper = n if max_size is None else min(max_size, n)
        vectors: dict[tuple, tuple[np.ndarray, float, float]] = {}
        seen = 0
        for m in parts:
            if self.rule == "ptg":  # the weights depend on the number of groups only
                if m * min_size <= n <= m * upper:
                    vectors[(m,)] = (np.ones(m), float(n), 0.0)
                continue
            for sizes in size_multisets(n, m, min_size, upper):
                seen += 1
                if seen > max_multisets:
                    return None
                c, total, constant = self.weights(sizes)
                key = (tuple(np.round(c, 12)), round(total, 9), round(constant, 12))
                vectors.setdefault(key, (c, total, constant))
        if not vectors:
            return None
        top = float(np.abs(self.A).sum()) / n + 1.0
        grid = [0.0] + [top * 10.0**p for p in np.arange(-4.0, 3.01, 0.25)]
        keys = list(vectors)
        coarse = []
        for key in keys:
            c, total, constant = vectors[key]
            if len(c) == 0:
                coarse.append(constant)
                continue
            value = min(self.value(c, total, mu) for mu in grid)
            if self._equal_covering(c, total):
                value = min(value, self.projected(c))
            coarse.append(value + self.margin(c) + constant)
        values = np.array(coarse)
        refined = np.zeros(len(keys), dtype=bool)
        for _ in range(max_refined):
            i = int(np.argmax(values))
            if refined[i]:
                break
            c, total, constant = vectors[keys[i]]
            refined[i] = True
            if len(c):
                values[i] = min(values[i], self.bound_for(c, total, grid) + constant)
        return float(values.max())
