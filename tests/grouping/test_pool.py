"""The candidate pool: every group up to 14 tasks; planted clusters, ALL's ranking and refinements beyond."""

import itertools

import numpy as np
import pandas as pd

from taskrel.affinity import AffinityMatrix
from taskrel.gains import GainTable
from taskrel.grouping.pool import candidate_pool, cluster_nodes, ranking_prefixes, refine


def table_of(tasks, everything_val):
    """STL runs at loss 1 and one all-task run with the given validation losses."""
    runs = [(t, 0, {t: 1.0}, {t: 1.0}) for t in tasks]
    runs.append(("|".join(tasks), 0, dict(zip(tasks, everything_val, strict=True)), dict.fromkeys(tasks, 1.0)))
    return GainTable.from_runs(runs, tasks)


def test_up_to_fourteen_tasks_every_group_is_a_candidate():
    tasks = [f"t{i}" for i in range(6)]
    pool = candidate_pool(tasks, table_of(tasks, [0.9] * 6))
    assert len(pool) == 2**6 - 6 - 1 == len(set(pool)) and all(len(g) >= 2 for g in pool)


def test_planted_clusters_of_the_affinity_are_in_the_pool():
    rng = np.random.default_rng(0)
    tasks = [f"t{i}" for i in range(40)]
    cluster = np.repeat(np.arange(4), 10)
    rng.shuffle(cluster)
    values = np.where(cluster[:, None] == cluster[None, :], 1.0, -0.5) + rng.normal(0, 0.1, (40, 40))
    affinity = AffinityMatrix(values, tuple(tasks))
    pool = candidate_pool(tasks, table_of(tasks, rng.uniform(0.8, 1.2, 40)), affinity)
    for k in range(4):
        planted = frozenset(t for t, c in zip(tasks, cluster, strict=True) if c == k)
        assert planted in pool and frozenset(tasks) - planted in pool
    assert 100 <= len(pool) <= 400 and len(set(pool)) == len(pool)
    assert all(2 <= len(g) <= 40 for g in pool)


def test_cluster_nodes_are_the_n_minus_2_proper_internal_nodes():
    rng = np.random.default_rng(1)
    tasks = [f"t{i}" for i in range(9)]
    nodes = cluster_nodes(rng.normal(size=(9, 3)), tasks, "average")
    assert len(nodes) == 9 - 2  # n − 1 internal nodes, the root (every task) left out
    assert all(2 <= len(g) <= 8 for g in nodes)
    for a in nodes:  # a hierarchy: any two nodes are nested or disjoint
        assert all(a <= b or b <= a or not a & b for b in nodes)


def test_ranking_prefixes_hold_all_minus_the_tasks_it_hurts():
    tasks = [f"t{i}" for i in range(20)]
    everything_val = [0.8 if i % 4 else 1.3 for i in range(20)]  # ALL hurts every fourth task
    prefixes = ranking_prefixes(tasks, table_of(tasks, everything_val))
    helped = frozenset(t for t, v in zip(tasks, everything_val, strict=True) if v < 1.0)
    assert helped in prefixes
    assert all(len(a) < len(b) for a, b in itertools.pairwise(prefixes))
    assert min(map(len, prefixes)) == 2 and max(map(len, prefixes)) == 19


def test_refine_drops_the_members_a_group_does_not_help():
    tasks = list("abcde")
    values = pd.DataFrame({"group": ["a|b|c|d"] * 4 + ["a|e"] * 2, "task": list("abcd") + list("ae"),
                           "value": [0.2, 0.1, -0.3, 0.0, 0.5, 0.4]})  # fmt: skip
    assert refine(table_of(tasks, [0.9] * 5), values) == [frozenset("ab")]
