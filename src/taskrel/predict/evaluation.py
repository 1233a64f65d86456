"""The evaluation protocol of gain predictors (ETAP paper, §4), on a measured `GainTable`.

1. A fixed held-out test set of groups (two or more tasks) is drawn once (by default a quarter
   of the measured groups other than the all-task group); the rest is the training pool, which
   always keeps the all-task group.
2. For every training size and repeat, training groups are drawn from the pool with the all-task
   group forced in; every method is fit and scored on the test groups by Pearson r and R² over the
   flattened (test group, member task) entries, and on group totals (the mean gain of a group's
   members, the quantity total-gain predictors predict). The pooled r rewards getting each task's
   level right as much as ranking the groups for a task, and the selection needs the latter, so
   each method also gets a within-task r: per task, Pearson r between predicted and measured gains
   across the test groups that hold it, averaged over tasks (a task in fewer than
   `MIN_TEST_GROUPS` test groups, or whose predictions or measurements are constant across them,
   is skipped; the number of tasks averaged is reported). Two constant baselines are scored the
   same way beside the methods, on the same draws: ``all_task_gain`` predicts for every test
   group each task's measured gain in the all-task group, and ``task_mean_gain`` each task's mean
   measured gain over the training groups of the draw that hold it. They are constant within a
   task by construction, so their within-task r is NaN (without a warning); their pooled r is the
   part of a method's pooled r that task levels alone explain. Methods that need every pair (HOA,
   the total-gain predictor) additionally see every measured pair (that is their cost); TAG uses
   no training group. A method whose predictions are constant has no correlation: r is NaN, with
   a `ConstantPredictionWarning` (likewise its within-task r when its predictions are constant
   within every task). For methods with a predictive standard deviation, the share of test entries
   within ±1σ and ±2σ of the prediction is reported (0.683 / 0.954 if calibrated).
3. Selection: each method, fitted on the validation gains of a training draw, predicts every
   measured group, and the pipeline's own decision (`taskrel.grouping.decision.decide`: STL, ALL
   and the draw's groups free, at most k new groups) chooses; the realised total test loss of the
   served models is read from the measured table (`realise`), next to the same decision made on
   the test losses themselves (an oracle), with every group measured on validation (what training
   every group would give a user), the default D, one all-task model and single-task learning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from taskrel.affinity.matrix import AffinityMatrix
from taskrel.choices import TEST_FRACTION
from taskrel.errors import ConfigError, DataError
from taskrel.gains import GainTable
from taskrel.grouping.decision import decide, default_models
from taskrel.groups import Group, group_name
from taskrel.predict.base import GainPredictor, gain_frame

#: Methods that use no training groups (their score does not depend on the training size).
UNSUPERVISED = ("tag",)
#: Fewest test groups holding a task for the task to count in the within-task correlation.
MIN_TEST_GROUPS = 3


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


def within_task_scores(
    predicted: np.ndarray, measured: np.ndarray, tasks: np.ndarray, method: str = "predictor", warn: bool = True
) -> dict[str, float]:
    """Mean over tasks of the Pearson r of predicted vs measured gains across the entries of each task.

    `tasks` names the task of every entry. A task with fewer than `MIN_TEST_GROUPS` entries, or whose
    predictions or measurements are all equal, is skipped. Returns ``within_task_pearson`` (NaN
    when every task is skipped) and ``within_task_count`` (the number of tasks averaged). With
    `warn`, a NaN caused by predictions constant within every task warns `ConstantPredictionWarning`.
    """
    predicted, measured, tasks = np.asarray(predicted, float), np.asarray(measured, float), np.asarray(tasks)
    correlations, constant = [], 0
    for task in dict.fromkeys(tasks.tolist()):
        rows = tasks == task
        if rows.sum() < MIN_TEST_GROUPS or np.ptp(measured[rows]) == 0:
            continue
        if np.ptp(predicted[rows]) == 0:
            constant += 1
            continue
        correlations.append(float(np.corrcoef(predicted[rows], measured[rows])[0, 1]))
    if not correlations and constant and warn:
        warnings.warn(f"{method}: predictions are constant within each of the {constant} task(s) held by "
                      f"{MIN_TEST_GROUPS} or more test groups, within-task correlation undefined (NaN)",
                      ConstantPredictionWarning, stacklevel=2)  # fmt: skip
    mean = float(np.mean(correlations)) if correlations else float("nan")
    return {"within_task_pearson": mean, "within_task_count": len(correlations)}


def coverage(predicted: np.ndarray, std: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Share of measured gains within ±1 and ±2 predictive standard deviations of the prediction."""
    distance = np.abs(measured - predicted)
    return {"coverage_1sd": float(np.mean(distance <= std)), "coverage_2sd": float(np.mean(distance <= 2 * std))}


