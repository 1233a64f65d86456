"""Serving replayed on a many-task run store: ALL, per-task validation picks, the test oracle and `serve`.

For each training seed of the store written by `pipeline_many_tasks.py` (every trained model of the
repeat: STL, ALL, training groups, chosen groups and the random partitions' groups), the total test
loss of: ALL; STL; each task on STL or ALL, whichever has its lower validation loss; each task on the
model with its lowest validation loss (no significance test); each task on its best model on test (the
oracle, not reachable); and `serve` (the per-row evidence rule). Also the number of tasks whose test
loss is higher on ALL than on STL. The JSON is named after the problem's fingerprint name.

    cd benchmarks && PYTHONPATH=../src python serving_replay.py --problem landmine --store ../runs/many/landmine/runs.db
"""

from __future__ import annotations

import argparse

from taskrel.grouping.decision import serve
from taskrel.grouping.runs import Runs
from taskrel.problems.registry import load_problem

from common import write_result


def replay(problem, store: str, seed: int) -> dict:
    tasks = list(problem.tasks)
    everything = "|".join(tasks)
    with Runs(problem, store, [seed]) as runs:
        table, rows = runs.table(), runs.validation_rows()
    means = table.mean().set_index(["group", "task"])
    val, test = means["val_loss"], means["test_loss"]
    options = {t: [g for g, u in means.index if u == t] for t in tasks}
    serving = serve(table, rows, seed=seed)
    return {
        "seed": seed,
        "models": int(table.frame["group"].nunique()),
        "all": float(sum(test[(everything, t)] for t in tasks)),
        "stl": float(sum(test[(t, t)] for t in tasks)),
        "stl_or_all_by_validation": float(sum(test[(min((t, everything), key=lambda g: val[(g, t)]), t)]
                                              for t in tasks)),
        "tasks_worse_on_all_than_stl": int(sum(test[(everything, t)] > test[(t, t)] for t in tasks)),
        "validation_pick": float(sum(test[(min(options[t], key=lambda g: val[(g, t)]), t)] for t in tasks)),
        "test_oracle": float(sum(min(test[(g, t)] for g in options[t]) for t in tasks)),
        "serve": float(sum(test[(g, t)] for t, g in serving.models().items())),
        "serve_text": serving.text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="landmine")
    parser.add_argument("--store", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    problem = load_problem(args.problem)
    results = [replay(problem, args.store, seed) for seed in args.seeds]
    for r in results:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items() if k != "serve_text"})
    name = problem.fingerprint().get("name", args.problem)
    write_result(f"serving_replay_{name}", {"problem": args.problem, "results": results})


if __name__ == "__main__":
    main()
