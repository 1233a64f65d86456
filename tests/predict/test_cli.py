"""`taskrel evaluate-predictors` on a gain table that is not Chemical-sized."""

import json
import warnings

import numpy as np
import pytest

from taskrel.affinity import AffinityMatrix
from taskrel.cli import main
from taskrel.gains import GainTable
from taskrel.groups import all_groups, group_name
from taskrel.predict import TagPredictor
from taskrel.predict.evaluation import ConstantPredictionWarning, evaluate_predictors, split_groups

TASKS = tuple(f"t{i}" for i in range(7))


def hundred_group_table(seed=0):
    """The 7 singles, the all-task group and 99 other groups of seven tasks: 100 multi-task groups."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(scale=0.1, size=7)
    multi = [g for g in all_groups(TASKS, range(2, 7))]
    chosen = [multi[i] for i in sorted(rng.choice(len(multi), 99, replace=False))] + [frozenset(TASKS)]
    runs = []
    for g in [frozenset([t]) for t in TASKS] + chosen:
        losses = {t: 1.0 if len(g) == 1 else 1.0 - offset[TASKS.index(t)] - 0.01 * rng.normal() for t in g}
        runs.append((group_name(g, TASKS), 0, losses, losses))
    return GainTable.from_runs(runs, TASKS), AffinityMatrix(rng.normal(size=(7, 7)), TASKS)


def test_default_test_size_is_a_quarter_of_the_groups_and_the_cli_reports_default(tmp_path, capsys):
    table, affinity = hundred_group_table()
    pool, test = split_groups(table)
    assert len(test) == round(0.25 * 99) and len(pool) == 100 - len(test)
    table.to_csv(tmp_path / "gains.csv")
    affinity.to_csv(tmp_path / "affinity.csv")
    code = main(["evaluate-predictors", "--gains", str(tmp_path / "gains.csv"), "--affinity",
                 str(tmp_path / "affinity.csv"), "--methods", "default,surrogate", "--train-sizes", "5",
                 "--repeats", "2", "--json"])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"default", "surrogate", "all_task_gain", "task_mean_gain"}
    assert out["default"]["5"]["pearson"] > 0.8 and 0 <= out["default"]["5"]["coverage_2sd"] <= 1
    assert {"within_task_pearson", "within_task_pearson_std", "within_task_count"} <= set(out["default"]["5"])
    assert out["all_task_gain"]["5"]["within_task_count"] == 0


def test_text_output_shows_pooled_and_within_task_r(tmp_path, capsys):
    table, affinity = hundred_group_table()
    table.to_csv(tmp_path / "gains.csv")
    affinity.to_csv(tmp_path / "affinity.csv")
    code = main(["evaluate-predictors", "--gains", str(tmp_path / "gains.csv"), "--affinity",
                 str(tmp_path / "affinity.csv"), "--methods", "surrogate", "--train-sizes", "5,8",
                 "--repeats", "1"])  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {"surrogate", "all_task_gain", "task_mean_gain"}
    assert rows["surrogate"].count("r_task=") == 2 and rows["surrogate"].count("R²=") == 2
    assert "r_task=nan" in rows["all_task_gain"]


def test_unknown_method_is_one_config_error_line(tmp_path, capsys):
    code = main(["evaluate-predictors", "--gains", str(tmp_path / "missing.csv"), "--affinity",
                 str(tmp_path / "missing.csv"), "--methods", "default,etap2"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "'etap2'" in err and "default" in err


def test_constant_predictions_report_nan_with_a_warning():
    table, _ = hundred_group_table()
    flat = AffinityMatrix(np.zeros((7, 7)), TASKS)  # TAG then predicts 0 for every entry
    with pytest.warns(ConstantPredictionWarning, match="tag"):
        result = evaluate_predictors(table, flat, {"tag": TagPredictor}, (5,), repeats=1, progress=False)
    assert np.isnan(result["methods"]["tag"]["5"]["pearson"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantPredictionWarning)
        informative = AffinityMatrix(np.random.default_rng(1).normal(size=(7, 7)), TASKS)
        result = evaluate_predictors(table, informative, {"tag": TagPredictor}, (5,), repeats=1, progress=False)
    assert np.isfinite(result["methods"]["tag"]["5"]["pearson"])
