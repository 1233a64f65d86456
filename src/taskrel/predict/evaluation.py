"""The evaluation protocol of gain predictors (ETAP paper, §4), on a measured `GainTable`.

1. A fixed held-out test set of groups (two or more tasks) is drawn once; the rest is the
   training pool, which always keeps the all-task group.
2. For every training size and repeat, training groups are drawn from the pool with the all-task
   group forced in; every method is fit and scored on the test groups by Pearson r and R² over the
   flattened (test group, member task) entries. HOA additionally sees every measured pair (that is
   its cost); TAG uses no training group.
3. Selection: each method's predictions for every measured group feed the exact selector for k
   groups (each task served by its best chosen group, all tasks covered, minimising the predicted
   total loss L_STL(t)·(1 − ĝ)); the realised total test loss of the choice is read from the
   measured table, next to the choice made on the measured test gains themselves (the optimum among
   measured groups, an oracle), the choice made on measured validation gains (what training every
   group would give a user), one all-task model (naive MTL) and single-task learning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from taskrel.affinity.matrix import AffinityMatrix
from taskrel.errors import ConfigError
from taskrel.gains import GainTable
from taskrel.groups import Group, group_name
from taskrel.predict.base import GainPredictor, gain_frame
from taskrel.select import Constraints, GroupingProblem

#: Methods that use no training groups (their score does not depend on the training size).
UNSUPERVISED = ("tag",)


def split_groups(table: GainTable, test_size: int, seed: int = 0) -> tuple[list[Group], list[Group]]:
    """(training pool, fixed test groups) among the measured groups of two or more tasks."""
    groups = [g for g in table.groups() if len(g) >= 2]
    everything = frozenset(table.tasks)
    if everything not in groups:
        raise ConfigError("the protocol needs the all-task group measured (it is always a training group)")
    others = [g for g in groups if g != everything]
    if not 0 < test_size < len(others):
        raise ConfigError(f"test_size must be between 1 and {len(others) - 1}, got {test_size}")
    order = np.random.default_rng(seed).permutation(len(others))
    test = [others[i] for i in sorted(order[:test_size])]
    pool = [everything, *[others[i] for i in sorted(order[test_size:])]]
    return pool, test


def draw_training(pool: Sequence[Group], size: int, rng: np.random.Generator) -> list[Group]:
    """`size` training groups from `pool`, the all-task group (pool[0]) always among them."""
    if not 1 <= size <= len(pool):
        raise ConfigError(f"training size {size} out of range 1..{len(pool)}")
    picked = rng.choice(np.arange(1, len(pool)), size - 1, replace=False)
    return [pool[0], *[pool[i] for i in sorted(picked)]]


def scores(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Pearson r and R² of predicted vs measured gains."""
    r = float(np.corrcoef(predicted, measured)[0, 1]) if np.std(predicted) > 0 else 0.0
    r2 = 1.0 - float(np.sum((measured - predicted) ** 2) / np.sum((measured - measured.mean()) ** 2))
    return {"pearson": r, "r2": r2}


def pairwise_correlation(table: GainTable, affinity: AffinityMatrix) -> float:
    """Pearson r of affinity A[source, target] with the measured gain of target in {source, target}."""
    pair = table.pairwise()
    index = [affinity.tasks.index(t) for t in table.tasks]
    values = affinity.values[np.ix_(index, index)]
    mask = ~np.eye(len(index), dtype=bool) & np.isfinite(pair)
    return float(np.corrcoef(values[mask], pair[mask])[0, 1])


def _subset(frame: pd.DataFrame, groups: Sequence[Group], tasks: Sequence[str]) -> pd.DataFrame:
    names = {group_name(g, tasks) for g in groups}
    return frame[frame["group"].isin(names)]


class _Protocol:
    """The fixed split of a measured table, and the seeded training draws every method shares."""

    def __init__(self, table: GainTable, affinity: AffinityMatrix, test_size: int, seed: int) -> None:
        self.table, self.affinity, self.seed = table, affinity, seed
        self.tasks = list(table.tasks)
        self.measured = gain_frame(table, self.tasks)
        self.pool, self.test = split_groups(table, test_size, seed)
        self.pairs = self.measured[self.measured["members"].map(len) == 2]

    def fit(self, name: str, make: Callable[[], GainPredictor], size: int, repeat: int) -> GainPredictor:
        """Fit method `name` on draw `repeat` of `size` training groups (HOA also sees every pair)."""
        drawn = draw_training(self.pool, size, np.random.default_rng([self.seed, size, repeat]))
        training = _subset(self.measured, drawn, self.tasks)
        if name == "hoa":
            training = pd.concat([training, self.pairs]).drop_duplicates(["group", "task"])
        return make().fit(self.affinity, training[["group", "task", "gain"]])


