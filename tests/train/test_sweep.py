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
from taskrel.errors import ConfigError, DataError, StoreError, UnknownTaskError
from taskrel.gains import GainTable
from taskrel.groups import parse_group
from taskrel.problems.registry import load_problem
from taskrel.train.store import RunKey, RunStore
from taskrel.train.sweep import plan_runs, run_sweep, sample_groups, stratified_groups

TINY = load_problem("chemical", max_steps=25, patience_steps=0)
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
    with pytest.raises(UnknownTaskError, match=r"unknown task\(s\) '99' in .*g\.csv line 3"):
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
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone():
            return []  # killed between creating the file and its tables: nothing stored yet
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


def test_ray_executor_gives_the_local_pool_results(tmp_path):
    local, ray = tmp_path / "local.db", tmp_path / "ray.db"
    run_sweep(TINY, GROUPS[:2], 1, local, workers=2, progress=False)
    run_sweep(TINY, GROUPS[:2], 1, ray, workers=2, executor="ray", progress=False)
    assert done_rows(local) == done_rows(ray) and len(done_rows(ray)) == 5


def test_foreign_corrupt_and_mismatched_stores_are_refused(tmp_path):
    config = TINY.fingerprint()
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match=r"junk\.db"):
        RunStore(junk, config)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="another application"):
        RunStore(other, config)
    store = tmp_path / "runs.db"
    RunStore(store, config).close()
    with pytest.raises(StoreError, match="problem 'chemical', not 'landmine'"):
        RunStore(store, {**config, "name": "landmine"})
    with pytest.raises(StoreError, match="max_steps"):
        RunStore(store, load_problem("chemical", max_steps=26, patience_steps=0).fingerprint())


def test_claims_of_dead_processes_are_released_and_live_ones_respected(tmp_path):
    store = RunStore(tmp_path / "runs.db", TINY.fingerprint())
    key = RunKey("87|55", 0)
    assert store.claim(key)
    assert not store.claim(key)  # this process is alive: the claim holds
    with store.transaction():
        store._db.execute("UPDATE runs SET owner = ?", (f"{os.uname().nodename}:999999999",))
    assert store.claim(key)  # owner no longer exists on this host
    store.close()


