"""The one decision rule (against brute force) and evidence-based serving (never worse than STL or ALL)."""

import itertools
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from taskrel.errors import DataError
from taskrel.gains import GainTable
from taskrel.grouping.decision import candidate_groups, decide, default_models, serve
from taskrel.groups import group_name

TASKS = ("a", "b", "c", "d", "e")
EVERYTHING = "a|b|c|d|e"


def measured_table(seed, trained=("a|b", "c|d|e")):
    """STL, ALL and `trained` groups with random validation and test losses around 1."""
    rng = np.random.default_rng(seed)
    runs = [(t, 0, {t: 1.0 + 0.1 * i}, {t: 1.0 + 0.1 * i}) for i, t in enumerate(TASKS)]
    for group in (EVERYTHING, *trained):
        members = group.split("|")
        runs.append((group, 0, {t: float(rng.uniform(0.8, 1.3)) for t in members},
                     {t: float(rng.uniform(0.8, 1.3)) for t in members}))  # fmt: skip
    return GainTable.from_runs(runs, TASKS)


def random_predictions(seed, table):
    rng = np.random.default_rng(seed + 100)
    trained = set(table.frame["group"])
    rows = [(group_name(g, TASKS), t, rng.normal(0.0, 0.15)) for g in candidate_groups(TASKS) for t in sorted(g)]
    frame = pd.DataFrame(rows, columns=["group", "task", "gain"])
    return frame[~frame["group"].isin(trained)].reset_index(drop=True)


def brute_force(table, predicted, max_groups, budget):
    """Lowest planned total validation loss over every set of ≤ max_groups untrained candidates.

    Written from the rule's statement: each task takes the best of D, every trained model (measured) and
    every chosen candidate (predicted loss L_STL·(1 − ĝ)).
    """
    val = table.frame.groupby(["group", "task"])["val_loss"].mean()
    stl = {t: val[(t, t)] for t in TASKS}
    everything_total = sum(val[(EVERYTHING, t)] for t in TASKS)
    home = {t: (EVERYTHING if everything_total < sum(stl.values()) else t) for t in TASKS}
    free = {t: min(v for (g, task), v in val.items() if task == t) for t in TASKS}
    free = {t: min(free[t], val[(home[t], t)]) for t in TASKS}
    loss = {(g, t): stl[t] * (1 - v) for g, t, v in predicted.itertuples(index=False)}
    groups = sorted(set(predicted["group"]))
    best = sum(free.values())
    for k in range(1, max_groups + 1):
        for chosen in itertools.combinations(groups, k):
            if budget is not None and sum(g.count("|") + 1 for g in chosen) > budget:
                continue
            total = sum(min([free[t]] + [loss[(g, t)] for g in chosen if t in g.split("|")]) for t in TASKS)
            best = min(best, total)
    return best


@pytest.mark.parametrize(("seed", "max_groups", "budget"), [(0, 1, None), (1, 2, None), (2, 2, 5), (3, 3, 6)])
def test_decision_is_the_brute_force_optimum_with_every_trained_model_free(seed, max_groups, budget):
    table = measured_table(seed)
    predicted = random_predictions(seed, table)
    decision = decide(table, predicted, max_groups=max_groups, budget=budget)
    assert sum(decision.planned_loss.values()) == pytest.approx(brute_force(table, predicted, max_groups, budget))
    assert len(decision.groups) <= max_groups and all(len(g) >= 2 for g in decision.groups)
    trained = set(table.frame["group"])
    assert not {group_name(g, TASKS) for g in decision.groups} & trained  # trained groups cost nothing
    if budget is not None:
        assert sum(len(g) for g in decision.groups) <= budget
    assert decision.reduction >= -1e-12


def test_default_is_the_better_of_stl_and_all_on_validation():
    runs = [(t, 0, {t: 1.0}, {t: 1.0}) for t in TASKS]
    better = GainTable.from_runs([*runs, (EVERYTHING, 0, dict.fromkeys(TASKS, 0.9), dict.fromkeys(TASKS, 2.0))], TASKS)
    assert default_models(better) == ("ALL", dict.fromkeys(TASKS, EVERYTHING))
    worse = GainTable.from_runs([*runs, (EVERYTHING, 0, dict.fromkeys(TASKS, 1.1), dict.fromkeys(TASKS, 0.1))], TASKS)
    assert default_models(worse) == ("STL", {t: t for t in TASKS})
    assert default_models(GainTable.from_runs(runs, TASKS))[0] == "STL"  # no all-task model measured


def test_the_default_goes_to_all_unless_stl_is_better_on_evidence():
    rng = np.random.default_rng(0)
    slightly, clearly = [1.0] * 5, [0.5] * 5
    table, rows = table_with_rows(slightly, [1.02] * 5, [], 40, rng, noise=0.5)  # STL 5.0 vs ALL 5.1, noisy rows
    assert default_models(table) == ("STL", {t: t for t in TASKS})  # totals alone: STL
    assert default_models(table, rows)[0] == "ALL"  # a tie on noisy rows goes to the one model
    table, rows = table_with_rows(clearly, [1.0] * 5, [], 40, rng, noise=0.5)
    z = -2.5 / np.sqrt(sum(np.var(rows[(t, t)] - rows[(EVERYTHING, t)], ddof=1) / 40 for t in TASKS))
    assert z < -1.645 and default_models(table, rows)[0] == "STL"


