"""The pipeline on problems with many tasks — Landmine (29), Parkinsons (42), School (139) and a user's
45-task image problem (`digit_pairs.py`) — against STL, ALL and the best of a set of random partitions.

Per problem and training seed s (every run of that repeat uses seed s; one run store per problem):
- taskrel: `run_pipeline` as a user calls it (default step caps, 10 training groups) at K = 3 new
  groups (the recommended setting, reported as ``selected``) and K = 10 (same training groups and
  affinity, copied over);
- random partitions: the first `--partitions` of ``ayman2023/partitions/<Problem>_Random_Task_Groups.csv``
  (digit pairs: as many drawn with seed 0, each into a uniform number of 2 … 10 non-empty groups), every
  group trained; the partition with the lowest total validation loss is scored on test;
- STL, one all-task model (ALL) and the default D (the better of the two on validation).
Totals are sums of per-task test losses; ``per_task_ratio`` is the mean over tasks of L(t) / L_STL(t).
Results are written after every (problem, seed), so an interrupted run continues with the same command.

    python benchmarks/pipeline_many_tasks.py --problems landmine parkinsons --seeds 0 1 2 --workers 2
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from taskrel.data.location import data_root
from taskrel.grouping.pipeline import WEIGHTING, run_pipeline
from taskrel.grouping.runs import Runs
from taskrel.problems.registry import load_problem

from common import COMMIT, command, write_result

PARTITION_FILES = {"landmine": "Landmine", "parkinsons": "Parkinsons", "school": "School"}
#: Problem specs by benchmark name: the built-ins, and a user's problem defined in a file beside this one.
PROBLEMS = {name: name for name in PARTITION_FILES}
PROBLEMS["digit-pairs"] = f"{Path(__file__).resolve().parent / 'digit_pairs.py'}:problem"


def partitions(name: str, count: int, tasks: list[str]) -> list[list[frozenset[str]]]:
    """The first `count` random partitions of Ayman et al. for problem `name` (else drawn), as groups of task names."""
    if name not in PARTITION_FILES:
        return drawn_partitions(count, tasks)
    path = data_root() / "ayman2023" / "partitions" / f"{PARTITION_FILES[name]}_Random_Task_Groups.csv"
    frame = pd.read_csv(path)
    out = []
    for text in frame["Task_Groups"][:count]:
        groups = [frozenset(str(i) for i in members) for members in ast.literal_eval(text).values()]
        if sorted(t for g in groups for t in g) != sorted(tasks):
            raise SystemExit(f"{path}: a partition does not cover the tasks of {name} exactly")
        out.append(groups)
    return out


def drawn_partitions(count: int, tasks: list[str], seed: int = 0) -> list[list[frozenset[str]]]:
    """`count` random partitions: each a uniform number of 2 … 10 groups, tasks assigned uniformly, no group empty."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        k = int(rng.integers(2, 11))
        labels = rng.integers(0, k, len(tasks))
        if len(set(labels.tolist())) == k:
            out.append([frozenset(t for t, g in zip(tasks, labels, strict=True) if g == i) for i in range(k)])
    return out


def losses(result, model: dict[str, str], split: str) -> dict[str, float]:
    means = result.table.mean().set_index(["group", "task"])
    return {t: float(means.loc[(g, t), f"{split}_loss"]) for t, g in model.items()}


