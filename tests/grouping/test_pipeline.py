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
from taskrel.grouping.pipeline import run_pipeline
from taskrel.grouping.runs import TrainingFailed
from taskrel.problems.registry import load_problem

QUICK = load_problem("chemical", max_steps=200, patience_steps=0)


def stored(store):
    with sqlite3.connect(store) as db:
        return dict(((g, s), (v, t)) for g, s, v, t in db.execute(
            "SELECT grp, seed, val_loss, test_loss FROM runs WHERE status = 'done'"))  # fmt: skip


def total(runs, serving, split):
    """Total loss of a serving (task → group text) on `split` (0 = val, 1 = test), read from the store."""
    return sum(json.loads(runs[(group, 0)][split])[task] for task, group in serving.items())


def test_adaptive_pipeline_selects_trains_serves_safely_reports_and_resumes(tmp_path):
    result = run_pipeline(QUICK, tmp_path, train_groups=6, sampling="adaptive", max_groups=2, budget=12,
                          progress=False)  # fmt: skip
    assert len(result.chosen) <= 2 and all("|" in g for g in result.chosen)
    assert sum(len(g.split("|")) for g in result.chosen) <= 12  # the budget on Σ|G|
    written = ("report.html", "report.md", "affinity-validation.csv", "affinity.png", "losses.png")
    for name in (*written, "training_groups.json"):
        assert (tmp_path / name).stat().st_size > 0
    plan = json.loads((tmp_path / "training_groups.json").read_text())
    assert plan["sampling"] == "adaptive" and len(plan["groups"]) == 6
    everything = "|".join(CHEMICAL_TASKS)
    assert plan["groups"][0]["group"] == everything
    assert all("posterior draw" in g["reason"] or "uncertain" in g["reason"] for g in plan["groups"][4:])
    # Recomputed from the run store: D is ALL unless STL's total validation loss is lower (and
    # significantly so, which `test_decision` checks), and the served models' total validation loss
    # is never above D's, so never above ALL's.
    runs = stored(tmp_path / "runs.db")
    assert {g["group"] for g in plan["groups"]} <= {g for g, _ in runs}
    stl = {t: t for t in CHEMICAL_TASKS}
    naive = dict.fromkeys(CHEMICAL_TASKS, everything)
    default = stl if result.serving.default == "STL" else naive
    assert default is naive or total(runs, stl, 0) < total(runs, naive, 0)
    assert total(runs, result.served, 0) <= total(runs, default, 0) + 1e-9
    assert total(runs, result.served, 0) <= total(runs, naive, 0) + 1e-9
    for task, group in result.served.items():
        assert group == default[task] or ("p =" in result.serving.tasks[task].evidence and task in group.split("|"))
    assert result.totals()["selected"] == pytest.approx(total(runs, result.served, 1), rel=1e-12)
    assert result.totals()["naive_mtl"] == pytest.approx(total(runs, naive, 1), rel=1e-12)
    assert result.totals()["stl"] == pytest.approx(total(runs, stl, 1), rel=1e-12)
    assert set(result.seconds) >= {"stl", "affinity", "training_groups", "selection", "chosen_groups", "serving"}
    markdown = (tmp_path / "report.md").read_text()
    assert f"{result.totals()['selected']:.4f}" in markdown and "Provenance" in markdown
    assert "Training groups" in markdown and "every task starts on D" in markdown

    before = stored(tmp_path / "runs.db")
    again = run_pipeline(QUICK, tmp_path, train_groups=6, sampling="adaptive", max_groups=2, budget=12,
                         progress=False)  # fmt: skip
    assert stored(tmp_path / "runs.db") == before  # nothing trained twice
    assert again.chosen == result.chosen and again.training == result.training and again.served == result.served
    with pytest.raises(ConfigError, match="--sampling adaptive --seed 0, not random 0"):
        run_pipeline(QUICK, tmp_path, train_groups=6, max_groups=2, progress=False)