def test_nothing_new_is_chosen_when_no_candidate_beats_the_free_models():
    table = measured_table(4)
    predicted = random_predictions(4, table).assign(gain=-1.0)
    decision = decide(table, predicted, max_groups=2)
    assert decision.groups == [] and "no candidate" in decision.text


def rows_for(table, rng, noise=0.3, n=40):
    """Per-row validation losses whose mean is the table's validation loss of each (group, task)."""
    out = {}
    for (group, task), value in table.frame.groupby(["group", "task"])["val_loss"].mean().items():
        x = rng.normal(0.0, noise, n)
        out[(group, task)] = value + x - x.mean()
    return out


def table_with_rows(stl, everything, groups, n, rng, noise):
    runs = [(t, 0, {t: stl[i]}, {t: stl[i]}) for i, t in enumerate(TASKS)]
    runs.append((EVERYTHING, 0, dict(zip(TASKS, everything, strict=True)), dict(zip(TASKS, everything, strict=True))))
    for group, values in groups:
        members = group.split("|")
        runs.append((group, 0, dict(zip(members, values, strict=False)), dict(zip(members, values, strict=False))))
    table = GainTable.from_runs(runs, TASKS)
    return table, rows_for(table, rng, noise, n)


losses = st.lists(st.floats(0.2, 3.0), min_size=5, max_size=5)


@settings(max_examples=60, deadline=None)
@given(stl=losses, everything=losses, first=losses, second=losses, noise=st.floats(0.0, 1.0),
       n=st.integers(4, 30), seed=st.integers(0, 10))  # fmt: skip
def test_served_validation_loss_is_never_above_stl_or_all(stl, everything, first, second, noise, n, seed):
    rng = np.random.default_rng(seed)
    table, rows = table_with_rows(stl, everything, [("a|b|c", first[:3]), ("b|d|e", second[:3])], n, rng, noise)
    serving = serve(table, rows, seed=seed)
    val = table.frame.groupby(["group", "task"])["val_loss"].mean()
    served = sum(val[(s.model, t)] for t, s in serving.tasks.items())
    assert served <= sum(everything) + 1e-9
    differences = np.concatenate([rows[(t, t)] - rows[(EVERYTHING, t)] for t in TASKS]).reshape(len(TASKS), n)
    spread = np.sqrt((differences.var(axis=1, ddof=1) / n).sum())
    if spread == 0 or stats.norm.cdf(differences.mean(axis=1).sum() / spread) < 0.05:  # STL better on evidence
        assert served <= sum(stl) + 1e-9
    assert serve(table, None).models() == default_models(table)[1]  # no evidence: everything stays on D


def test_a_task_moves_only_on_evidence():
    rng = np.random.default_rng(0)
    stl, everything = [1.0] * 5, [0.9] * 5  # D = ALL
    table, rows = table_with_rows(stl, everything, [("a|b|c", [0.5, 1.2, 1.2])], 200, rng, noise=0.05)
    serving = serve(table, rows)
    assert serving.default == "ALL" and serving.accepted
    assert serving.tasks["a"].model == "a|b|c" and serving.tasks["a"].moved  # far better on every row
    assert serving.tasks["b"].model == EVERYTHING  # worse in the group: stays on D (so does the group as a whole)
    assert "p =" in serving.tasks["a"].evidence and "moved with its group" not in serving.tasks["a"].evidence


