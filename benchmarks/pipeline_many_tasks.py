"""The pipeline on problems with more tasks than can be enumerated: Landmine (29), Parkinsons (42), School (139).

Each run is `taskrel pipeline` as a user calls it (pairwise prediction of every pair, the compact
pairwise program, training of the chosen groups), with the settings given; the JSON records, per
problem, the wall time of each stage, the chosen partition, and the total test loss of the served
models next to STL and one all-task model. Resumable: each problem's run store is kept under `--out`.

    python benchmarks/pipeline_many_tasks.py --problems landmine parkinsons school --out runs/many
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from taskrel.pipeline import run_pipeline
from taskrel.problem import load_problem

from common import command, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", nargs="+", default=["landmine", "parkinsons", "school"])
    parser.add_argument("--out", default="runs/many")
    parser.add_argument("--train-groups", type=int, default=10)
    parser.add_argument("--max-groups", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-steps", type=int, help="training cap per run (default: the problem's own)")
    args = parser.parse_args()
    results_file = Path(__file__).resolve().parent / "results" / "pipeline_many_tasks.json"
    results = json.loads(results_file.read_text())["results"] if results_file.exists() else {}
    for name in args.problems:
        options = {} if args.max_steps is None else {"max_steps": args.max_steps}
        problem = load_problem(name, **options)
        started = time.perf_counter()
        result = run_pipeline(problem, Path(args.out) / name, train_groups=args.train_groups,
                              max_groups=args.max_groups, workers=args.workers, progress=False)  # fmt: skip
        totals = result.totals()
        results[name] = {
            "tasks": len(problem.tasks),
            "command": command(),
            "settings": {"train_groups": args.train_groups, "max_groups": args.max_groups, "workers": args.workers,
                         "seeds": 1, **options},
            "wall_seconds": round(time.perf_counter() - started, 1),
            "stage_seconds": {k: round(v, 1) for k, v in result.seconds.items()},
            "chosen": result.chosen,
            "selection": result.selection,
            "total_test_loss": totals,
            "gain_vs_stl": (totals["stl"] - totals["selected"]) / totals["stl"],
        }  # fmt: skip
        print(name, json.dumps(results[name]["total_test_loss"]), results[name]["wall_seconds"], "s", flush=True)
        write_result("pipeline_many_tasks", {"results": results})


if __name__ == "__main__":
    main()