def evaluate_predictors(
    table: GainTable,
    affinity: AffinityMatrix,
    methods: Mapping[str, Callable[[], GainPredictor]],
    train_sizes: Sequence[int] = (5, 10, 20, 40),
    repeats: int = 10,
    test_size: int = 230,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Correlation and R² of every method at every training size (mean and std over repeats)."""
    protocol = _Protocol(table, affinity, test_size, seed)
    truth = _subset(protocol.measured, protocol.test, protocol.tasks)
    raw: dict[str, dict[int, list[dict]]] = {name: {size: [] for size in train_sizes} for name in methods}
    jobs = [(size, r) for size in train_sizes for r in range(repeats)]
    for size, r in tqdm(jobs, desc="evaluate predictors", disable=None if progress else True):
        for name, make in methods.items():
            if name in UNSUPERVISED and r > 0:
                raw[name][size].append(raw[name][size][0])
                continue
            predicted = protocol.fit(name, make, size, r).predict(protocol.test)
            predicted = predicted.merge(truth, on=["group", "task"], suffixes=("_pred", ""))
            raw[name][size].append(scores(predicted["gain_pred"].to_numpy(), predicted["gain"].to_numpy()))
    out = {}
    for name, by_size in raw.items():
        out[name] = {}
        for size, runs in by_size.items():
            pearson = [s["pearson"] for s in runs]
            r2 = [s["r2"] for s in runs]
            out[name][str(size)] = {"pearson": float(np.mean(pearson)), "pearson_std": float(np.std(pearson)),
                                    "r2": float(np.mean(r2)), "r2_std": float(np.std(r2))}  # fmt: skip
    return {"methods": out, "test_groups": len(protocol.test), "pool_groups": len(protocol.pool),
            "repeats": repeats, "pairwise_affinity_vs_gain": pairwise_correlation(table, affinity)}  # fmt: skip


def select_and_realise(
    table: GainTable, predicted: pd.DataFrame, n_groups: int, serve: str = "val", time_limit: float | None = None
) -> dict:
    """Choose `n_groups` groups on predicted gains; return the choice and its realised test loss.

    `predicted` has columns group, task, gain for candidate groups (those measured in `table`).
    Once trained, each task is served by the chosen group with its lowest validation loss
    (``serve="val"``, what a user can do without touching test data) or as the selector assigned it
    (``serve="selection"``, used for the optimum computed on the measured gains themselves).
    """
    tasks = list(table.tasks)
    means = table.mean()
    stl = table.stl_loss()
    frame = predicted[predicted["group"].map(lambda g: len(str(g).split("|")) >= 2)].copy()
    frame["value"] = frame["task"].map(stl) * (1.0 - frame["gain"])
    problem = GroupingProblem.from_frame(
        frame[["group", "task", "value"]], sense="min", constraints=Constraints(max_groups=n_groups), tasks=tasks
    )
    selection = problem.solve(time_limit=time_limit)
    chosen = [g for g in selection.selected if g in set(selection.serving.values())]
    serving = table.serve(chosen) if serve == "val" else dict(selection.serving)
    loss = means.set_index(["group", "task"])["test_loss"]
    realised = {t: float(loss[(serving[t], t)]) for t in tasks}
    return {"groups": chosen, "serving": serving, "realised_loss": float(sum(realised.values())), "per_task": realised}


def selection_benchmark(
    table: GainTable,
    affinity: AffinityMatrix,
    methods: Mapping[str, Callable[[], GainPredictor]],
    train_size: int = 10,
    group_counts: Sequence[int] = (2, 3, 4),
    repeats: int = 6,
    test_size: int = 230,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Realised total test loss of the groups each method selects (Table 4 / 10 layout)."""
    protocol = _Protocol(table, affinity, test_size, seed)
    tasks = protocol.tasks
    candidates = [g for g in table.groups() if len(g) >= 2]
    truth = protocol.measured[["group", "task", "gain"]]
    stl = table.stl_loss()
    full = group_name(frozenset(tasks), tasks)
    loss = table.mean().set_index(["group", "task"])["test_loss"]
    out = {
        "stl": float(sum(stl.values())),
        "naive_mtl": float(sum(loss[(full, t)] for t in tasks)),
        "optimal": {
            str(k): select_and_realise(table, truth, k, serve="selection")["realised_loss"] for k in group_counts
        },
        "measured_val": {
            str(k): select_and_realise(table, table.with_split("val").mean(), k)["realised_loss"] for k in group_counts
        },
        "methods": {},
    }
    jobs = [(name, r) for name in methods for r in range(repeats)]
    runs: dict[str, dict[int, list[float]]] = {name: {k: [] for k in group_counts} for name in methods}
    for name, r in tqdm(jobs, desc="selection", disable=None if progress else True):
        prediction = protocol.fit(name, methods[name], train_size, r).predict(candidates)
        for k in group_counts:
            runs[name][k].append(select_and_realise(table, prediction, k)["realised_loss"])
    for name, by_k in runs.items():
        out["methods"][name] = {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in by_k.items()}
    return out