def test_merge_from_another_machine_store(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    run_sweep(TINY, ["87|55"], [0], a, progress=False)
    run_sweep(TINY, ["87|55"], [1], b, progress=False)
    with RunStore(a, TINY.fingerprint()) as store:
        assert store.merge_from(b) == 3
        assert store.merge_from(b) == 0
        assert store.counts()["done"] == 6


def test_gains_from_store_follow_the_sign_convention(tmp_path):
    store = tmp_path / "runs.db"
    run_sweep(TINY, ["87|55"], 2, store, progress=False)
    with RunStore(store, TINY.fingerprint()) as runs:
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


# --------------------------------------------------------------------------------------------
# Any problem: a user's single-input problem, failures, dead workers, concurrent sweeps, leases
USER = str(Path(__file__).resolve().parents[1] / "user_problems.py")


def taskrel_cli(*args, env=None, check=False):
    env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run([sys.executable, "-m", "taskrel", *args], env=env, capture_output=True, text=True,
                          timeout=600, check=check)  # fmt: skip


def test_user_problem_sweeps_in_a_spawned_pool_with_the_gains_of_direct_training(tmp_path):
    store = tmp_path / "runs.db"
    done = taskrel_cli("sweep", "--problem", f"{USER}:forecast", "--groups", "size:2", "--seeds", "1",
                       "--store", str(store), "--workers", "2", "--quiet", "--json", check=True)  # fmt: skip
    assert json.loads(done.stdout)["done"] == 3 + 3  # three singles, three pairs
    out = tmp_path / "gains.csv"
    taskrel_cli("gains", "--problem", f"{USER}:forecast", "--store", str(store), "--out", str(out), check=True)
    table = GainTable.read_csv(out, ("HUFL", "MUFL", "OT"))
    problem = load_problem(f"{USER}:forecast")
    stl = {t: problem.train([t], 0).test_loss[t] for t in ("MUFL", "OT")}
    pair = problem.train(["MUFL", "OT"], 0).test_loss
    rows = table.frame[table.frame.group == "MUFL|OT"].set_index("task")
    for task in ("MUFL", "OT"):
        assert rows.loc[task, "test_loss"] == pytest.approx(pair[task], rel=1e-6)
        assert rows.loc[task, "gain"] == pytest.approx((stl[task] - pair[task]) / stl[task], rel=1e-5, abs=1e-7)


def test_failed_runs_are_reported_kept_and_retried_alone(tmp_path):
    store, log = tmp_path / "runs.db", tmp_path / "log.txt"
    env = {"TASKREL_TEST_BAD_GROUP": "HUFL|OT", "TASKREL_TEST_LOG": str(log)}
    args = ["sweep", "--problem", f"{USER}:exploding", "--groups", "size:2", "--seeds", "1", "--store", str(store)]
    first = taskrel_cli(*args, "--quiet", env=env)
    assert first.returncode == 1
    assert "failed: HUFL|OT seed 0: RuntimeError: simulated divergence of HUFL|OT" in first.stderr
    again = taskrel_cli(*args, "--json", env=env)
    report = json.loads(again.stdout)
    assert again.returncode == 1 and report["done"] == 0 and report["kept_failed"] == 1
    assert report["message"].startswith("1 failed runs kept (first: HUFL|OT seed 0: RuntimeError")
    assert report["message"].endswith("--retry-failed reruns them") and "nothing to do" not in report["message"]
    before = log.read_text().splitlines()
    fixed = taskrel_cli(*args, "--retry-failed", "--json", env={"TASKREL_TEST_LOG": str(log)})
    assert fixed.returncode == 0 and json.loads(fixed.stdout)["done"] == 1
    assert [line.rsplit(" ", 1)[0] for line in log.read_text().splitlines()[len(before) :]] == ["HUFL|OT 0"]


def test_a_killed_worker_strands_nothing(tmp_path):
    """A run whose worker process is SIGKILLed is rerun alone and then recorded as failed; the pool is
    restarted and every other run, even one that died with it in the same pool, is done."""
    store = tmp_path / "runs.db"
    result = taskrel_cli("sweep", "--problem", f"{USER}:killing", "--groups", "size:2", "--seeds", "1",
                         "--store", str(store), "--workers", "2", "--quiet", "--json",
                         env={"TASKREL_TEST_BAD_GROUP": "MUFL|OT"})  # fmt: skip
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["done"] == 5 and report["failed"] == 1
    (failure,) = report["failures"]
    assert failure["group"] == "MUFL|OT" and "worker process died" in failure["error"]
    assert {r[2] for r in done_rows(store)} == {"done", "failed"}  # no claim left 'running'


def test_two_concurrent_sweeps_train_every_run_exactly_once(tmp_path):
    store, log = tmp_path / "runs.db", tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": SRC, "TASKREL_TEST_LOG": str(log)}
    command = [sys.executable, "-m", "taskrel", "sweep", "--problem", f"{USER}:forecast", "--groups", "all",
               "--seeds", "2", "--store", str(store), "--quiet", "--group-batch", "3"]  # fmt: skip
    sweeps = [subprocess.Popen(command, env=env) for _ in range(2)]  # a sweep claims a batch at a time
    assert [p.wait(timeout=600) for p in sweeps] == [0, 0]
    trained = [line.rsplit(" ", 1)[0] for line in log.read_text().splitlines()]
    assert len(trained) == 7 * 2 and len(set(trained)) == len(trained)  # 7 groups × 2 seeds, none twice
    assert len({line.rsplit(" ", 1)[1] for line in log.read_text().splitlines()}) == 2  # both sweeps trained
    assert sorted(r[2] for r in done_rows(store)) == ["done"] * 14


def test_claims_of_another_host_hold_while_their_lease_is_renewed(tmp_path):
    store = RunStore(tmp_path / "runs.db", TINY.fingerprint(), lease=60)
    key = RunKey("87|55", 0)
    assert store.claim(key)
    with store.transaction():
        store._db.execute("UPDATE runs SET owner = 'elsewhere:123', updated = ?", (time.time() - 30,))
    assert not store.claim(key)  # another host, renewed 30 s ago: its lease holds
    with store.transaction():
        store._db.execute("UPDATE runs SET updated = ?", (time.time() - 61,))
    assert store.claim(key)  # not renewed for longer than the lease: abandoned
    store.close()


def test_a_sweep_renews_its_claims_while_it_runs(tmp_path):
    store = RunStore(tmp_path / "runs.db", TINY.fingerprint(), lease=0.5)
    assert store.claim(RunKey("87", 0))
    with store.transaction():
        store._db.execute("UPDATE runs SET updated = 0")
    with store.heartbeat():
        time.sleep(0.4)
    (updated,) = store._db.execute("SELECT updated FROM runs").fetchone()
    assert time.time() - updated < 0.5
    store.close()
