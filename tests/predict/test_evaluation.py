"""The evaluation protocol: splits, training draws, scores, and selection on measured tables."""

import itertools
import warnings

import numpy as np
import pytest

from taskrel.affinity import AffinityMatrix
from taskrel.errors import ConfigError
from taskrel.gains import GainTable
from taskrel.groups import all_groups, group_name
from taskrel.predict import PREDICTORS, GainPredictor
from taskrel.predict.evaluation import (
    BASELINES,
    ConstantPredictionWarning,
    draw_training,
    evaluate_predictors,
    pairwise_correlation,
    realise,
    scores,
    split_groups,
    within_task_scores,
)

TASKS = ["a", "b", "c", "d", "e"]


def measured_table(seed=0):
    """Per-seed losses of every group of five tasks: STL loss × (1 − an affinity-driven gain)."""
    rng = np.random.default_rng(seed)
    affinity = AffinityMatrix(rng.normal(size=(5, 5)), tuple(TASKS))
    stl = rng.uniform(0.3, 0.7, size=5)
    runs = []
    for g in all_groups(TASKS):
        for s in range(2):
            losses = {}
            for t in g:
                gain = 0.0 if len(g) == 1 else 0.1 * np.tanh(affinity.incoming(g, t))
                losses[t] = stl[TASKS.index(t)] * (1 - gain) + rng.normal(scale=1e-3)
            runs.append((group_name(g, TASKS), s, losses, losses))
    return GainTable.from_runs(runs, TASKS), affinity


def test_split_keeps_the_all_task_group_for_training_and_is_seeded():
    table, _ = measured_table()
    pool, test = split_groups(table, 10, seed=3)
    assert pool[0] == frozenset(TASKS) and frozenset(TASKS) not in test
    assert len(test) == 10 and len(pool) == 26 - 10 and not set(pool) & set(test)
    assert all(len(g) >= 2 for g in pool + test)
    assert split_groups(table, 10, seed=3) == (pool, test) and split_groups(table, 10, seed=4)[1] != test
    drawn = draw_training(pool, 5, np.random.default_rng(0))
    assert drawn[0] == frozenset(TASKS) and len(set(drawn)) == 5 and set(drawn) <= set(pool)
    with pytest.raises(ConfigError, match="test_size"):
        split_groups(table, 40)


