"""Serving replayed on a many-task run store: ALL, per-task validation picks, the test oracle and `serve`.

For each training seed of the store written by `pipeline_many_tasks.py` (every trained model of the
repeat: STL, ALL, training groups, chosen groups and the random partitions' groups), the total test
loss of: ALL; STL; each task on STL or ALL, whichever has its lower validation loss; each task on the
model with its lowest validation loss (no significance test); each task on its best model on test (the
oracle, not reachable); and `serve` (the per-row evidence rule), with the number of tasks it moves off D
and the share of tasks whose served test loss is not above D's. Also the number of tasks whose test
loss is higher on ALL than on STL, the task with the largest test loss on ALL (and its served loss), and the
median number of validation rows per task. The JSON is
named after the problem's fingerprint name.

How much room a group leaves over ALL (``groups_against_all``): for every trained group of two or more
tasks other than ALL, its improvement over ALL summed over its members, on validation and on test; how
many groups improve on each; the largest test improvement; the group with the largest validation
improvement and its test improvement; and the Spearman correlation of the two improvements over the
groups (how far validation tells which groups really beat ALL).

Looser serving rules, to see whether `serve` leaves measurable gains on the table: each task moves off D
to the model with the largest mean validation improvement among those whose paired per-row t statistic
(L_D − L_G over the task's validation rows) exceeds c, for c in `THRESHOLDS` (no check rows; c = 0 keeps
every improvement); and c chosen by cross-validation over each task's rows, taken only if its held-out
improvement over D is significant at level 0.05, else D — `serve`'s single-task rule
(`cross_validated_threshold`), applied from D alone, without its group stage and at the unsplit level.

    cd benchmarks && PYTHONPATH=../src python serving_replay.py --problem landmine --store ../runs/many/landmine/runs.db
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from taskrel.grouping.decision import (
    ALPHA,
    THRESHOLDS,
    cross_validated_threshold,
    default_models,
    serve,
    threshold_pick,
)
from taskrel.grouping.runs import Runs
from taskrel.problems.registry import load_problem

from common import write_result


def threshold_rules(table, rows, test, tasks: list[str], models: dict[str, str], seed: int) -> dict:
    """Test totals of the threshold rules and of the cross-validated threshold from D's `models` (module docstring)."""
    trained = list(dict.fromkeys(table.frame["group"]))
    differences = {t: {g: rows[(models[t], t)] - rows[(g, t)] for g in trained
                       if g != models[t] and (g, t) in rows} for t in tasks}  # fmt: skip

    def total(c: float) -> float:
        served = {t: threshold_pick(differences[t], np.arange(len(rows[(models[t], t)])), c) or models[t]
                  for t in tasks}  # fmt: skip
        return float(sum(test[(served[t], t)] for t in tasks))

    chosen, improvement, p = cross_validated_threshold(differences, seed, tasks)
    return {
        **{f"threshold_{c:g}": total(c) for c in THRESHOLDS},
        "cross_validated_threshold": {
            "c": chosen, "held_out_improvement": improvement, "p": p, "accepted": bool(p < ALPHA),
            "test": total(chosen) if p < ALPHA else float(sum(test[(models[t], t)] for t in tasks)),
        },
    }  # fmt: skip


def groups_against_all(val, test, tasks: list[str]) -> dict:
    """Every trained group's improvement over ALL on its members, validation against test (module docstring)."""
    everything = "|".join(tasks)
    all_test = float(sum(test[(everything, t)] for t in tasks))
    rows = []
    for group in dict.fromkeys(g for g, _ in val.index):
        members = group.split("|")
        if len(members) < 2 or group == everything:
            continue
        rows.append((group, len(members), float(sum(val[(everything, t)] - val[(group, t)] for t in members)),
                     float(sum(test[(everything, t)] - test[(group, t)] for t in members))))  # fmt: skip
    _, sizes, on_val, on_test = (np.array(c) for c in zip(*rows, strict=True))
    best = int(np.argmax(on_val))
    return {
        "groups": len(rows),
        "better_on_validation": int((on_val > 0).sum()),
        "better_on_test": int((on_test > 0).sum()),
        "largest_test_improvement": float(on_test.max()),
        "largest_test_improvement_share_of_all": float(on_test.max() / all_test),
        "best_on_validation": {"size": int(sizes[best]), "validation_improvement": float(on_val[best]),
                               "test_improvement": float(on_test[best])},
        "spearman_validation_test": float(stats.spearmanr(on_val, on_test).statistic),
    }  # fmt: skip


def replay(problem, store: str, seed: int) -> dict:
    tasks = list(problem.tasks)
    everything = "|".join(tasks)
    with Runs(problem, store, [seed]) as runs:
        table, rows = runs.table(), runs.validation_rows()
    means = table.mean().set_index(["group", "task"])
    val, test = means["val_loss"], means["test_loss"]
    options = {t: [g for g, u in means.index if u == t] for t in tasks}
    serving = serve(table, rows, seed=seed)
    default_name, default = default_models(table, rows)
    worst = max(tasks, key=lambda t: test[(everything, t)])
    return {
        "seed": seed,
        "models": int(table.frame["group"].nunique()),
        "validation_rows_per_task_median": float(np.median([len(rows[(t, t)]) for t in tasks])),
        "all": float(sum(test[(everything, t)] for t in tasks)),
        "stl": float(sum(test[(t, t)] for t in tasks)),
        "default": {"name": default_name, "test": float(sum(test[(default[t], t)] for t in tasks))},
        "stl_or_all_by_validation": float(sum(test[(min((t, everything), key=lambda g: val[(g, t)]), t)]
                                              for t in tasks)),
        "tasks_worse_on_all_than_stl": int(sum(test[(everything, t)] > test[(t, t)] for t in tasks)),
        "validation_pick": float(sum(test[(min(options[t], key=lambda g: val[(g, t)]), t)] for t in tasks)),
        "test_oracle": float(sum(min(test[(g, t)] for g in options[t]) for t in tasks)),
        "serve": float(sum(test[(g, t)] for t, g in serving.models().items())),
        "serve_moved_tasks": int(sum(g != default[t] for t, g in serving.models().items())),
        "serve_tasks_not_worse_than_default": float(np.mean([test[(g, t)] <= test[(default[t], t)] + 1e-12
                                                             for t, g in serving.models().items()])),
        "largest_test_loss_on_all": {"task": worst, "all": float(test[(everything, worst)]),
                                     "served": float(test[(serving.models()[worst], worst)])},
        "groups_against_all": groups_against_all(val, test, tasks),
        "serve_text": serving.text,
        **threshold_rules(table, rows, test, tasks, default, seed),
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
