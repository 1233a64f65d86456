"""The evaluation protocol: splits, training draws, scores, and selection on measured tables."""

import itertools

import numpy as np
import pytest

from taskrel.affinity import AffinityMatrix
from taskrel.errors import ConfigError
from taskrel.gains import GainTable
from taskrel.groups import all_groups, group_name
from taskrel.predict import PREDICTORS
from taskrel.predict.evaluation import (
    draw_training,
    evaluate_predictors,
    pairwise_correlation,
    scores,
    select_and_realise,
    split_groups,
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


def test_selection_matches_brute_force_over_measured_groups():
    table, _ = measured_table()
    means = table.mean()
    truth = means[["group", "task", "gain"]]
    loss = means.set_index(["group", "task"]).test_loss
    candidates = [g for g in table.groups() if len(g) >= 2]
    for k in (2, 3):
        best = np.inf
        for r in range(1, k + 1):
            for combo in itertools.combinations(candidates, r):
                if set().union(*combo) != set(TASKS):
                    continue
                total = sum(min(loss[(group_name(g, TASKS), t)] for g in combo if t in g) for t in TASKS)
                best = min(best, total)
        assert select_and_realise(table, truth, k)["realised_loss"] == pytest.approx(best, rel=1e-9)


def test_protocol_runs_every_method_and_etap_learns(tmp_path):
    table, affinity = measured_table()
    result = evaluate_predictors(table, affinity, PREDICTORS, train_sizes=(5, 10), repeats=2, test_size=10,
                                 progress=False)  # fmt: skip
    assert set(result["methods"]) == set(PREDICTORS) and result["test_groups"] == 10
    assert result["methods"]["tag"]["5"] == result["methods"]["tag"]["10"]  # no training groups used
    assert result["methods"]["etap"]["10"]["pearson"] > 0.8
