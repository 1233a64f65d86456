"""Exact MILP vs the published searches, side by side on published tables.

1. CelebA, 9 tasks, TAG affinity matrix (TAG's scoring, groups of ≥ 2 tasks, every task covered):
   the MILP vs TAG's exhaustive search over ≤ k of the 502 candidate groups, k = 2, 3, 4.
   k = 4 (C(502, 4) ≈ 2.6e9 sets) is extrapolated from the per-prefix time of the k = 3 run unless
   ``--full`` is given.
2. MIMIC-III, 27 tasks, 3,185 measured groups (MTG-Net's convention: uncovered tasks keep STL,
   gain 0): the MILP vs MTG-Net's beam search for k = 1..6, selected on validation, scored on test.

Run: TASKREL_DATA=../shared/external_data PYTHONPATH=src python benchmarks/select_speed.py
"""

from __future__ import annotations

import argparse
import math
import time

from taskrel.select.baselines import beam_search, tag_exhaustive
from taskrel.select.published import mtgnet_problem, tag_problem

from common import write_result


def celeba(full: bool) -> list[dict]:
    problem = tag_problem("celeba", "affinity")
    m = sum(problem.constraints.size_allowed(len(c.tasks)) for c in problem.candidates)
    rows, per_prefix = [], None
    for k in (2, 3, 4):
        milp = problem.with_constraints(max_groups=k).solve()
        row = {
            "k": k,
            "candidates": m,
            "sets": sum(math.comb(m, r) for r in range(1, k + 1)),
            "milp_seconds": milp.seconds,
            "milp_objective": milp.objective,
            "milp_status": milp.status,
        }
        if k < 4 or full:
            start = time.perf_counter()
            _, objective = tag_exhaustive(problem, k)
            row.update(
                exhaustive_seconds=time.perf_counter() - start,
                exhaustive_objective=objective,
                exhaustive="measured",
                same_optimum=abs(objective - milp.objective) < 1e-9,
            )
            per_prefix = row["exhaustive_seconds"] / sum(math.comb(m, r - 1) for r in range(1, k + 1))
        else:
            prefixes = sum(math.comb(m, r - 1) for r in range(1, k + 1))
            row.update(exhaustive_seconds=per_prefix * prefixes, exhaustive="extrapolated from k=3 per-prefix time")
        row["speedup"] = row["exhaustive_seconds"] / row["milp_seconds"]
        print(row, flush=True)
        rows.append(row)
    return rows


def mimic() -> list[dict]:
    val, test = mtgnet_problem("mimic27", "val"), mtgnet_problem("mimic27", "test")
    n = len(val.tasks)
    rows = []
    for k in range(1, 7):
        milp = val.with_constraints(max_groups=k).solve()
        start = time.perf_counter()
        beam, beam_objective = beam_search(val, k)
        beam_seconds = time.perf_counter() - start
        row = {
            "k": k,
            "milp_seconds": milp.seconds,
            "milp_status": milp.status,
            "milp_gap": milp.gap,
            "milp_val_avg_gain": milp.objective / n,
            "beam_seconds": beam_seconds,
            "beam_val_avg_gain": beam_objective / n,
            "milp_test_avg_gain": test.evaluate(milp.selected).objective / n,
            "beam_test_avg_gain": test.evaluate(beam).objective / n,
        }
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="run TAG's exhaustive search at k = 4 too")
    args = parser.parse_args()
    write_result(
        "select_speed",
        {
            "celeba_tag_k": celeba(args.full),
            "mimic27": mimic(),
            "targets": {"n9_seconds": 1.0, "mimic27_seconds": 30.0},
        },
    )


if __name__ == "__main__":
    main()
