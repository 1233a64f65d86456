"""The end-to-end pipeline on real Chemical data (short trainings), its report and its resumption."""

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from taskrel.data import CHEMICAL_TASKS
from taskrel.errors import ConfigError
from taskrel.pipeline import PipelineError, run_pipeline
from taskrel.problem import load_problem

QUICK = load_problem("chemical", max_steps=200, patience_steps=0)


def stored(store):
    with sqlite3.connect(store) as db:
        return dict(((g, s), (v, t)) for g, s, v, t in db.execute(
            "SELECT grp, seed, val_loss, test_loss FROM runs WHERE status = 'done'"))  # fmt: skip


def best_on_validation(task, chosen, runs):
    """The model serving `task` by the rule of safe serving, from the stored runs: the lowest validation
    loss among the chosen groups that contain it and its own STL run (which wins a tie)."""
    options = [task] + [g for g in chosen if task in g.split("|")]
    return min(options, key=lambda g: json.loads(runs[(g, 0)][0])[task])


def test_adaptive_pipeline_selects_trains_serves_safely_reports_and_resumes(tmp_path):
    result = run_pipeline(QUICK, tmp_path, train_groups=6, sampling="adaptive", max_groups=2, budget=12,
                          progress=False)  # fmt: skip
    assert len(result.chosen) <= 2 and all("|" in g for g in result.chosen)
    assert sum(len(g.split("|")) for g in result.chosen) <= 12  # the budget on Σ|G|
    for name in ("report.html", "report.md", "affinity.csv", "affinity.png", "losses.png", "training_groups.json"):
        assert (tmp_path / name).stat().st_size > 0
    plan = json.loads((tmp_path / "training_groups.json").read_text())
    assert plan["sampling"] == "adaptive" and len(plan["groups"]) == 6
    assert plan["groups"][0]["group"] == "|".join(CHEMICAL_TASKS)
    assert all("posterior draw" in g["reason"] or "uncertain" in g["reason"] for g in plan["groups"][4:])
    # The reported totals, recomputed from the run store: each task is read from its best model on
    # validation, its STL model included, so no task is served worse than STL on validation.
    runs = stored(tmp_path / "runs.db")
    assert {g["group"] for g in plan["groups"]} <= {g for g, _ in runs}
    total = 0.0
    for task in CHEMICAL_TASKS:
        best = best_on_validation(task, result.chosen, runs)
        assert result.serving[task] == best
        assert json.loads(runs[(best, 0)][0])[task] <= json.loads(runs[(task, 0)][0])[task]
        total += json.loads(runs[(best, 0)][1])[task]
    assert abs(result.totals()["selected"] - total) < 1e-9
    everything = "|".join(CHEMICAL_TASKS)
    naive = sum(json.loads(runs[(everything, 0)][1])[t] for t in CHEMICAL_TASKS)
    assert abs(result.totals()["naive_mtl"] - naive) < 1e-9
    markdown = (tmp_path / "report.md").read_text()
    assert f"{result.totals()['selected']:.4f}" in markdown and "Provenance" in markdown
    assert "Training groups" in markdown and "never worse than STL on validation" in markdown

    before = stored(tmp_path / "runs.db")
    again = run_pipeline(QUICK, tmp_path, train_groups=6, sampling="adaptive", max_groups=2, budget=12,
                         progress=False)  # fmt: skip
    assert stored(tmp_path / "runs.db") == before  # nothing trained twice
    assert again.chosen == result.chosen and again.training == result.training
    with pytest.raises(ConfigError, match="--sampling adaptive --seed 0, not random 0"):
        run_pipeline(QUICK, tmp_path, train_groups=6, max_groups=2, progress=False)


USER = str(Path(__file__).resolve().parent / "user_problems.py")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_user_problem_pipeline_from_the_command_line(tmp_path):
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "taskrel", "pipeline", "--problem", f"{USER}:forecast", "--train-groups", "2",
         "--max-groups", "2", "--out", str(out), "--json"],
        env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary["serving"]) == {"HUFL", "MUFL", "OT"}
    problem = load_problem(f"{USER}:forecast")
    for task, group in summary["serving"].items():
        assert group == task or (group in summary["chosen"] and task in group.split("|"))
    assert summary["sampling"] == "random" and len(summary["training_groups"]) == 2
    direct = {task: problem.train(group.split("|"), 0).test_loss[task] for task, group in summary["serving"].items()}
    assert summary["total_test_loss"]["selected"] == pytest.approx(sum(direct.values()), rel=1e-6)
    assert "etth1-window" in (out / "report.md").read_text()


@pytest.mark.parametrize(("bad", "stage"), [("OT", ""), ("HUFL|MUFL|OT", " for the affinity")])
def test_pipeline_stops_at_a_failed_training_and_names_it(tmp_path, monkeypatch, bad, stage):
    monkeypatch.setenv("TASKREL_TEST_BAD_GROUP", bad)
    message = rf"training {re.escape(bad)} \(seed 0\){stage} failed: RuntimeError: simulated divergence"
    with pytest.raises(PipelineError, match=message):
        run_pipeline(f"{USER}:exploding", tmp_path, train_groups=1, max_groups=2, progress=False)
    assert not (tmp_path / "report.md").exists()


@pytest.mark.slow
def test_landmine_pipeline_partitions_29_tasks_with_the_pairwise_program(tmp_path):
    problem = load_problem("landmine", max_steps=60, patience_steps=0, patience=2)
    result = run_pipeline(problem, tmp_path, train_groups=4, max_groups=4, time_limit=20, progress=False)
    assert len(problem.tasks) == 29
    members = sorted(t for group in result.chosen for t in group.split("|"))
    assert members == sorted(problem.tasks)  # a partition of all 29 tasks
    assert 1 <= len(result.chosen) <= 4 and "compact pairwise program" in result.selection
    pairs = result.predictions[result.predictions["group"].str.count(r"\|") == 1]
    assert pairs["group"].nunique() == 29 * 28 // 2
    runs = stored(tmp_path / "runs.db")
    for task, group in result.serving.items():  # each task is read from its best model on validation
        assert group == best_on_validation(task, result.chosen, runs)