def test_a_group_better_for_its_members_together_serves_them_all():
    """Each member gains 0.05 ± 0.3 per row: too little for its own rows, significant over the group's."""
    n, group = 120, "a|b|c|d"
    table, rows = table_with_rows([2.0] * 5, [1.0] * 5, [(group, [0.95] * 4)], n, np.random.default_rng(0), 0.0)
    for index, t in enumerate("abcd"):
        order = np.random.default_rng([0, index]).permutation(n)  # the task's selection and check halves (seed 0)
        gain = np.empty(n)
        gain[order[: n // 2]] = gain[order[n // 2 :]] = 0.05 + 0.3 * np.tile([1.0, -1.0], n // 4)
        rows[(EVERYTHING, t)], rows[(group, t)] = np.ones(n), 1.0 - gain
        assert stats.ttest_1samp(gain, 0.0, alternative="greater").pvalue > 0.025 / 2  # its own rows: no move
    serving = serve(table, rows, seed=0)
    assert [serving.tasks[t].model for t in TASKS] == [group] * 4 + [EVERYTHING]
    assert all("moved with its group of 4 tasks" in serving.tasks[t].evidence for t in "abcd")
    assert list(serving.groups) == [group] and "1 group(s) took over" in serving.text


def test_disjoint_groups_take_over_in_turn_until_one_fails():
    rng = np.random.default_rng(0)
    groups = [("a|b", [0.5, 0.5]), ("b|c|d", [0.4, 0.4, 0.4]), ("d|e", [0.7, 0.7]), ("c|e", [0.9, 0.9])]
    table, rows = table_with_rows([2.0] * 5, [1.0] * 5, groups, 60, rng, noise=0.05)
    serving = serve(table, rows, seed=0)
    # best first: b|c|d (gain 1.8), then a|b overlaps it, d|e overlaps, c|e overlaps: one group; "a" stays on ALL
    # unless its own rows move it (to a|b: far better on every row, and a|b serves it in the second stage)
    assert list(serving.groups) == ["b|c|d"]
    assert [serving.tasks[t].model for t in "bcd"] == ["b|c|d"] * 3
    assert serving.tasks["a"].model == "a|b" and "moved with its group" not in serving.tasks["a"].evidence
    groups = [("a|b", [0.5, 0.5]), ("c|d", [0.4, 0.4]), ("d|e", [1.0, 1.0])]
    table, rows = table_with_rows([2.0] * 5, [1.0] * 5, groups, 60, rng, noise=0.05)
    serving = serve(table, rows, seed=0)
    assert list(serving.groups) == ["c|d", "a|b"]  # both better: taken in turn; d|e is no better: ends the sequence
    assert serving.tasks["e"].model == EVERYTHING


def null_servings(draws):
    """`serve` on `draws` draws of rows where every model equals ALL in distribution (STL far worse: D = ALL)."""
    runs = [(t, 0, {t: 1.0}, {t: 1.0}) for t in TASKS]
    groups = (EVERYTHING, "a|b|c", "b|c|d|e", "a|e")
    runs += [(g, 0, dict.fromkeys(g.split("|"), 1.0), dict.fromkeys(g.split("|"), 1.0)) for g in groups]
    table = GainTable.from_runs(runs, TASKS)
    for draw in range(draws):
        rng = np.random.default_rng(draw)
        rows = {(g, t): 1.0 + rng.normal(0.0, 0.3, 30) for g in (*TASKS, *groups) for t in g.split("|")}
        for t in TASKS:
            rows[(t, t)] += 1.0
        yield serve(table, rows, seed=draw)


def test_groups_no_better_than_d_take_over_at_most_at_the_tests_level():
    """Over 400 null draws a group takes over in ≤ 2.5 % (+ 3 s.e.), the level of serve's first stage."""
    taken = sum(bool(serving.groups) for serving in null_servings(400))
    assert taken / 400 <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 400)


def test_noise_alone_moves_nothing_at_more_than_the_tests_level():
    """Over 300 null draws serving moves a group or a task in ≤ 5 % (+ 3 s.e.); a proposed single-task move
    that is not significant in cross-validation is refused and says so."""
    moved = proposed = 0
    for serving in null_servings(300):
        moved += any(s.moved for s in serving.tasks.values())
        not_taken = [s for s in serving.tasks.values() if "not taken" in s.evidence]
        proposed += bool(not_taken)
        assert all(not s.moved or s.model in serving.groups for s in not_taken)  # stays on its model
    assert moved / 300 <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300)
    assert proposed > 0  # moves were proposed on noise, and refused


def test_validation_rows_of_different_lengths_are_refused():
    rng = np.random.default_rng(0)
    table, rows = table_with_rows([1.0] * 5, [0.9] * 5, [("a|b", [0.5, 0.9])], 20, rng, noise=0.05)
    rows[("a|b", "a")] = rows[("a|b", "a")][:10]
    with pytest.raises(DataError, match=r"validation rows of task 'a': 20 under 'a\|b\|c\|d\|e', 10 under 'a\|b'"):
        serve(table, rows)


def test_the_pipeline_and_the_selection_benchmark_share_one_decision():
    from taskrel.grouping import decision, pipeline, sampling
    from taskrel.predict import evaluation

    assert pipeline.decide is decision.decide and evaluation.decide is decision.decide
    assert pipeline.serve is decision.serve
    assert sampling.candidate_groups is decision.candidate_groups


def test_bad_predictions_are_refused_naming_the_problem():
    table = measured_table(0)
    good = random_predictions(0, table)
    with pytest.raises(DataError, match=r"predicted gains lack column\(s\) \['gain'\]"):
        decide(table, good.drop(columns="gain"), max_groups=1)
    with pytest.raises(DataError, match=r"no STL run for task\(s\) \['z'\]"):
        decide(table, pd.concat([good, pd.DataFrame({"group": ["a|z"], "task": ["z"], "gain": [0.1]})]), max_groups=1)
    bad = good.copy()
    bad.loc[0, "gain"] = float("nan")
    message = f"predicted gain of task '{bad.task[0]}' in group '{bad.group[0]}' is not finite"
    with pytest.raises(DataError, match=re.escape(message)):
        decide(table, bad, max_groups=1)