def _score_draw(name: str, model: GainPredictor, test: Sequence[Group], truth: pd.DataFrame) -> dict[str, float]:
    """Entry-level, within-task and group-total scores (and calibration, if the model has a std) on the test groups.

    A model constant within each task by construction (the baselines) gets a NaN within-task r silently.
    """
    predicted = model.predict(test, return_std=model.has_std)
    merged = predicted.merge(truth, on=["group", "task"], suffixes=("_pred", ""))
    out = scores(merged["gain_pred"].to_numpy(), merged["gain"].to_numpy(), name)
    out.update(within_task_scores(merged["gain_pred"].to_numpy(), merged["gain"].to_numpy(), merged["task"].to_numpy(),
                                  name, warn=not getattr(model, "constant_per_task", False)))  # fmt: skip
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


class AllTaskGainBaseline(GainPredictor):
    """Baseline: each task's measured gain in the all-task group, whatever the group (a training group must be it)."""

    needs_affinity = False
    #: Constant within each task by construction: its within-task correlation is NaN without a warning.
    constant_per_task = True

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        rows = train[train["members"] == frozenset(self.tasks_)]
        if rows.empty:
            raise DataError("the all-task-gain baseline needs the all-task group among the training groups")
        self.gain_ = dict(zip(rows["task"], rows["gain"].astype(float), strict=True))

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        return rows["task"].map(self.gain_).to_numpy(float)


class TaskMeanGainBaseline(GainPredictor):
    """Baseline: each task's mean measured gain over the training groups (two or more tasks) holding it.

    A task in no such training group gets the mean of the other tasks' means.
    """

    needs_affinity = False
    #: Constant within each task by construction: its within-task correlation is NaN without a warning.
    constant_per_task = True

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        means = train.groupby("task")["gain"].mean()
        self.gain_ = {task: float(means.get(task, means.mean())) for task in self.tasks_}

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        return rows["task"].map(self.gain_).to_numpy(float)


#: The constant baselines `evaluate_predictors` scores beside the user's methods, by result key.
BASELINES: dict[str, Callable[[], GainPredictor]] = {
    "all_task_gain": AllTaskGainBaseline,
    "task_mean_gain": TaskMeanGainBaseline,
}


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
        return self.draw_and_fit(make, size, repeat)[1]

    def draw_and_fit(
        self, make: Callable[[], GainPredictor], size: int, repeat: int
    ) -> tuple[list[Group], GainPredictor]:
        """Draw `repeat` of `size` training groups, and a new model fitted on it (plus every pair if it needs them)."""
        drawn = draw_training(self.pool, size, np.random.default_rng([self.seed, size, repeat]))
        training = _subset(self.measured, drawn, self.tasks)
        model = make()
        if model.needs_pairs:
            training = pd.concat([training, self.pairs]).drop_duplicates(["group", "task"])
        return drawn, model.fit(self.affinity, training[["group", "task", "gain"]])


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
    """Correlation and R² of every method, and of the `BASELINES`, at every training size (mean and std over repeats).

    Per method and size: ``pearson``, ``r2`` (flattened test entries), ``within_task_pearson``
    (per-task r across test groups, averaged over the ``within_task_count`` tasks it could be
    computed for; the count is a mean over repeats), ``total_pearson``, ``total_r2`` (group
    totals), each score with a ``_std`` over repeats, and for methods with a predictive standard
    deviation ``coverage_1sd`` / ``coverage_2sd``. The result's ``methods`` also holds
    ``all_task_gain`` and ``task_mean_gain``, the constant-per-task baselines fit on the same
    draws (their within-task r is NaN). A mean over repeats is NaN when any repeat's value is
    (constant predictions).
    """
    clash = sorted(set(methods) & set(BASELINES))
    if clash:
        raise ConfigError(f"method name(s) {clash} are reserved for the baselines evaluate_predictors adds")
    protocol = _Protocol(table, affinity, test_size, seed)
    truth = _subset(protocol.measured, protocol.test, protocol.tasks)
    methods = {**methods, **BASELINES}
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
    """Mean of every score over repeats, with a ``_std`` for the correlation and R² scores.

    NaN propagates: a score that is NaN in any repeat has a NaN mean and std (no NumPy warning);
    counts (``within_task_count``) and coverages get no std.
    """
    out = {}
    for key in runs[0]:
        values = np.array([run[key] for run in runs], dtype=float)
        undefined = bool(np.isnan(values).any())
        out[key] = float("nan") if undefined else float(np.mean(values))
        if not key.startswith("coverage") and not key.endswith("_count"):
            out[f"{key}_std"] = float("nan") if undefined else float(np.std(values))
    return out


