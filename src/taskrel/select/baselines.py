"""The selection searches users compare against, as published (independent of the MILP).

- `tag_exhaustive`: TAG's search — every set of at most k candidates that covers all tasks, each
  task scored by its best chosen candidate (C(m, k) sets; no bounding).
- `standley_branch_and_bound`: Standley's recursive search under a cost budget, dropping
  candidates over the remaining budget or improving no task, branching on the most helpful first.
- `beam_search`: MTG-Net's greedy beam search over k groups.
- `best_random_partition`: the best of given random partitions under a pairwise rule.

Each returns ``(selected ids, objective)``; objectives are sums over tasks in the problem's sense
(gains maximised, losses minimised).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from taskrel.errors import ConfigError, InfeasibleError
from taskrel.select.candidates import DEFAULT_RESOURCE
from taskrel.select.compact import PairwiseProblem
from taskrel.select.program import GroupingProblem


def _value_matrix(problem: GroupingProblem) -> tuple[list[int], np.ndarray]:
    """Allowed candidate indices and their (m, n) values in maximisation form (−inf = not a member)."""
    con = problem.constraints
    sign = 1.0 if problem.sense == "max" else -1.0
    allowed = [i for i, c in enumerate(problem.candidates) if con.size_allowed(len(c.tasks))]
    values = np.full((len(allowed), len(problem.tasks)), -np.inf)
    for row, i in enumerate(allowed):
        for col, task in enumerate(problem.tasks):
            if task in problem.candidates[i].tasks:
                values[row, col] = sign * problem.candidates[i].values[task]
    return allowed, values


def tag_exhaustive(problem: GroupingProblem, max_groups: int) -> tuple[tuple[str, ...], float]:
    """TAG's exhaustive search over every set of ≤ `max_groups` candidates covering all tasks.

    The innermost level is vectorised over the last candidate; the search is otherwise TAG's plain
    enumeration of C(m, 1) + … + C(m, k) sets.
    """
    allowed, values = _value_matrix(problem)
    sign = 1.0 if problem.sense == "max" else -1.0
    best_score, best_set = -np.inf, None
    m = len(allowed)
    for size in range(1, max_groups + 1):
        for prefix in itertools.combinations(range(m - 1 if size > 1 else m), size - 1):
            start = prefix[-1] + 1 if prefix else 0
            base = values[list(prefix)].max(axis=0) if prefix else np.full(values.shape[1], -np.inf)
            scores = np.maximum(values[start:], base).sum(axis=1)  # −inf when a task is uncovered
            last = int(np.argmax(scores))
            if scores[last] > best_score:
                best_score, best_set = scores[last], (*prefix, start + last)
    if best_set is None or not np.isfinite(best_score):
        raise InfeasibleError(f"no set of ≤ {max_groups} candidates covers every task", constraint="max_groups")
    return tuple(problem.candidates[allowed[i]].id for i in best_set), float(sign * best_score)


def standley_branch_and_bound(
    problem: GroupingProblem, budget: float, resource: str = DEFAULT_RESOURCE
) -> tuple[tuple[str, ...], float]:
    """Standley et al.'s network selection: best set of candidates with total cost ≤ `budget`."""
    allowed, values = _value_matrix(problem)
    costs = np.array([problem.candidates[i].costs.get(resource, np.nan) for i in allowed])
    if np.isnan(costs).any():
        raise ConfigError(f"every candidate needs a {resource!r} cost for the budget search")
    sign = 1.0 if problem.sense == "max" else -1.0
    best = {"score": -np.inf, "set": None}

    def search(pool: list[int], chosen: list[int], current: np.ndarray, remaining: float) -> None:
        score = current.sum()
        if score > best["score"]:
            best["score"], best["set"] = score, list(chosen)
        gains = [(_improvement(values[i], current), i) for i in pool if costs[i] <= remaining + 1e-12]
        useful = [i for gain, i in sorted(gains, reverse=True) if gain > 0]
        for position, i in enumerate(useful):
            search(useful[position + 1 :], [*chosen, i], np.maximum(current, values[i]), remaining - costs[i])

    search(list(range(len(allowed))), [], np.full(values.shape[1], -np.inf), budget)
    if best["set"] is None or not np.isfinite(best["score"]):
        raise InfeasibleError(f"no set of candidates within budget {budget} covers every task", constraint="budget")
    return tuple(problem.candidates[allowed[i]].id for i in best["set"]), float(sign * best["score"])


def _improvement(candidate: np.ndarray, current: np.ndarray) -> float:
    """Largest per-task improvement of `candidate` over `current` (∞ for a task not yet served)."""
    better = candidate > current
    return float((candidate[better] - current[better]).max()) if better.any() else 0.0


def beam_search(problem: GroupingProblem, max_groups: int, beams: int = 5) -> tuple[tuple[str, ...], float]:
    """MTG-Net's beam search; uncovered tasks score ``uncovered_value`` (MTG-Net: 0 = STL).

    Seeds are the `beams` candidates with the largest summed value; each step adds, to every
    beam, the candidate with the largest total improvement over the beam's per-task best.
    """
    allowed, values = _value_matrix(problem)
    sign = 1.0 if problem.sense == "max" else -1.0
    floor = np.full(values.shape[1], sign * problem.constraints.uncovered_value)
    seeds = np.argsort(-np.where(np.isfinite(values), values, 0.0).sum(axis=1), kind="stable")[:beams]
    results = []
    for seed in seeds:
        chosen = [int(seed)]
        current = np.maximum(floor, values[seed])
        for _ in range(max_groups - 1):
            improvement = np.maximum(values - current, 0.0).sum(axis=1)
            improvement[chosen] = -1.0
            pick = int(np.argmax(improvement))
            if improvement[pick] <= 0:
                break
            chosen.append(pick)
            current = np.maximum(current, values[pick])
        results.append((current.sum(), chosen))
    score, chosen = max(results, key=lambda r: r[0])
    return tuple(problem.candidates[allowed[i]].id for i in chosen), float(sign * score)


def best_random_partition(
    problem: PairwiseProblem, partitions: Sequence[Sequence[Sequence[str]]]
) -> tuple[list[list[str]], float]:
    """The best of the given partitions of ``problem.tasks``, scored by the problem's pairwise rule."""
    index = {t: i for i, t in enumerate(problem.tasks)}
    sign = 1.0 if problem.sense == "max" else -1.0
    best_score, best = -np.inf, None
    for number, partition in enumerate(partitions):
        flat = [t for group in partition for t in group]
        if sorted(flat) != sorted(problem.tasks):
            raise ConfigError(f"partition {number} does not cover each of the problem's tasks exactly once")
        score = sign * sum(problem.group_values([index[t] for t in group]).sum() for group in partition)
        if score > best_score:
            best_score, best = score, [list(group) for group in partition]
    if best is None:
        raise ConfigError("no partitions given")
    return best, float(sign * best_score)
