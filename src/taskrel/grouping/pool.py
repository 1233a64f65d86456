"""The candidate groups the decision chooses among.

Up to `MAX_ENUMERATED_TASKS` tasks every group of two or more tasks is a candidate, so the choice
is optimal over all groups. Beyond, enumerating 2^n groups is impossible and the pool holds a few
hundred groups built from what the all-task run and the trained groups reveal:

- the trained groups themselves (free options, kept for reference);
- the all-task group's *ranking*: tasks ordered by their measured validation gain in ALL, and the
  prefixes of that order (the j tasks ALL helps most, for j spread over 2 … n − 1), which include
  "ALL minus the tasks it hurts";
- the nodes of two hierarchical clusterings of a task embedding (Ward and average linkage), each a
  cluster for some number of clusters, and their complements. The embedding is task t's row and
  column of the affinity matrix (how t's updates affect the others, and how the others' affect t),
  scaled to unit length, so that a task's profile counts, not its gradient's size;
- for k = 2 … `MAX_CLUSTERS`, the Ward clusters refined by affinity: each task joins the cluster whose
  other members it has the highest mean symmetric affinity with, until nothing moves (a k-means
  step on the affinity, which repairs the few tasks a linkage misplaces), and their complements.

`refine` adds, for groups already scored, the group without the members it is predicted not to help
(the decision's own marginal value ≤ 0), so the program can choose the core of a group whose edges
hurt. Groups are returned once each, in order of first appearance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage, to_tree

from taskrel.affinity.matrix import AffinityMatrix
from taskrel.gains import GainTable
from taskrel.grouping.decision import MAX_ENUMERATED_TASKS, candidate_groups, validation_losses
from taskrel.groups import Group, parse_group

#: How many prefix lengths of the all-task ranking enter the pool (spread over 2 … n − 1).
RANKING_PREFIXES = 24
#: Largest number of clusters refined by affinity reassignment, and the most reassignment rounds.
MAX_CLUSTERS = 12
REASSIGN_ROUNDS = 50


def candidate_pool(tasks: Sequence[str], table: GainTable, affinity: AffinityMatrix | None = None) -> list[Group]:
    """Candidate groups of two or more tasks for `decide` (see the module docstring)."""
    tasks = list(tasks)
    n = len(tasks)
    if n <= MAX_ENUMERATED_TASKS:
        return candidate_groups(tasks)
    groups: list[Group] = [g for g in table.groups() if len(g) >= 2]
    groups += ranking_prefixes(tasks, table)
    if affinity is not None:
        embedding = _embedding(affinity, tasks)
        for method in ("ward", "average"):
            for node in cluster_nodes(embedding, tasks, method):
                groups += [node, frozenset(tasks) - node]
        for cluster in affinity_clusters(affinity, tasks, embedding):
            groups += [cluster, frozenset(tasks) - cluster]
    return _unique(g for g in groups if 2 <= len(g) <= n)


def ranking_prefixes(tasks: Sequence[str], table: GainTable, count: int = RANKING_PREFIXES) -> list[Group]:
    """The j tasks with the highest measured validation gain in the all-task group, j spread over 2 … n − 1."""
    tasks = list(tasks)
    everything = "|".join(tasks)
    loss = validation_losses(table)
    if not all((everything, t) in loss.index for t in tasks):
        return []
    gain = {t: (loss[(t, t)] - loss[(everything, t)]) / loss[(t, t)] for t in tasks}
    order = sorted(tasks, key=lambda t: -gain[t])
    helped = sum(1 for t in tasks if gain[t] > 0)
    lengths = {round(j) for j in np.linspace(2, len(tasks) - 1, count)}
    if 2 <= helped < len(tasks):
        lengths.add(helped)  # ALL minus every task it hurts
    return [frozenset(order[:j]) for j in sorted(lengths)]


def cluster_nodes(embedding: np.ndarray, tasks: Sequence[str], method: str) -> list[Group]:
    """Every internal node of the hierarchical clustering of the rows of `embedding` (sizes 2 … n − 1)."""
    root = to_tree(linkage(embedding, method=method, metric="euclidean"))
    nodes, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.is_leaf():
            continue
        members = frozenset(tasks[i] for i in node.pre_order())
        if len(members) < len(tasks):
            nodes.append(members)
        stack += [node.get_left(), node.get_right()]
    return nodes


def affinity_clusters(affinity: AffinityMatrix, tasks: Sequence[str], embedding: np.ndarray) -> list[Group]:
    """Ward's clusters of `embedding` for k = 2 … `MAX_CLUSTERS`, each refined by reassignment on the affinity."""
    index = [affinity.tasks.index(t) for t in tasks]
    values = affinity.values[np.ix_(index, index)]
    similarity = (values + values.T) / 2
    np.fill_diagonal(similarity, 0.0)
    tree = linkage(embedding, method="ward")
    out = []
    for k in range(2, min(MAX_CLUSTERS, len(tasks) // 2) + 1):
        labels = fcluster(tree, k, criterion="maxclust") - 1
        for _ in range(REASSIGN_ROUNDS):
            members = np.eye(labels.max() + 1)[labels]  # task × cluster one-hot
            others = members.sum(axis=0)[None, :] - members  # other members of each cluster, per task
            mean = (similarity @ members) / np.maximum(others, 1)
            moved = mean.argmax(axis=1)
            if (moved == labels).all():
                break
            labels = moved
        out += [frozenset(tasks[i] for i in np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return _unique(g for g in out if len(g) >= 2)


def refine(table: GainTable, values: pd.DataFrame) -> list[Group]:
    """Each scored group without its members of non-positive marginal value (groups of ≥ 2 that differ)."""
    tasks = list(table.tasks)
    out = []
    for name, rows in values.groupby("group", sort=False):
        kept = frozenset(rows.loc[rows["value"] > 0, "task"])
        if len(kept) >= 2 and kept != parse_group(name, tasks):
            out.append(kept)
    return _unique(out)


def _embedding(affinity: AffinityMatrix, tasks: Sequence[str]) -> np.ndarray:
    """Each task's affinity row and column (diagonal left out), scaled to unit length."""
    index = [affinity.tasks.index(t) for t in tasks]
    values = affinity.values[np.ix_(index, index)].copy()
    np.fill_diagonal(values, 0.0)
    profile = np.hstack([values, values.T])
    return profile / np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-300)


def _unique(groups: Iterable[Group]) -> list[Group]:
    return list(dict.fromkeys(groups))


__all__ = [
    "MAX_CLUSTERS",
    "RANKING_PREFIXES",
    "affinity_clusters",
    "candidate_pool",
    "cluster_nodes",
    "ranking_prefixes",
    "refine",
]
