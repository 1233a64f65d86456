"""The compact pairwise program at n = 27, 50 and 139 tasks: time and proven gap.

n = 27: MIMIC-III measured validation pair gains (S[source, target] = gain of the target trained
with the source; TAG/ETAP averaging). n = 50 and 139 (School-sized): synthetic planted matrices,
tasks in hidden clusters with pair gain +1 inside a cluster and −1 across, plus N(0, noise²)
(seeded), PTG's 1/|G| rule. Each run partitions the tasks into at most k groups under a time
limit; the baseline is the best of 1,000 seeded random partitions into ≤ k groups (drawn from a
seed stream separate from the planted labels, so the baseline cannot see them).

Each instance is solved twice: with ``gap=0.01`` (seconds until a partition is proven within 1 %)
and with ``gap=0`` under the time limit (proven optimal, or the proven gap when time runs out).
MIMIC-27 is also solved for k = 2 … 6 (``mimic27_tag_k_sweep``, gap 0).
The solver combines a seeded local search (incumbent), an eigenvalue bound, a column-generation
(set-partitioning LP) bound with exact pricing for n ≤ 60, and HiGHS on the compact MILP; the
reported gap is always objective vs a valid bound. ``eigen_bound`` is that bound alone.

Run: TASKREL_DATA=../shared/external_data PYTHONPATH=src python benchmarks/select_scale.py
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from taskrel.data.published import mtgnet_pair_matrix
from taskrel.errors import SolverError
from taskrel.select import Constraints, PairwiseProblem
from taskrel.select.baselines import best_random_partition
from taskrel.select.bounds import EigenBound

from common import write_result


def planted(n: int, clusters: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    matrix = np.where(labels[:, None] == labels[None, :], 1.0, -1.0) + noise * rng.standard_normal((n, n))
    np.fill_diagonal(matrix, 0.0)
    return matrix


def random_partitions(tasks, k: int, count: int, seed: int) -> list[list[list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        slots = rng.integers(0, k, len(tasks))
        out.append([[t for t, s in zip(tasks, slots, strict=True) if s == j] for j in range(k) if (slots == j).any()])
    return out


def run(name: str, tasks, matrix, rule: str, k: int, time_limit: float, seed: int) -> dict:
    problem = PairwiseProblem(tuple(tasks), matrix, rule, "max", Constraints(partition=True, max_groups=k))
    _, random_best = best_random_partition(problem, random_partitions(tasks, k, 1000, seed + 10_000))
    start = time.perf_counter()
    eigen = EigenBound(matrix, rule).bound(list(range(1, k + 1)))
    eigen_seconds = time.perf_counter() - start
    row = {
        "instance": name,
        "n": len(tasks),
        "k": k,
        "rule": rule,
        "time_limit": time_limit,
        "best_of_1000_random_partitions": random_best,
        "eigen_bound": eigen,
        "eigen_bound_seconds": eigen_seconds,
    }
    for label, target in (("to_1pct", 0.01), ("exact", 0.0)):
        try:
            selection = problem.solve(time_limit=time_limit, gap=target, seed=seed)
        except SolverError as exc:  # recorded, not hidden: the benchmark reports what happened
            row[label] = {"requested_gap": target, "status": "no feasible solution", "message": str(exc)}
        else:
            row[label] = {"requested_gap": target, **summary(selection)}
        print(name, label, row[label], flush=True)
    return row


def summary(selection) -> dict:
    """What the benchmark records of one solve: time, status, objective, proven bound and gap, group sizes."""
    return {
        "seconds": selection.seconds,
        "status": selection.status,
        "objective": selection.objective,
        "bound": selection.bound,
        "gap": selection.gap,
        "group_sizes": sorted((len(g) for g in selection.groups.values()), reverse=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    load_start = os.getloadavg()
    tasks, matrix = mtgnet_pair_matrix("mimic27", "val")
    rows = [run("mimic27 val pair gains", tasks, matrix, "tag", args.k, args.time_limit, args.seed)]
    for n in (50, 139):
        synthetic = planted(n, args.k, args.noise, args.seed)
        rows.append(
            run(
                f"planted n={n} noise={args.noise}",
                [f"t{i}" for i in range(n)],
                synthetic,
                "ptg",
                args.k,
                args.time_limit,
                args.seed,
            )
        )
    sweep = []  # MIMIC-27 for k = 2 … 6 (exact runs only)
    for k in range(2, 7):
        problem = PairwiseProblem(tuple(tasks), matrix, "tag", "max", Constraints(partition=True, max_groups=k))
        selection = problem.solve(time_limit=args.time_limit, seed=args.seed)
        sweep.append({"k": k, **summary(selection)})
        print("mimic27 k sweep", sweep[-1], flush=True)
    load = os.getloadavg()
    write_result(
        "select_scale",
        {
            "runs": rows,
            "mimic27_tag_k_sweep": sweep,
            "targets": {"n139_gap": 0.01, "n139_seconds": 120.0},
            "load_average_1_5_15min": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in load]},
        },
    )


if __name__ == "__main__":
    main()
