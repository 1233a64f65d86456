"""Sweeps: samplers, resumability under SIGKILL, failures, executors, store safety."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskrel.data import CHEMICAL_TASKS
from taskrel.errors import ConfigError, DataError, StoreError
from taskrel.gains import GainTable
from taskrel.groups import parse_group
from taskrel.train import TrainConfig
from taskrel.train import sweep as sweep_module
from taskrel.train.store import RunKey, RunStore
from taskrel.train.sweep import plan_runs, run_sweep, sample_groups, stratified_groups

TINY = TrainConfig(max_steps=25, patience_steps=0)
GROUPS = ["87|55", "80|55", "81|87|55"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_stratified_groups_are_distinct_seeded_and_spread_over_sizes():
    groups = stratified_groups(CHEMICAL_TASKS, 400, seed=1)
    assert len(set(groups)) == 400
    per_size = {s: sum(len(g) == s for g in groups) for s in range(2, 11)}
    available = {s: math.comb(10, s) for s in per_size}
    full = [s for s in per_size if per_size[s] == available[s]]
    assert full == [2, 8, 9, 10]  # sizes with fewer groups than an even share give all they have
    partial = [per_size[s] for s in per_size if s not in full]
    assert max(partial) - min(partial) <= 1 and min(partial) > max(per_size[s] for s in full)
    assert stratified_groups(CHEMICAL_TASKS, 400, seed=1) == groups
    assert stratified_groups(CHEMICAL_TASKS, 400, seed=2) != groups
    with pytest.raises(ConfigError, match="only 1013"):
        stratified_groups(CHEMICAL_TASKS, 2000)


def test_group_specs(tmp_path):
    assert len(sample_groups(CHEMICAL_TASKS, "all")) == 1023
    assert len(sample_groups(CHEMICAL_TASKS, "pairs")) == 45
    assert len(sample_groups(CHEMICAL_TASKS, "size:2,3")) == 45 + 120
    (tmp_path / "g.txt").write_text("87|55\n\n55|87\n83\n")
    assert sample_groups(CHEMICAL_TASKS, str(tmp_path / "g.txt")) == [frozenset({"87", "55"}), frozenset({"83"})]
    (tmp_path / "g.csv").write_text("group,note\n87|55,x\n83|99,y\n")
    with pytest.raises(Exception, match=r"g\.csv line 3"):
        sample_groups(CHEMICAL_TASKS, str(tmp_path / "g.csv"))
    with pytest.raises(ConfigError, match="unknown group spec"):
        sample_groups(CHEMICAL_TASKS, "triples")


def test_singles_are_always_planned_first():
    keys = plan_runs(CHEMICAL_TASKS, [parse_group("87|55", CHEMICAL_TASKS)], [0, 1])
    assert [k.group for k in keys] == ["87", "87", "55", "55", "87|55", "87|55"]


def sweep_cli(store, workers=2, extra=()):
    groups_file = Path(store).with_suffix(".groups")
    groups_file.write_text("\n".join(GROUPS))
    return [
        sys.executable,
        "-m",
        "taskrel",
        "sweep",
        "--dataset",
        "chemical",
        "--groups",
        str(groups_file),
        "--seeds",
        "2",
        "--store",
        str(store),
        "--workers",
        str(workers),
        "--max-steps",
        "25",
        "--patience-steps",
        "0",
        "--quiet",
        *extra,
    ]


def done_rows(store):
    with sqlite3.connect(store) as db:
        return db.execute("SELECT grp, seed, status, test_loss FROM runs ORDER BY grp, seed").fetchall()


def test_sigkill_at_random_moments_then_resume_loses_and_repeats_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    reference = tmp_path / "reference.db"
    subprocess.run(sweep_cli(reference), env=env, check=True, timeout=300)
    store = tmp_path / "killed.db"
    progress = []
    for delay in (2.5, 4.0, 5.5):
        process = subprocess.Popen(sweep_cli(store), env=env, start_new_session=True)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        progress.append(sum(r[2] == "done" for r in done_rows(store)) if store.exists() else 0)
    assert progress == sorted(progress)
    subprocess.run(sweep_cli(store), env=env, check=True, timeout=300)
    rows, expected = done_rows(store), done_rows(reference)
    assert len(expected) == (len(GROUPS) + 4) * 2  # groups plus the singles 80, 81, 87, 55; two seeds
    assert rows == expected  # one done row per (group, seed), same losses as the uninterrupted sweep
    again = subprocess.run([*sweep_cli(store), "--json"], env=env, check=True, capture_output=True, text=True)
    assert json.loads(again.stdout)["done"] == 0 and "nothing to do" in json.loads(again.stdout)["message"]


def test_failed_run_is_recorded_skipped_and_retried(tmp_path, monkeypatch):
    real = sweep_module.Trainer

    class Exploding(real):
        def fit(self):
            if self.tasks == ("80", "55"):
                raise FloatingPointError("loss of task '80' is nan")
            return super().fit()

    monkeypatch.setattr(sweep_module, "Trainer", Exploding)
    store = tmp_path / "runs.db"
    report = run_sweep("chemical", ["87|55", "80|55"], 1, store, config=TINY, progress=False)
    assert (report.done, report.failed) == (4, 1)
    with RunStore(store, "chemical", sweep_module.store_config(TINY)) as runs:
        (failed,) = runs.records("failed")
    assert failed.group == "80|55" and "FloatingPointError: loss of task '80' is nan" in failed.error
    again = run_sweep("chemical", ["87|55", "80|55"], 1, store, config=TINY, progress=False)
    assert again.nothing_to_do
    monkeypatch.setattr(sweep_module, "Trainer", real)
    retried = run_sweep("chemical", ["87|55", "80|55"], 1, store, config=TINY, retry_failed=True, progress=False)
    assert (retried.done, retried.failed, retried.skipped) == (1, 0, 4)


def test_ray_executor_gives_the_local_pool_results(tmp_path):
    local, ray = tmp_path / "local.db", tmp_path / "ray.db"
    run_sweep("chemical", GROUPS[:2], 1, local, config=TINY, workers=2, progress=False)
    run_sweep("chemical", GROUPS[:2], 1, ray, config=TINY, workers=2, executor="ray", progress=False)
    assert done_rows(local) == done_rows(ray) and len(done_rows(ray)) == 5


def test_foreign_corrupt_and_mismatched_stores_are_refused(tmp_path):
    config = sweep_module.store_config(TINY)
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match=r"junk\.db"):
        RunStore(junk, "chemical", config)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="another application"):
        RunStore(other, "chemical", config)
    store = tmp_path / "runs.db"
    RunStore(store, "chemical", config).close()
    with pytest.raises(StoreError, match="dataset 'chemical', not 'landmine'"):
        RunStore(store, "landmine", config)
    with pytest.raises(StoreError, match="max_steps"):
        RunStore(store, "chemical", sweep_module.store_config(TrainConfig(max_steps=26, patience_steps=0)))


def test_claims_of_dead_processes_are_released_and_live_ones_respected(tmp_path):
    store = RunStore(tmp_path / "runs.db", "chemical", sweep_module.store_config(TINY))
    key = RunKey("87|55", 0)
    assert store.claim(key)
    assert not store.claim(key)  # this process is alive: the claim holds
    with store.transaction():
        store._db.execute("UPDATE runs SET owner = ?", (f"{os.uname().nodename}:999999999",))
    assert store.claim(key)  # owner no longer exists on this host
    store.close()


def test_merge_from_another_machine_store(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    run_sweep("chemical", ["87|55"], [0], a, config=TINY, progress=False)
    run_sweep("chemical", ["87|55"], [1], b, config=TINY, progress=False)
    with RunStore(a, "chemical", sweep_module.store_config(TINY)) as store:
        assert store.merge_from(b) == 3
        assert store.merge_from(b) == 0
        assert store.counts()["done"] == 6


def test_gains_from_store_follow_the_sign_convention(tmp_path):
    store = tmp_path / "runs.db"
    run_sweep("chemical", ["87|55"], 2, store, config=TINY, progress=False)
    with RunStore(store, "chemical", sweep_module.store_config(TINY)) as runs:
        records = list(runs.records())
    table = GainTable.from_runs([(r.group, r.seed, r.val_loss, r.test_loss) for r in records], CHEMICAL_TASKS)
    stl = {t: sum(r.test_loss[t] for r in records if r.group == t) / 2 for t in ("87", "55")}
    pair = next(r for r in records if r.group == "87|55" and r.seed == 1)
    row = table.frame[(table.frame.group == "87|55") & (table.frame.task == "55") & (table.frame.seed == 1)]
    assert row.gain.item() == pytest.approx((stl["55"] - pair.test_loss["55"]) / stl["55"])
    assert math.isnan(table.pairwise()[0, 1]) and table.pairwise()[8, 9] == pytest.approx(
        table.mean().query("group == '87|55' and task == '55'").gain.item()
    )
    val = table.with_split("val")
    stl_val = sum(r.val_loss["55"] for r in records if r.group == "55") / 2
    row = val.frame[(val.frame.group == "87|55") & (val.frame.task == "55") & (val.frame.seed == 1)]
    assert val.split == "val" and row.gain.item() == pytest.approx((stl_val - pair.val_loss["55"]) / stl_val)
    with pytest.raises(DataError, match="split must be one of"):
        table.with_split("train")