def one_repeat(name: str, seed: int, args: argparse.Namespace) -> dict:
    problem = load_problem(PROBLEMS[name])
    tasks = list(problem.tasks)
    root = Path(args.out) / name
    store = root / "runs.db"
    options = dict(train_groups=args.train_groups, seeds=[seed], seed=seed, workers=args.workers, store=store,
                   progress=False)  # fmt: skip
    started = time.perf_counter()
    first = root / f"seed{seed}-k3"
    result = run_pipeline(problem, first, max_groups=3, **options)
    wall = time.perf_counter() - started
    second = root / f"seed{seed}-k10"
    second.mkdir(parents=True, exist_ok=True)
    for file in (f"affinity-{WEIGHTING}.csv", "training_groups.json"):
        shutil.copy(first / file, second / file)
    wider = run_pipeline(problem, second, max_groups=10, **options)

    runs_started = time.perf_counter()
    drawn = partitions(name, args.partitions, tasks)
    with Runs(problem, store, [seed], workers=args.workers, progress=False) as runs:
        runs.train(list(dict.fromkeys(g for p in drawn for g in p if len(g) >= 2)))
        means = runs.table().mean().set_index(["group", "task"])
    partition_seconds = time.perf_counter() - runs_started
    names = {g: "|".join(t for t in tasks if t in g) for p in drawn for g in p}
    scored = []
    for p in drawn:
        val = sum(means.loc[(names[g], t), "val_loss"] for g in p for t in g)
        test = sum(means.loc[(names[g], t), "test_loss"] for g in p for t in g)
        scored.append((val, test))
    best_val, best_test = min(scored)

    stl = losses(result, {t: t for t in tasks}, "test")
    everything = "|".join(tasks)
    entry = {"tasks": len(tasks), "seed": seed, "commit": COMMIT, "wall_seconds_k3": round(wall, 1),
             "stage_seconds_k3": {k: round(v, 1) for k, v in result.seconds.items()},
             "partition_seconds": round(partition_seconds, 1), "partitions": len(drawn)}  # fmt: skip
    models = {
        "stl": {t: t for t in tasks},
        "naive_mtl": dict.fromkeys(tasks, everything),
        "default": {t: s.default for t, s in result.serving.tasks.items()},
        "selected": result.served,
        "selected_k10": wider.served,
    }
    for key, model in models.items():
        test = losses(result if key != "selected_k10" else wider, model, "test")
        entry[key] = {"total_test_loss": sum(test.values()),
                      "per_task_ratio": float(np.mean([test[t] / stl[t] for t in tasks]))}  # fmt: skip
    entry["best_random_partition"] = {"total_test_loss": float(best_test), "total_val_loss": float(best_val)}
    for key, run in (("selected", result), ("selected_k10", wider)):
        entry[key] |= {"chosen": run.chosen, "moved": sum(s.moved for s in run.serving.tasks.values()),
                       "not_worse_than_default": run.not_worse_than_default(), "default": run.serving.default,
                       "decision": run.decision.text, "serving": run.serving.text}  # fmt: skip
    return entry


def summary(repeats: list[dict]) -> dict:
    keys = ("stl", "naive_mtl", "default", "selected", "selected_k10", "best_random_partition")
    out = {"tasks": repeats[0]["tasks"], "seeds": [r["seed"] for r in repeats]}
    out["total_test_loss"] = {k: float(np.mean([r[k]["total_test_loss"] for r in repeats])) for k in keys}
    out["total_test_loss_sem"] = {
        k: float(np.std([r[k]["total_test_loss"] for r in repeats], ddof=1) / np.sqrt(len(repeats)))
        if len(repeats) > 1 else float("nan") for k in keys
    }  # fmt: skip
    out["per_task_ratio"] = {k: float(np.mean([r[k]["per_task_ratio"] for r in repeats]))
                             for k in keys if k != "best_random_partition"}  # fmt: skip
    out["repeats"] = repeats
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["landmine", "parkinsons", "school"], choices=PROBLEMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--partitions", type=int, default=50, help="random partitions of Ayman et al. to train")
    parser.add_argument("--out", default="runs/many")
    parser.add_argument("--train-groups", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    results_file = Path(__file__).resolve().parent / "results" / "pipeline_many_tasks.json"
    previous = json.loads(results_file.read_text()).get("results", {}) if results_file.exists() else {}
    results = {k: v for k, v in previous.items() if "repeats" in v}  # results of the earlier protocol are dropped
    for name in args.problems:
        for seed in args.seeds:
            repeats = results.get(name, {}).get("repeats", [])
            if seed in {r["seed"] for r in repeats}:
                continue  # this (problem, seed) is done
            entry = one_repeat(name, seed, args)
            results[name] = summary([*repeats, entry])
            results[name]["command"] = command()
            print(name, seed, json.dumps({k: round(v["total_test_loss"], 4) for k, v in entry.items()
                                          if isinstance(v, dict) and "total_test_loss" in v}), flush=True)  # fmt: skip
            latest = json.loads(results_file.read_text()).get("results", {}) if results_file.exists() else {}
            results = {**latest, name: results[name]}  # another run of this script may have added problems
            write_result("pipeline_many_tasks", {"results": results})


if __name__ == "__main__":
    main()
