"""The evaluation protocol of gain predictors (ETAP paper, §4), on a measured `GainTable`.

1. A fixed held-out test set of groups (two or more tasks) is drawn once (by default a quarter
   of the measured groups other than the all-task group); the rest is the training pool, which
   always keeps the all-task group.
2. For every training size and repeat, training groups are drawn from the pool with the all-task
   group forced in; every method is fit and scored on the test groups by Pearson r and R² over the
   flattened (test group, member task) entries, and on group totals (the mean gain of a group's
   members, the quantity total-gain predictors predict). Methods that need every pair (HOA, the
   total-gain predictor) additionally see every measured pair (that is their cost); TAG uses no
   training group. A method whose predictions are constant has no correlation: r is NaN, with a
   `ConstantPredictionWarning`. For methods with a predictive standard deviation, the share of
   test entries within ±1σ and ±2σ of the prediction is reported (0.683 / 0.954 if calibrated).
3. Selection: each method's predictions for every measured group feed the exact selector for k
   groups (each task served by its best chosen group, all tasks covered, minimising the predicted
   total loss L_STL(t)·(1 − ĝ)); the realised total test loss of the choice is read from the
   measured table, next to the choice made on the measured test gains themselves (the optimum among
   measured groups, an oracle), the choice made on measured validation gains (what training every
   group would give a user), one all-task model (naive MTL) and single-task learning.
"""

from __future__ import annotations

import warnings
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
#: Default share of the measured multi-task groups (all-task group aside) held out for testing.
TEST_FRACTION = 0.25


class ConstantPredictionWarning(UserWarning):
    """A method predicted the same gain for every test entry: its correlation is undefined (NaN)."""


def held_out_count(test_size: float, available: int) -> int:
    """Number of test groups: `test_size` itself if ≥ 1, else that fraction of `available` (at least 1)."""
    if not np.isfinite(test_size) or test_size <= 0 or (test_size >= 1 and test_size != int(test_size)):
        raise ConfigError(f"test_size must be a fraction in (0, 1) or a whole number of groups, got {test_size}")
    count = int(test_size) if test_size >= 1 else max(1, round(test_size * available))
    if not 0 < count < available:
        raise ConfigError(f"test_size must leave training groups: between 1 and {available - 1} of the "
                          f"{available} measured groups other than the all-task group, got {count}")  # fmt: skip
    return count


def split_groups(table: GainTable, test_size: float = TEST_FRACTION, seed: int = 0) -> tuple[list[Group], list[Group]]:
    """(training pool, fixed test groups) among the measured groups of two or more tasks.

    `test_size`: a number of groups (≥ 1) or a fraction in (0, 1) of the multi-task groups other
    than the all-task group (which is always in the pool).
    """
    groups = [g for g in table.groups() if len(g) >= 2]
    everything = frozenset(table.tasks)
    if everything not in groups:
        raise ConfigError("the protocol needs the all-task group measured (it is always a training group)")
    others = [g for g in groups if g != everything]
    test_size = held_out_count(test_size, len(others))
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


def scores(predicted: np.ndarray, measured: np.ndarray, method: str = "predictor") -> dict[str, float]:
    """Pearson r and R² of predicted vs measured gains; r is NaN (with a warning) for constant predictions."""
    if np.ptp(predicted) > 0:
        r = float(np.corrcoef(predicted, measured)[0, 1])
    else:
        warnings.warn(f"{method}: every prediction is {predicted[0]:.6g}, correlation undefined (NaN)",
                      ConstantPredictionWarning, stacklevel=2)  # fmt: skip
        r = float("nan")
    r2 = 1.0 - float(np.sum((measured - predicted) ** 2) / np.sum((measured - measured.mean()) ** 2))
    return {"pearson": r, "r2": r2}


