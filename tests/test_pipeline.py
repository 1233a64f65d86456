"""The end-to-end pipeline on real Chemical data (short trainings), its report and its resumption."""

import sqlite3

from taskrel.data import CHEMICAL_TASKS
from taskrel.pipeline import run_pipeline
from taskrel.train import TrainConfig

QUICK = TrainConfig(max_steps=200, patience_steps=0)


def stored(store):
    with sqlite3.connect(store) as db:
        return dict(((g, s), (v, t)) for g, s, v, t in db.execute(
            "SELECT grp, seed, val_loss, test_loss FROM runs WHERE status = 'done'"))  # fmt: skip


def test_pipeline_selects_trains_reports_and_resumes(tmp_path):
    result = run_pipeline("chemical", tmp_path, train_groups=4, max_groups=2, budget=12, config=QUICK, progress=False)
    assert 1 <= len(result.chosen) <= 2
    assert sum(len(g.split("|")) for g in result.chosen) <= 12  # the budget on Σ|G|
    for name in ("report.html", "report.md", "affinity.csv", "affinity.png", "losses.png"):
        assert (tmp_path / name).stat().st_size > 0
    # The reported totals, recomputed from the run store: each task is read from the chosen group
    # with its lowest validation loss; the selected total sums their test losses.
    import json

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
    again = run_pipeline("chemical", tmp_path, train_groups=4, max_groups=2, budget=12, config=QUICK, progress=False)
    assert stored(tmp_path / "runs.db") == before  # nothing trained twice
    assert again.chosen == result.chosen
