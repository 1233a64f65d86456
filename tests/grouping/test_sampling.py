"""Training-group sampling: random and adaptive (Thompson sampling of the decision), replayed on data."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskrel.affinity import AffinityMatrix
from taskrel.errors import ConfigError, DataError
from taskrel.gains import GainTable
from taskrel.grouping.decision import candidate_groups, decide
from taskrel.grouping.sampling import ADAPTIVE_START, Pick, read_plan, thompson_picks, training_groups, write_plan
from taskrel.groups import group_name
from taskrel.predict import DefaultPredictor
from taskrel.train.sweep import stratified_groups

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def trained_part(table, groups):
    """The runs of the single tasks and of `groups` in a measured table."""
    names = {group_name(g, table.tasks) for g in groups} | set(table.tasks)
    return GainTable(table.frame[table.frame["group"].isin(names)].reset_index(drop=True), table.tasks, table.split)


def replay(table, affinity, count, sampling, batch=2, done=(), max_groups=3):
    """`training_groups` with 'training' read from a measured table; returns the picks and every record."""
    tasks, means, stl = list(table.tasks), table.mean(), table.stl_loss()
    records, trained = [], []

    def measure(groups):
        trained[:] = groups
        names = {group_name(g, tasks) for g in groups}
        return means[means.group.isin(names)][["group", "task", "gain"]]

    picks = training_groups(
        tasks, count, sampling, measure=measure, fit=lambda g: DefaultPredictor().fit(affinity, g),
        decide=lambda gains: decide(trained_part(table, trained), gains, max_groups=max_groups).groups, stl=stl,
        batch=batch, seed=0, done=done, record=records.append,
    )  # fmt: skip
    return picks, records


@pytest.fixture(scope="module")
def chemical():
    table = GainTable.read_csv(RESULTS / "chemical_gains.csv")
    return table, AffinityMatrix.read_csv(RESULTS / "chemical_affinity_etap_validation.csv")


def test_random_sampling_is_the_all_task_group_and_a_stratified_draw(chemical):
    table, affinity = chemical
    picks, records = replay(table, affinity, 10, "random")
    tasks = list(table.tasks)
    assert [p.group for p in picks] == [frozenset(tasks), *stratified_groups(tasks, 9, 0, range(2, len(tasks)))]
    assert [len(r) for r in records] == [1, 10]


def test_adaptive_sampling_on_chemical_adds_untrained_groups_in_batches_and_resumes(chemical):
    table, affinity = chemical
    tasks = list(table.tasks)
    picks, records = replay(table, affinity, 8, "adaptive", batch=2)
    groups = [p.group for p in picks]
    assert len(set(groups)) == 8 and groups[0] == frozenset(tasks)
    assert groups[1 : 1 + ADAPTIVE_START] == stratified_groups(tasks, ADAPTIVE_START, 0, range(2, len(tasks)))
    assert [len(r) for r in records] == [1, 4, 6, 8]  # recorded before each batch is trained
    assert all("posterior draw" in p.reason or "uncertain" in p.reason for p in picks[4:])
    # interrupted while the second batch trained (six groups recorded): the rerun continues with the same groups
    again, _ = replay(table, affinity, 8, "adaptive", batch=2, done=picks[:6])
    assert again == picks


def test_thompson_sampling_trains_the_group_the_decision_needs():
    """Tasks a and b help each other strongly and hurt every other task: the untrained pair a|b is
    what the selection is after, and the posterior learns it from the larger groups holding both."""
    tasks = ["a", "b", "c", "d", "e"]
    effect = np.full((5, 5), -0.04)
    effect[0, 1] = effect[1, 0] = 0.3

    def gain(group, t):
        return sum(effect[tasks.index(t), tasks.index(u)] for u in group if u != t)

    every = candidate_groups(tasks)
    rng = np.random.default_rng(0)
    trained = [g for g in every if g != frozenset("ab") and rng.random() < 0.5] + [frozenset("abc")]
    rows = [(group_name(g, tasks), t, gain(g, t) + rng.normal(0, 0.005)) for g in trained for t in sorted(g)]
    model = DefaultPredictor().fit(None, pd.DataFrame(rows, columns=["group", "task", "gain"]))
    stl = dict.fromkeys(tasks, 1.0)
    runs = [(t, 0, {t: 1.0}, {t: 1.0}) for t in tasks]
    runs += [(g, 0, {t: 1.0 - v}, {t: 1.0 - v}) for g, t, v in rows]
    merged = {}
    for g, s, val, test in runs:  # one run per group: its members' losses together
        merged.setdefault(g, (g, s, {}, {}))[2].update(val)
        merged[g][3].update(test)
    measured = GainTable.from_runs(list(merged.values()), tasks)
    picks = thompson_picks(model, every, set(trained), lambda g: decide(measured, g, max_groups=1).groups,
                           stl, count=1, seed=0)  # fmt: skip
    assert [p.group for p in picks] == [frozenset("ab")] and "posterior draw" in picks[0].reason


def test_the_plan_file_round_trips_and_refuses_another_sampling(tmp_path):
    tasks = ["a", "b", "c"]
    path = tmp_path / "training_groups.json"
    assert read_plan(path, "adaptive", 0, tasks) == []
    picks = [Pick(frozenset(tasks), "all tasks"), Pick(frozenset("ac"), "chosen by the selection under draw 2")]
    write_plan(path, "adaptive", 0, picks, tasks)
    assert read_plan(path, "adaptive", 0, tasks) == picks
    assert json.loads(path.read_text())["groups"][1]["group"] == "a|c"
    with pytest.raises(ConfigError, match="--sampling adaptive --seed 0, not random 0"):
        read_plan(path, "random", 0, tasks)
    path.write_text('{"sampling": "adaptive", "seed": 0, "groups": [{"group": "a|z", "reason": "x"}]}')
    with pytest.raises(DataError, match=r"training_groups\.json"):
        read_plan(path, "adaptive", 0, tasks)
    path.write_text("not json")
    with pytest.raises(DataError, match="not a training plan"):
        read_plan(path, "adaptive", 0, tasks)


def test_random_sampling_of_many_tasks_never_enumerates_and_adaptive_refuses_them():
    tasks = [f"t{i}" for i in range(30)]  # 2^30 groups: enumerating them would not finish
    measured = []

    def measure(groups):
        measured.append(len(groups))
        return pd.DataFrame(columns=["group", "task", "gain"])

    options = dict(measure=measure, fit=None, decide=None, stl=dict.fromkeys(tasks, 1.0))
    picks = training_groups(tasks, 6, "random", **options)
    assert len(picks) == 6 and measured == [6]
    with pytest.raises(ConfigError, match="at most 14 tasks, got 30"):
        training_groups(tasks, 6, "adaptive", **options)