USER = str(Path(__file__).resolve().parents[1] / "user_problems.py")
SRC = str(Path(__file__).resolve().parents[2] / "src")


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
    assert summary["default"] in ("STL", "ALL")
    trained = {"HUFL", "MUFL", "OT", "HUFL|MUFL|OT", *summary["training_groups"], *summary["chosen"]}
    for task, group in summary["serving"].items():  # a trained model that contains the task
        assert group in trained and task in group.split("|")
    for group in summary["groups_taking_over"]:  # a trained group, serving its members (unless one moved on)
        assert group in trained and group in summary["serving"].values()
    assert summary["sampling"] == "random" and len(summary["training_groups"]) == 2
    direct = {task: problem.train(group.split("|"), 0).test_loss[task] for task, group in summary["serving"].items()}
    assert summary["total_test_loss"]["selected"] == pytest.approx(sum(direct.values()), rel=1e-6)
    assert "etth1-window" in (out / "report.md").read_text()


def test_pipeline_trains_its_groups_under_a_task_weighting(tmp_path, capsys):
    from taskrel.cli import main
    from taskrel.weighting.weighted import WeightedProblem, WeightingSpec

    out = tmp_path / "weighted"
    code = main(["pipeline", "--problem", f"{USER}:forecast", "--train-groups", "1", "--max-groups", "1",
                 "--task-weighting", "nash-mtl", "--out", str(out), "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    with sqlite3.connect(out / "runs.db") as db:
        fingerprint = dict(db.execute("SELECT key, value FROM meta"))["config"]
    assert "nash-mtl" in fingerprint  # the store's identity carries the weighting
    weighted = WeightedProblem(load_problem(f"{USER}:forecast"), WeightingSpec("nash-mtl"))
    everything = weighted.train(["HUFL", "MUFL", "OT"], 0)  # the all-task model, trained directly under Nash-MTL
    assert summary["total_test_loss"]["naive_mtl"] == pytest.approx(sum(everything.test_loss.values()), rel=1e-6)
    assert main(["pipeline", "--problem", f"{USER}:forecast", "--task-weighting", "auxinash", "--main", "OT",
                 "--out", str(tmp_path / "main")]) == 2  # fmt: skip
    assert "--main is for taskrel train and sweep" in capsys.readouterr().err


@pytest.mark.parametrize(("bad", "stage"), [("OT", ""), ("HUFL|MUFL|OT", " for the affinity")])
def test_pipeline_stops_at_a_failed_training_and_names_it(tmp_path, monkeypatch, bad, stage):
    monkeypatch.setenv("TASKREL_TEST_BAD_GROUP", bad)
    message = rf"training {re.escape(bad)} \(seed 0\){stage} failed: RuntimeError: simulated divergence"
    with pytest.raises(TrainingFailed, match=message):
        run_pipeline(f"{USER}:exploding", tmp_path, train_groups=1, max_groups=2, progress=False)
    assert not (tmp_path / "report.md").exists()


@pytest.mark.slow
def test_landmine_pipeline_chooses_among_a_pool_of_groups_for_29_tasks(tmp_path):
    problem = load_problem("landmine", max_steps=60, patience_steps=0, patience=2)
    result = run_pipeline(problem, tmp_path, train_groups=4, max_groups=4, time_limit=20, progress=False)
    assert len(problem.tasks) == 29 and len(result.chosen) <= 4
    pool = result.predictions["group"].nunique()
    assert 50 <= pool <= 2000 and "exact MILP" in result.decision.text
    runs = stored(tmp_path / "runs.db")
    stl = {t: t for t in problem.tasks}
    naive = dict.fromkeys(problem.tasks, "|".join(problem.tasks))
    assert total(runs, result.served, 0) <= min(total(runs, stl, 0), total(runs, naive, 0)) + 1e-9


def test_a_task_whose_validation_never_improves_is_named_and_nothing_fails(tmp_path):
    """The default (validation-weighted) affinity, on the CLI and in the pipeline, finishes and names the task."""
    cli = subprocess.run(
        [sys.executable, "-m", "taskrel", "affinity", "--problem", f"{USER}:shifted", "--method", "etap",
         "--out", str(tmp_path / "affinity")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "task(s) shift never improved" in cli.stderr
    result = run_pipeline(f"{USER}:shifted", tmp_path / "pipeline", train_groups=3, max_groups=1, progress=False)
    assert result.affinity.stalled == ("shift",)
    assert "task(s) shift never improved in the all-task run" in (tmp_path / "pipeline" / "report.md").read_text()
