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
from taskrel.pipeline import PipelineError, run_pipeline
from taskrel.problem import load_problem

QUICK = load_problem("chemical", max_steps=200, patience_steps=0)


def stored(store):
    with sqlite3.connect(store) as db:
        return dict(((g, s), (v, t)) for g, s, v, t in db.execute(
            "SELECT grp, seed, val_loss, test_loss FROM runs WHERE status = 'done'"))  # fmt: skip


def test_pipeline_selects_trains_reports_and_resumes(tmp_path):
    result = run_pipeline(QUICK, tmp_path, train_groups=4, max_groups=2, budget=12, progress=False)
    assert 1 <= len(result.chosen) <= 2
    assert sum(len(g.split("|")) for g in result.chosen) <= 12  # the budget on Σ|G|
    for name in ("report.html", "report.md", "affinity.csv", "affinity.png", "losses.png"):
        assert (tmp_path / name).stat().st_size > 0
    # The reported totals, recomputed from the run store: each task is read from the chosen group
    # with its lowest validation loss; the selected total sums their test losses.
    runs = stored(tmp_path / "runs.db")
    total = 0.0
    for task in CHEMICAL_TASKS:
        options = [g for g in result.chosen if task in g.split("|")]
        best = min(options, key=lambda g: json.loads(runs[(g, 0)][0])[task])
        assert result.serving[task] == best
        total += json.loads(runs[(best, 0)][1])[task]
    assert abs(result.totals()["selected"] - total) < 1e-9
    everything = "|".join(CHEMICAL_TASKS)
    naive = sum(json.loads(runs[(everything, 0)][1])[t] for t in CHEMICAL_TASKS)
    assert abs(result.totals()["naive_mtl"] - naive) < 1e-9
    markdown = (tmp_path / "report.md").read_text()
    assert f"{result.totals()['selected']:.4f}" in markdown and "Provenance" in markdown

    before = stored(tmp_path / "runs.db")
    again = run_pipeline(QUICK, tmp_path, train_groups=4, max_groups=2, budget=12, progress=False)
    assert stored(tmp_path / "runs.db") == before  # nothing trained twice
    assert again.chosen == result.chosen


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
        assert group in summary["chosen"] and task in group.split("|")
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
    for task, group in result.serving.items():  # each task is read from its best chosen model on validation
        options = [g for g in result.chosen if task in g.split("|")]
        assert group == min(options, key=lambda g: json.loads(runs[(g, 0)][0])[task])
