"""Sweep throughput (groups per minute) by executor, and the overhead of store + executor.

The same fixed list of Chemical groups (one seed each, a step cap so that every run is the same
work) is trained four ways, interleaved over repeats: the Trainer called directly in a loop, a
sweep with one worker (runs in-process, writes every result to SQLite), a sweep with a pool of two
worker processes, and a sweep on a local Ray cluster with two CPUs. Fresh stores every time. Every
sweep trains one run at a time (``group_batch=1``): this measures the store and executors, not the
batched engine (``batched_training.py``).

    python benchmarks/sweep_throughput.py --groups 8 --max-steps 1500 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from taskrel.data import load_chemical
from taskrel.problems.registry import load_problem
from taskrel.train import Trainer
from taskrel.train.sweep import plan_runs, run_sweep, stratified_groups

from common import write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    dataset = load_chemical()
    problem = load_problem("chemical", max_steps=args.max_steps, patience_steps=args.max_steps, patience=10**6)
    config = problem.config
    groups = stratified_groups(dataset.task_names, args.groups, seed=0, sizes=range(2, 6))
    keys = plan_runs(dataset.task_names, groups, [0])  # the singles of every member, then the groups
    jobs = len(keys)

    def direct() -> None:
        for key in keys:
            Trainer(dataset, key.group, config, seed=key.seed).fit()

    def sweep(**options):
        def run() -> None:
            with tempfile.TemporaryDirectory() as folder:
                report = run_sweep(problem, groups, [0], Path(folder) / "runs.db", progress=False, group_batch=1,
                                   **options)
                assert report.done == jobs, report

        return run

    modes = {
        "direct loop": direct,
        "sweep, 1 worker": sweep(workers=1),
        "sweep, 2 workers": sweep(workers=2),
        "sweep, ray (2 CPUs)": sweep(workers=2, executor="ray"),
    }
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    for repeat in range(args.repeats):
        for name, run in modes.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
            print(f"repeat {repeat} {name:22s} {seconds[name][-1]:7.2f} s", flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    results = {
        name: {"seconds": seconds[name], "median_seconds": median[name], "runs_per_minute": 60 * jobs / median[name]}
        for name in modes
    }
    payload = {
        "runs": jobs,
        "groups": len(groups),
        "max_steps": args.max_steps,
        "repeats": args.repeats,
        "results": results,
        "store_and_executor_overhead": median["sweep, 1 worker"] / median["direct loop"] - 1,
        "speedup_2_workers": median["sweep, 1 worker"] / median["sweep, 2 workers"],
        "speedup_ray": median["sweep, 1 worker"] / median["sweep, ray (2 CPUs)"],
    }
    print(f"wrote {write_result('sweep_throughput', payload)}")


if __name__ == "__main__":
    main()
