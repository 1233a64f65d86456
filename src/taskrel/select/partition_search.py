"""A seeded local search for good partitions under a pairwise rule (an incumbent, not a proof).

The compact program's branch-and-bound is slow to find good partitions beyond a few dozen tasks;
this search finds one in seconds and the compact solver returns it whenever it beats HiGHS's
incumbent (or HiGHS has none). Its value is only ever a lower bound on the optimum: the proven gap
always comes from a valid upper bound (`taskrel.select.bounds`, HiGHS's dual bound).

Method: multi-start iterated local search. Each start is a random balanced assignment of the tasks
to the slots; it is improved by best-improvement single-task moves and pairwise swaps until
neither improves, then perturbed (a few tasks moved at random) and improved again, keeping the best.
A slot's score depends only on its size and its off-diagonal and diagonal totals, so every move
and swap is evaluated from the table ``T[k, j] = Σ_{i∈G_j, i≠k} (S[i, k] + S[k, i])``, updated in
O(n) per applied move.

Supported constraints: at most / exactly `slots` groups, group-size bounds, apart pairs, and
together pairs (linked tasks are contracted into units that move as a whole). The starts are
random near-balanced assignments; when none meets the size bounds and apart pairs, the search
returns None and the caller relies on HiGHS.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from taskrel.errors import ConfigError


def rule_weights(rule: str, size: int) -> tuple[float, float]:
    """(weight of a group's off-diagonal total, weight of its diagonal total) for a group of `size`."""
    if size == 0:
        return 0.0, 0.0
    if rule == "ptg":
        return 1.0 / size, 1.0 / size
    if size == 1:
        return 0.0, 1.0 if rule == "hoa" else 0.0
    return 1.0 / (size - 1), 0.0


@dataclass(frozen=True)
class SearchResult:
    """Best partition found (lists of task indices) and its score under the rule (maximised)."""

    groups: list[list[int]]
    value: float
    starts: int
    seconds: float


def _components(n: int, together: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Groups of task indices linked by `together` pairs (singletons for unlinked tasks)."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, k in together:
        parent[find(i)] = find(k)
    units: dict[int, list[int]] = {}
    for i in range(n):
        units.setdefault(find(i), []).append(i)
    return list(units.values())


class _State:
    """One assignment of tasks to slots with the totals needed for O(1) move evaluation."""

    def __init__(self, search: PartitionSearch, assign: np.ndarray) -> None:
        self.s = search
        n, slots = len(assign), search.slots
        self.assign = assign.copy()
        onehot = np.zeros((n, slots))
        onehot[np.arange(n), assign] = 1.0
        self.size = (search.weight @ onehot).astype(int)
        self.T = search.pair @ onehot  # pair has a zero diagonal
        self.off = 0.5 * (onehot * self.T).sum(axis=0) + search.inner @ onehot
        self.diag = search.diag @ onehot
        self.conflicts = search.apart @ onehot if search.apart is not None else None

    def score(self, off: np.ndarray, diag: np.ndarray, size: np.ndarray) -> np.ndarray:
        return self.s.w_off[size] * off + self.s.w_diag[size] * diag

    @property
    def value(self) -> float:
        return float(self.score(self.off, self.diag, self.size).sum())

    def best_move(self) -> tuple[float, int, int]:
        """(gain, unit, target slot) of the best single-unit move (gain −inf when none is allowed)."""
        s, a = self.s, self.assign
        n = len(a)
        rows = np.arange(n)
        current = self.score(self.off, self.diag, self.size)
        t_own = self.T[rows, a]
        left_size = self.size[a] - s.weight_int
        left = self.score(self.off[a] - t_own - s.inner, self.diag[a] - s.diag, left_size) - current[a]
        new_size = self.size[None, :] + s.weight_int[:, None]
        joined = self.score(
            self.off[None, :] + self.T + s.inner[:, None], self.diag[None, :] + s.diag[:, None], new_size
        )
        gain = left[:, None] + joined - current[None, :]
        allowed = s.size_ok[new_size] & s.size_ok[left_size][:, None]
        allowed[rows, a] = False
        if self.conflicts is not None:
            allowed &= self.conflicts == 0
        gain = np.where(allowed, gain, -np.inf)
        k, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
        return float(gain[k, j]), int(k), int(j)

    def best_swap(self) -> tuple[float, int, int]:
        """(gain, unit k, unit l) of the best exchange of two units in different slots."""
        s, a = self.s, self.assign
        n = len(a)
        rows = np.arange(n)
        current = self.score(self.off, self.diag, self.size)
        TA = self.T[:, a]  # TA[l, k] = T[l, slot of k]
        t_own = TA[rows, rows]
        pair = s.pair
        # k leaves slot a_k and l joins it; l leaves a_l and k joins it
        off_k = self.off[a][:, None] - t_own[:, None] - s.inner[:, None] + TA.T - pair + s.inner[None, :]
        diag_k = self.diag[a][:, None] - s.diag[:, None] + s.diag[None, :]
        size_k = self.size[a][:, None] - s.weight_int[:, None] + s.weight_int[None, :]
        gain_k = self.score(off_k, diag_k, size_k) - current[a][:, None]
        gain = gain_k + gain_k.T
        allowed = (a[:, None] != a[None, :]) & s.size_ok[size_k] & s.size_ok[size_k].T
        if self.conflicts is not None:
            c = self.conflicts[:, a]  # c[k, l] = apart partners of k in l's slot
            allowed &= (c - s.apart) == 0
            allowed &= ((c - s.apart) == 0).T
        gain = np.where(allowed, gain, -np.inf)
        k, other = np.unravel_index(int(np.argmax(gain)), gain.shape)
        return float(gain[k, other]), int(k), int(other)

    def move(self, k: int, j: int) -> None:
        s = self.s
        a = int(self.assign[k])
        self.off[a] -= self.T[k, a] + s.inner[k]
        self.off[j] += self.T[k, j] + s.inner[k]
        self.diag[a] -= s.diag[k]
        self.diag[j] += s.diag[k]
        self.size[a] -= s.weight_int[k]
        self.size[j] += s.weight_int[k]
        self.T[:, a] -= s.pair[:, k]
        self.T[:, j] += s.pair[:, k]
        if self.conflicts is not None:
            self.conflicts[:, a] -= s.apart[:, k]
            self.conflicts[:, j] += s.apart[:, k]
        self.assign[k] = j

    def descend(self, swaps: bool) -> None:
        """Apply best improving moves (then swaps) until none improves."""
        while True:
            tol = 1e-12 * (1.0 + abs(self.value))
            gain, k, j = self.best_move()
            if gain > tol:
                self.move(k, j)
                continue
            if not swaps:
                return
            gain, k, other = self.best_swap()
            if gain > tol:
                ak, ao = int(self.assign[k]), int(self.assign[other])
                self.move(k, ao)
                self.move(other, ak)
                continue
            return


class PartitionSearch:
    """Seeded iterated local search for a partition of ``matrix``'s tasks into ≤ `slots` groups.

    ``matrix`` is in maximisation form (negate a loss matrix first). ``exact`` requires exactly
    `slots` non-empty groups. ``min_size`` / ``max_size`` bound every non-empty group;
    ``apart`` lists index pairs that may not share a group, ``together`` pairs that must.
    """

    def __init__(
        self,
        matrix: np.ndarray,
        rule: str,
        slots: int,
        exact: bool = False,
        min_size: int = 1,
        max_size: int | None = None,
        apart: Sequence[tuple[int, int]] = (),
        together: Sequence[tuple[int, int]] = (),
    ) -> None:
        S = np.asarray(matrix, dtype=np.float64)
        n = len(S)
        if n == 0 or slots < 1:
            raise ConfigError("the partition search needs at least one task and one slot")
        self.n_tasks, self.rule = n, rule
        self.slots = min(slots, n)
        self.exact = exact
        # tasks that must share a group are contracted into units moved as a whole
        self.units = _components(n, together)
        member = np.zeros((n, len(self.units)))
        for u, tasks in enumerate(self.units):
            member[tasks, u] = 1.0
        pair = S + S.T
        np.fill_diagonal(pair, 0.0)
        self.n = len(self.units)
        self.pair = member.T @ pair @ member
        self.inner = 0.5 * np.diag(self.pair).copy()  # a unit's own off-diagonal total
        np.fill_diagonal(self.pair, 0.0)
        self.diag = member.T @ np.diag(S)
        self.weight_int = np.array([len(t) for t in self.units])
        self.weight = self.weight_int.astype(float)
        self.w_off = np.array([rule_weights(rule, s)[0] for s in range(2 * n + 2)])
        self.w_diag = np.array([rule_weights(rule, s)[1] for s in range(2 * n + 2)])
        upper = n if max_size is None else max_size
        self.size_ok = np.array([(s == 0 and not exact) or min_size <= s <= upper for s in range(2 * n + 2)])
        self.min_size, self.max_size = min_size, upper
        self.apart = None
        self.impossible = False
        if apart:
            unit_of = {t: u for u, tasks in enumerate(self.units) for t in tasks}
            self.apart = np.zeros((self.n, self.n))
            for i, k in apart:
                if unit_of[i] == unit_of[k]:
                    self.impossible = True  # a together chain joins an apart pair
                self.apart[unit_of[i], unit_of[k]] = self.apart[unit_of[k], unit_of[i]] = 1.0

    def _group_counts(self) -> list[int]:
        """Numbers of non-empty groups a feasible partition can have, largest first."""
        n = self.n_tasks
        used = [m for m in range(1, self.slots + 1) if self.min_size * m <= n <= self.max_size * m]
        if self.exact:
            used = [m for m in used if m == self.slots]
        if self.impossible or (self.exact and self.n < self.slots):
            return []
        return sorted({min(m, self.n) for m in used}, reverse=True)

    def _start(self, rng: np.random.Generator, m: int) -> np.ndarray | None:
        """A random assignment of the units to `m` groups with feasible sizes (near-balanced), or None."""
        for attempt in range(50):
            order = rng.permutation(self.n)
            if attempt % 2 == 0:  # heaviest units first, each into a smallest slot: balanced sizes
                order = order[np.argsort(-self.weight_int[order], kind="stable")]
            assign = np.full(self.n, -1)
            size = np.zeros(m, dtype=int)
            clash = np.zeros((self.n, m))
            for u in order:
                allowed = np.arange(m) if self.apart is None else np.flatnonzero(clash[u] == 0)
                if not len(allowed):
                    break
                if attempt % 2 == 0:
                    allowed = allowed[size[allowed] == size[allowed].min()]
                j = int(rng.choice(allowed))
                assign[u] = j
                size[j] += self.weight_int[u]
                if self.apart is not None:
                    clash[:, j] += self.apart[:, u]
            else:
                if all(self.size_ok[t] for t in size) and (not self.exact or (size > 0).all()):
                    return assign
        return None

    def run(
        self, seed: int = 0, starts: int = 4, rounds: int = 60, time_limit: float | None = None
    ) -> SearchResult | None:
        """Best partition over `starts` random starts, each improved and perturbed `rounds` times.

        Deterministic for a given seed unless `time_limit` cuts it short. Returns None when no
        start with feasible sizes and apart pairs was found.
        """
        begin = time.perf_counter()
        rng = np.random.default_rng(seed)
        best: _State | None = None
        done = 0
        strength = max(2, self.n // 12)
        # Moves and swaps cannot close a group whose size is at its minimum, so the starts cycle over
        # every feasible number of groups instead of relying on the search to reach it.
        counts = self._group_counts()
        for start in range(starts if counts else 0):
            assign = self._start(rng, counts[start % len(counts)])
            if assign is None:
                continue
            state = _State(self, assign)
            state.descend(swaps=True)
            done += 1
            current = state.assign.copy()
            current_value = state.value
            if best is None or current_value > best.value:
                best = _State(self, current)
            for _ in range(rounds):
                if time_limit is not None and time.perf_counter() - begin > time_limit:
                    break
                trial = _State(self, current)
                for k in rng.choice(self.n, size=min(strength, self.n), replace=False):
                    target = int(rng.integers(self.slots))
                    if target != trial.assign[k] and self._move_allowed(trial, int(k), target):
                        trial.move(int(k), target)
                trial.descend(swaps=True)
                if trial.value > current_value + 1e-12 * (1.0 + abs(current_value)):
                    current, current_value = trial.assign.copy(), trial.value
                    if current_value > best.value:
                        best = _State(self, current)
            if time_limit is not None and time.perf_counter() - begin > time_limit:
                break
        if best is None:
            return None
        groups = [sorted(t for u in np.flatnonzero(best.assign == j) for t in self.units[u]) for j in range(self.slots)]
        groups = [[int(k) for k in g] for g in groups if g]
        return SearchResult(groups, best.value, done, time.perf_counter() - begin)

    def _move_allowed(self, state: _State, k: int, j: int) -> bool:
        a, w = int(state.assign[k]), int(self.weight_int[k])
        if not (self.size_ok[state.size[a] - w] and self.size_ok[state.size[j] + w]):
            return False
        return state.conflicts is None or state.conflicts[k, j] == 0