def realise(table: GainTable, trained: Sequence[Group], predicted: pd.DataFrame | None, n_groups: int) -> dict:
    """The pipeline's decision (`taskrel.grouping.decision.decide`) on a measured table, scored on test.

    `trained`: the groups already trained (their measured validation losses are free options, with
    every single task and the all-task group); `predicted`: gains (validation) of candidate groups.
    The chosen groups are then "trained" (read from `table`), and each task is served by its planned
    model with every trained model measured: the decision's plan on measured validation means
    (`table` holds no per-row losses, so the pipeline's significance test cannot run here).
    """
    tasks = list(table.tasks)
    decision = decide(trained_runs(table, trained), predicted, max_groups=n_groups)
    plan = decide(trained_runs(table, [*trained, *decision.groups]), None, max_groups=1).plan
    loss = table.mean().set_index(["group", "task"])["test_loss"]
    realised = {t: float(loss[(plan[t], t)]) for t in tasks}
    return {"groups": [group_name(g, tasks) for g in decision.groups], "default": decision.default,
            "serving": plan, "realised_loss": float(sum(realised.values())), "per_task": realised}  # fmt: skip


def trained_runs(table: GainTable, groups: Sequence[Group]) -> GainTable:
    """The runs of `table` for the single tasks, the all-task group and `groups`."""
    tasks = list(table.tasks)
    names = {group_name(g, tasks) for g in groups} | set(tasks) | {group_name(tasks, tasks)}
    frame = table.frame[table.frame["group"].isin(names)].reset_index(drop=True)
    return GainTable(frame, table.tasks, table.split)


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
    """Realised total test loss of the pipeline's decision with each method's predictions (Table 4 / 10 layout).

    Per method, repeat and k: the predictor is fitted on the validation gains of a training draw,
    predicts every measured group, and `realise` makes and scores the decision with at most k new
    groups. References: STL, one all-task model, the default D, the decision with every group
    measured on validation (what unlimited training gives) and the oracle (the same decision on
    test losses: the best served total with ≤ k groups, STL and ALL free).
    """
    val = table.with_split("val")
    protocol = _Protocol(val, affinity, test_size, seed)
    tasks = protocol.tasks
    every = [g for g in table.groups() if len(g) >= 2]
    stl = table.stl_loss()
    full = group_name(frozenset(tasks), tasks)
    loss = table.mean().set_index(["group", "task"])["test_loss"]
    out = {
        "stl": float(sum(stl.values())),
        "naive_mtl": float(sum(loss[(full, t)] for t in tasks)),
        "default": float(sum(loss[(g, t)] for t, g in default_models(table)[1].items())),
        "optimal": {str(k): realise_oracle(table, k) for k in group_counts},
        "measured_val": realise(table, every, None, 1)["realised_loss"],
        "methods": {},
    }
    jobs = [(name, r) for name in methods for r in range(repeats)]
    runs: dict[str, dict[int, list[float]]] = {name: {k: [] for k in group_counts} for name in methods}
    for name, r in tqdm(jobs, desc="selection", disable=None if progress else True):
        drawn, model = protocol.draw_and_fit(methods[name], train_size, r)
        prediction = model.predict(every)
        for k in group_counts:
            runs[name][k].append(realise(table, drawn, prediction, k)["realised_loss"])
    for name, by_k in runs.items():
        out["methods"][name] = {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in by_k.items()}
    return out


def realise_oracle(table: GainTable, k: int) -> float:
    """Best served total test loss with at most k groups beyond STL and ALL: the decision made on test losses.

    Every measured group is a candidate, with its measured test gain as the prediction.
    """
    tasks = list(table.tasks)
    on_test = GainTable(table.frame.assign(val_loss=table.frame["test_loss"]), table.tasks)
    truth = on_test.with_split("val").mean()[["group", "task", "gain"]]
    plan = decide(trained_runs(on_test, []), truth, max_groups=k).plan
    loss = table.mean().set_index(["group", "task"])["test_loss"]
    return float(sum(loss[(plan[t], t)] for t in tasks))


def measurable(
    methods: Mapping[str, Callable[[], GainPredictor]], table: GainTable
) -> tuple[dict[str, Callable[[], GainPredictor]], list[str]]:
    """`methods` without those that need every task pair measured where `table` lacks a pair; and the names dropped."""
    if not np.isnan(table.pairwise()).any():
        return dict(methods), []
    skipped = [name for name, make in methods.items() if make().needs_pairs]
    return {name: make for name, make in methods.items() if name not in skipped}, skipped