def test_scores_are_pearson_and_r2():
    rng = np.random.default_rng(1)
    y = rng.normal(size=50)
    p = y + rng.normal(scale=0.5, size=50)
    out = scores(p, y)
    assert out["pearson"] == pytest.approx(np.corrcoef(p, y)[0, 1])
    assert out["r2"] == pytest.approx(1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def test_pairwise_correlation_pairs_source_and_target_correctly():
    table, affinity = measured_table()
    pairs = table.pairwise()
    # the measured pair gain of t is 0.1·tanh(A[s, t]) up to noise: monotone in A[source, target]
    assert pairwise_correlation(table, affinity) > 0.95
    transposed = AffinityMatrix(affinity.values.T, affinity.tasks)
    assert pairwise_correlation(table, transposed) < pairwise_correlation(table, affinity) - 0.3
    assert np.isfinite(pairs[~np.eye(5, dtype=bool)]).all()


def test_selection_realises_the_brute_force_decision_over_measured_groups():
    """With every group's validation gain as the prediction, the decision is the set of ≤ k groups with the
    lowest served validation total (each task on the best of STL, ALL and the set), scored on test."""
    table, _ = measured_table()
    rng = np.random.default_rng(5)
    frame = table.frame.assign(test_loss=table.frame["val_loss"] + rng.normal(scale=0.02, size=len(table.frame)))
    table = GainTable(frame, table.tasks)
    val = frame.groupby(["group", "task"]).val_loss.mean()
    test = frame.groupby(["group", "task"]).test_loss.mean()
    everything = "|".join(TASKS)
    candidates = [group_name(g, TASKS) for g in table.groups() if 2 <= len(g) < 5]
    predicted = table.with_split("val").mean()[["group", "task", "gain"]]
    for k in (1, 2, 3):
        best = (np.inf, None)
        for r in range(k + 1):
            for combo in itertools.combinations(candidates, r):
                options = {t: [t, everything, *[g for g in combo if t in g.split("|")]] for t in TASKS}
                served = {t: min(options[t], key=lambda g, t=t: val[(g, t)]) for t in TASKS}
                best = min(best, (sum(val[(g, t)] for t, g in served.items()), served), key=lambda x: x[0])
        realised = sum(test[(g, t)] for t, g in best[1].items())
        assert realise(table, [], predicted, k)["realised_loss"] == pytest.approx(realised, rel=1e-9)


def test_protocol_runs_every_method_and_etap_learns(tmp_path):
    table, affinity = measured_table()
    result = evaluate_predictors(table, affinity, PREDICTORS, train_sizes=(5, 10), repeats=2, test_size=10,
                                 progress=False)  # fmt: skip
    assert set(result["methods"]) == set(PREDICTORS) | set(BASELINES) and result["test_groups"] == 10
    assert result["methods"]["tag"]["5"] == result["methods"]["tag"]["10"]  # no training groups used
    assert result["methods"]["etap"]["10"]["pearson"] > 0.8


class KnownPredictor(GainPredictor):
    """Predicts scale · measured gain + a per-task offset + a per-entry noise, read from `truth` (no learning)."""

    needs_affinity = False

    def __init__(self, truth=None, offset=None, scale=1.0, noise=None):
        self.truth = truth
        self.offset = offset
        self.scale = scale
        self.noise = noise

    def _fit(self, train, measured):
        pass

    def _predict(self, rows):
        noise = self.noise or {}
        return np.array([self.scale * self.truth[(g, t)] + self.offset[t] + noise.get((g, t), 0.0)
                         for g, t in zip(rows["group"], rows["task"], strict=True)])  # fmt: skip


def known_setup():
    """The five-task table, its test groups (10, seed 0), measured gains by (group, task) and prediction inputs."""
    table, affinity = measured_table()
    pool, test = split_groups(table, 10, seed=0)
    means = table.mean()
    truth = {(g, t): v for g, t, v in zip(means["group"], means["task"], means["gain"], strict=True)}
    offset = {t: 0.5 * k for k, t in enumerate(TASKS)}  # task levels far apart: pooled r well below 1
    rng = np.random.default_rng(7)
    noise = {key: float(rng.normal(scale=0.05)) for key in truth}
    return table, affinity, pool, test, truth, offset, noise


def entries_of(test, predict, truth):
    """(task, predicted, measured) of every (test group, member task) entry."""
    return [(t, predict(group_name(g, TASKS), t), truth[(group_name(g, TASKS), t)]) for g in test for t in sorted(g)]


def brute_within(entries):
    """Per-task np.corrcoef over the task's test entries (tasks in ≥ 3 of them), averaged; and the count."""
    values = []
    for task in TASKS:
        pred = [p for t, p, _ in entries if t == task]
        meas = [m for t, _, m in entries if t == task]
        if len(pred) >= 3:
            values.append(np.corrcoef(pred, meas)[0, 1])
    return float(np.mean(values)), len(values)


def test_within_task_r_is_the_per_task_correlation_averaged_over_tasks():
    table, affinity, _, test, truth, offset, noise = known_setup()
    methods = {
        "noisy": lambda: KnownPredictor(truth, offset, 1.0, noise),
        "shifted": lambda: KnownPredictor(truth, offset),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantPredictionWarning)  # the baselines are NaN silently
        result = evaluate_predictors(table, affinity, methods, (5,), repeats=1, test_size=10, progress=False)
    noisy, shifted = result["methods"]["noisy"]["5"], result["methods"]["shifted"]["5"]
    expected, count = brute_within(entries_of(test, lambda g, t: truth[(g, t)] + offset[t] + noise[(g, t)], truth))
    assert 0 < expected < 0.99 and count == 5
    assert noisy["within_task_pearson"] == pytest.approx(expected, rel=1e-12)
    assert noisy["within_task_count"] == count and "within_task_count_std" not in noisy
    assert shifted["within_task_pearson"] == pytest.approx(1.0) and shifted["pearson"] < 0.99
    assert shifted["within_task_pearson_std"] == 0.0


def test_per_task_constant_predictions_have_no_within_task_r_and_warn():
    table, affinity, _, _, truth, offset, _ = known_setup()
    with pytest.warns(ConstantPredictionWarning, match="levels: predictions are constant within"):
        result = evaluate_predictors(table, affinity, {"levels": lambda: KnownPredictor(truth, offset, 0.0)}, (5,),
                                     repeats=2, test_size=10, progress=False)  # fmt: skip
    levels = result["methods"]["levels"]["5"]
    assert np.isnan(levels["within_task_pearson"]) and np.isnan(levels["within_task_pearson_std"])
    assert levels["within_task_count"] == 0 and np.isfinite(levels["pearson"])


def test_baselines_match_hand_computed_scores_and_are_nan_within_task():
    table, affinity, pool, test, truth, _, _ = known_setup()
    full = group_name(TASKS, TASKS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_predictors(table, affinity, {}, (5, 10), repeats=2, test_size=10, progress=False)
    assert set(result["methods"]) == {"all_task_gain", "task_mean_gain"}
    entries = entries_of(test, lambda g, t: truth[(full, t)], truth)
    pred, meas = np.array([p for _, p, _ in entries]), np.array([m for _, _, m in entries])
    for size in ("5", "10"):
        level = result["methods"]["all_task_gain"][size]
        assert level["pearson"] == pytest.approx(np.corrcoef(pred, meas)[0, 1], rel=1e-12)
        assert level["r2"] == pytest.approx(1 - ((meas - pred) ** 2).sum() / ((meas - meas.mean()) ** 2).sum())
        assert level["pearson_std"] == pytest.approx(0.0, abs=1e-15)
        assert np.isnan(level["within_task_pearson"]) and level["within_task_count"] == 0
    # the task-mean baseline of draw (size 5, repeat 0): each task's mean gain over its drawn groups
    drawn = [group_name(g, TASKS) for g in draw_training(pool, 5, np.random.default_rng([0, 5, 0]))]
    mean = {t: np.mean([truth[(g, t)] for g in drawn if t in g.split("|")]) for t in TASKS}
    entries = entries_of(test, lambda g, t: mean[t], truth)
    one_draw = evaluate_predictors(table, affinity, {}, (5,), repeats=1, test_size=10, progress=False)
    by_hand = np.corrcoef([p for _, p, _ in entries], [m for _, _, m in entries])[0, 1]
    assert one_draw["methods"]["task_mean_gain"]["5"]["pearson"] == pytest.approx(by_hand, rel=1e-12)


def test_within_task_scores_skip_small_and_constant_tasks():
    tasks = np.array(["a"] * 4 + ["b"] * 2 + ["c"] * 3 + ["d"] * 3)
    measured = np.array([1.0, 2.0, 3.0, 5.0, 1.0, 2.0, 4.0, 4.0, 4.0, 1.0, 2.0, 3.0])
    predicted = np.array([1.0, 3.0, 2.0, 4.0, 2.0, 1.0, 1.0, 2.0, 3.0, 7.0, 7.0, 7.0])
    out = within_task_scores(predicted, measured, tasks, warn=False)  # b: 2 groups, c: constant measured, d: flat
    assert out["within_task_count"] == 1
    assert out["within_task_pearson"] == pytest.approx(np.corrcoef(predicted[:4], measured[:4])[0, 1])


def test_method_names_of_the_baselines_are_refused():
    table, affinity = measured_table()
    with pytest.raises(ConfigError, match="all_task_gain"):
        evaluate_predictors(table, affinity, {"all_task_gain": PREDICTORS["tag"]}, (5,), repeats=1, progress=False)
