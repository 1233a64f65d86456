"""Independent brute-force references for selection tests (no MILP, no code from taskrel.select)."""

from __future__ import annotations

import itertools
import math


def _components(tasks, together):
    parent = {t: t for t in tasks}

    def find(t):
        while parent[t] != t:
            t = parent[t]
        return t

    for a, b in together:
        parent[find(a)] = find(b)
    groups = {}
    for t in tasks:
        groups.setdefault(find(t), []).append(t)
    return list(groups.values())


def brute_force(
    tasks,
    candidates,
    sense="max",
    max_groups=None,
    n_groups=None,
    budgets=None,
    min_size=1,
    max_size=None,
    together=(),
    apart=(),
    partition=False,
    cover=True,
    uncovered_value=0.0,
):
    """Best objective over every subset of candidates (dicts id/tasks/values/costs); None if infeasible."""
    better = max if sense == "max" else min
    best = None
    budgets = budgets or {}
    linked = {t for pair in together for t in pair}
    for r in range(len(candidates) + 1):
        for subset in itertools.combinations(candidates, r):
            if (max_groups is not None and r > max_groups) or (n_groups is not None and r != n_groups):
                continue
            if any(sum(c["costs"][res] for c in subset) > b + 1e-9 for res, b in budgets.items()):
                continue
            if any(not (min_size <= len(c["tasks"]) <= (max_size or math.inf)) for c in subset):
                continue
            if any(a in c["tasks"] and b in c["tasks"] for c in subset for a, b in apart):
                continue
            total = 0.0
            feasible = True
            if partition:
                for t in tasks:
                    holders = [c for c in subset if t in c["tasks"]]
                    if len(holders) > 1 or (not holders and (cover or t in linked)):
                        feasible = False
                        break
                    total += holders[0]["values"][t] if holders else uncovered_value
                if feasible and any((a in c["tasks"]) != (b in c["tasks"]) for c in subset for a, b in together):
                    feasible = False
            else:
                for component in _components(tasks, together):
                    options = [sum(c["values"][t] for t in component) for c in subset if set(component) <= c["tasks"]]
                    if len(component) == 1 and not cover:
                        options.append(uncovered_value)
                    if not options:
                        feasible = False
                        break
                    total += better(options)
            if feasible:
                best = total if best is None else better(best, total)
    return best


def set_partitions(items):
    """Every partition of `items` into non-empty blocks."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        for i in range(len(partition)):
            yield [*partition[:i], [first, *partition[i]], *partition[i + 1 :]]
        yield [[first], *partition]


def member_value(S, group, k, rule):
    """Value of member k of `group` (indices) from S[source, target], written out per rule."""
    if rule == "ptg":
        return sum(S[i][k] for i in group) / len(group)
    if len(group) == 1:
        return S[k][k] if rule == "hoa" else 0.0
    return sum(S[i][k] for i in group if i != k) / (len(group) - 1)