def coverage(predicted: np.ndarray, std: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Share of measured gains within ±1 and ±2 predictive standard deviations of the prediction."""
    distance = np.abs(measured - predicted)
    return {"coverage_1sd": float(np.mean(distance <= std)), "coverage_2sd": float(np.mean(distance <= 2 * std))}


def _score_draw(name: str, model: GainPredictor, test: Sequence[Group], truth: pd.DataFrame) -> dict[str, float]:
    """Entry-level and group-total scores (and calibration, if the model has a std) on the test groups."""
    predicted = model.predict(test, return_std=model.has_std)
    merged = predicted.merge(truth, on=["group", "task"], suffixes=("_pred", ""))
    out = scores(merged["gain_pred"].to_numpy(), merged["gain"].to_numpy(), name)
    totals = merged.groupby("group")[["gain_pred", "gain"]].mean()
    total = scores(totals["gain_pred"].to_numpy(), totals["gain"].to_numpy(), f"{name} (group totals)")
    out.update(total_pearson=total["pearson"], total_r2=total["r2"])
    if model.has_std:
        out.update(coverage(merged["gain_pred"].to_numpy(), merged["gain_std"].to_numpy(), merged["gain"].to_numpy()))
    return out


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

    def __init__(self, table: GainTable, affinity: AffinityMatrix, test_size: float, seed: int) -> None:
        self.table, self.affinity, self.seed = table, affinity, seed
        self.tasks = list(table.tasks)
        self.measured = gain_frame(table, self.tasks)
        self.pool, self.test = split_groups(table, test_size, seed)
        self.pairs = self.measured[self.measured["members"].map(len) == 2]

    def fit(self, make: Callable[[], GainPredictor], size: int, repeat: int) -> GainPredictor:
        """Fit a new model on draw `repeat` of `size` training groups (plus every pair if it needs them)."""
        drawn = draw_training(self.pool, size, np.random.default_rng([self.seed, size, repeat]))
        training = _subset(self.measured, drawn, self.tasks)
        model = make()
        if model.needs_pairs:
            training = pd.concat([training, self.pairs]).drop_duplicates(["group", "task"])
        return model.fit(self.affinity, training[["group", "task", "gain"]])


def evaluate_predictors(
    table: GainTable,
    affinity: AffinityMatrix,
    methods: Mapping[str, Callable[[], GainPredictor]],
    train_sizes: Sequence[int] = (5, 10, 20, 40),
    repeats: int = 10,
    test_size: float = TEST_FRACTION,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Correlation and R² of every method at every training size (mean and std over repeats).

    Per method and size: ``pearson``, ``r2`` (flattened test entries), ``total_pearson``,
    ``total_r2`` (group totals), each with a ``_std`` over repeats, and for methods with a
    predictive standard deviation ``coverage_1sd`` / ``coverage_2sd``. A mean over repeats is NaN
    when any repeat's value is (constant predictions).
    """
    protocol = _Protocol(table, affinity, test_size, seed)
    truth = _subset(protocol.measured, protocol.test, protocol.tasks)
    raw: dict[str, dict[int, list[dict]]] = {name: {size: [] for size in train_sizes} for name in methods}
    jobs = [(size, r) for size in train_sizes for r in range(repeats)]
    for size, r in tqdm(jobs, desc="evaluate predictors", disable=None if progress else True):
        for name, make in methods.items():
            if name in UNSUPERVISED and r > 0:
                raw[name][size].append(raw[name][size][0])
                continue
            raw[name][size].append(_score_draw(name, protocol.fit(make, size, r), protocol.test, truth))
    out = {name: {str(size): _summary(runs) for size, runs in by_size.items()} for name, by_size in raw.items()}
    return {"methods": out, "test_groups": len(protocol.test), "pool_groups": len(protocol.pool),
            "repeats": repeats, "pairwise_affinity_vs_gain": pairwise_correlation(table, affinity)}  # fmt: skip


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every score over repeats, with a ``_std`` for the correlation and R² scores."""
    out = {}
    for key in runs[0]:
        values = np.array([run[key] for run in runs])
        out[key] = float(np.mean(values))
        if not key.startswith("coverage"):
            out[f"{key}_std"] = float(np.std(values))
    return out


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
    test_size: float = TEST_FRACTION,
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
        prediction = protocol.fit(methods[name], train_size, r).predict(candidates)
        for k in group_counts:
            runs[name][k].append(select_and_realise(table, prediction, k)["realised_loss"])
    for name, by_k in runs.items():
        out["methods"][name] = {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in by_k.items()}
    return out
