"""The compact pairwise program at n = 27, 50 and 139 tasks: time and proven gap.

n = 27: MIMIC-III measured validation pair gains (S[source, target] = gain of the target trained
with the source; TAG/ETAP averaging). n = 50 and 139 (School-sized): synthetic planted matrices,
tasks in hidden clusters with pair gain +1 inside a cluster and −1 across, plus N(0, noise²)
(seeded), PTG's 1/|G| rule. Each run partitions the tasks into at most k groups under a time
limit; the baseline is the best of 1,000 seeded random partitions into ≤ k groups.

Run: TASKREL_DATA=../shared/external_data PYTHONPATH=src python benchmarks/select_scale.py
"""

from __future__ import annotations

import argparse

import numpy as np

from taskrel.data.published import mtgnet_pair_matrix
from taskrel.errors import SolverError
from taskrel.select import Constraints, PairwiseProblem
from taskrel.select.baselines import best_random_partition

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
    _, random_best = best_random_partition(problem, random_partitions(tasks, k, 1000, seed))
    row = {
        "instance": name,
        "n": len(tasks),
        "k": k,
        "rule": rule,
        "time_limit": time_limit,
        "best_of_1000_random_partitions": random_best,
    }
    try:
        selection = problem.solve(time_limit=time_limit)
    except SolverError as exc:  # recorded, not hidden: the benchmark reports what happened
        row.update(status="no feasible solution", message=str(exc))
    else:
        row.update(
            seconds=selection.seconds,
            status=selection.status,
            objective=selection.objective,
            bound=selection.bound,
            gap=selection.gap,
            groups=len(selection.selected),
        )
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
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
    write_result("select_scale", {"runs": rows, "targets": {"n139_gap": 0.01, "n139_seconds": 120.0}})


if __name__ == "__main__":
    main()
