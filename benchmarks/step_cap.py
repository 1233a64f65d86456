"""Does a problem's step cap bind? STL runs of the first tasks and one all-task run under a few protocols.

Per protocol (the problem's default, SGD at lr 1e-2, Adam at lr 1e-3): the first `--tasks` tasks' STL
runs (batched) with their steps, and the all-task run with `--all-steps` as its cap; totals of the
reported validation and test losses over those tasks. Written after every protocol, so an interrupted
run continues with the same command.

    cd benchmarks && PYTHONPATH=../src python step_cap.py --problem parkinsons --tasks 12 --all-steps 8000
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from taskrel.problems.registry import load_problem

from common import RESULTS, write_result

PROTOCOLS = {"default": {}, "sgd-lr1e-2": {"lr": 1e-2}, "adam-lr1e-3": {"optimizer": "adam", "lr": 1e-3}}


def measure(problem, tasks: list[str], all_steps: int) -> dict:
    started = time.perf_counter()
    stl = problem.train_many([([t], 0) for t in tasks])
    for task, result in zip(tasks, stl, strict=True):
        if isinstance(result, Exception):
            raise SystemExit(f"STL run of {task} failed: {result}")
    stl_seconds = time.perf_counter() - started
    cap = problem.config.max_steps
    started = time.perf_counter()
    everything = problem.with_config(max_steps=all_steps).train(list(problem.tasks), 0)
    return {
        "stl_steps": [r.steps for r in stl], "stl_at_cap": sum(r.steps >= cap for r in stl), "cap": cap,
        "stl_val": sum(sum(r.val_loss.values()) for r in stl), "stl_test": sum(sum(r.test_loss.values()) for r in stl),
        "stl_seconds": round(stl_seconds, 1), "all_steps": everything.steps,
        "all_val": sum(everything.val_loss[t] for t in tasks), "all_test": sum(everything.test_loss[t] for t in tasks),
        "all_seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="parkinsons")
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--all-steps", type=int, default=8000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    name = f"step_cap_{args.problem}"
    path = RESULTS / f"{name}.json"
    done = json.loads(path.read_text()).get("protocols", {}) if path.exists() else {}
    base = load_problem(args.problem)
    tasks = list(base.tasks)[: args.tasks]
    for label, options in PROTOCOLS.items():
        if label in done:
            continue
        done[label] = {"options": options, **measure(base.with_config(**options), tasks, args.all_steps)}
        print(label, done[label], flush=True)
        write_result(name, {"problem": args.problem, "tasks": tasks, "protocols": done})


if __name__ == "__main__":
    main()
