"""`RunStore`: the per-row validation losses column, its exact round trip and stores of the older schema."""

import json
import sqlite3
import time

import numpy as np
import pytest

from taskrel.errors import StoreError
from taskrel.train.store import FORMAT, RunKey, RunRecord, RunStore, _digest, decode_rows, encode_rows

FINGERPRINT = {"name": "toy", "train": {"max_steps": 3}}
ROWS = {"a": [0.1, 1 / 3, 2.0**-1074, 1e300, 0.0, -0.0], "b": [np.nextafter(1.0, 2.0)]}

#: The `runs` table as the store created it before `val_rows` existed.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    dataset TEXT NOT NULL,
    grp TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    val_loss TEXT, test_loss TEXT, val_metric TEXT, test_metric TEXT,
    epochs INTEGER, best_epoch INTEGER, steps INTEGER, seconds REAL,
    error TEXT, owner TEXT, updated REAL NOT NULL,
    PRIMARY KEY (dataset, grp, seed, config)
);
"""


def record(group="a|b", seed=0, rows=None, status="done"):
    return RunRecord(group, seed, status, {"a": 0.5, "b": 1.5}, {"a": 0.6, "b": 1.6}, None, None, 3, 1, 30, 0.25,
                     None, rows)  # fmt: skip


def test_rows_come_back_bit_for_bit(tmp_path):
    with RunStore(tmp_path / "runs.db", FINGERPRINT) as store:
        store.record(record(rows=ROWS))
        store.record(record(seed=1))  # a run without rows
        first, second = store.records()
    assert first.val_rows == ROWS and second.val_rows is None
    for task, values in ROWS.items():
        assert [v.hex() for v in first.val_rows[task]] == [float(v).hex() for v in values]
        assert all(type(v) is float for v in first.val_rows[task])
    assert first == record(rows=ROWS)


def test_the_format_is_json_of_base64_little_endian_float64():
    blob = encode_rows({"t": [1.0, -2.5]})
    assert blob == b'{"t": "AAAAAAAA8D8AAAAAAAAEwA=="}'
    assert decode_rows(blob) == {"t": [1.0, -2.5]} and encode_rows(None) is None and decode_rows(None) is None
    with pytest.raises(StoreError, match="unreadable val_rows"):
        decode_rows(b"not json")


def test_merging_stores_keeps_the_rows(tmp_path):
    with RunStore(tmp_path / "a.db", FINGERPRINT) as a:
        a.record(record(rows=ROWS))
    with RunStore(tmp_path / "b.db", FINGERPRINT) as b:
        assert b.merge_from(tmp_path / "a.db") == 1
        assert next(b.records()).val_rows == ROWS


def test_a_store_of_the_old_schema_opens_reads_its_runs_and_takes_rows(tmp_path):
    path = tmp_path / "old.db"
    text = json.dumps(FINGERPRINT, sort_keys=True)
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("dataset", "toy"), ("config", text),
                                                         ("created", str(time.time()))])  # fmt: skip
        db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("toy", "a", 0, _digest(text), "done", '{"a": 0.5}', '{"a": 0.6}', None, None, 4, 2, 40, 0.5, None,
             "host:1", time.time()),
        )  # fmt: skip
    db.close()
    with RunStore.open(path) as store:
        (old,) = store.records()
        assert old == RunRecord("a", 0, "done", {"a": 0.5}, {"a": 0.6}, None, None, 4, 2, 40, 0.5, None)
        assert old.val_rows is None
        store.record(record(rows=ROWS))
        assert store.status([RunKey("a", 0), RunKey("a|b", 0)]) == {RunKey("a", 0): "done", RunKey("a|b", 0): "done"}
        assert [r.val_rows for r in store.records()] == [None, ROWS]
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    db.close()
    assert columns[-1] == "val_rows" and columns.count("val_rows") == 1
    with RunStore(path, FINGERPRINT) as again:  # opening an up-to-date store adds nothing
        assert len(list(again.records())) == 2


def test_claims_and_failed_runs_still_work_with_the_new_column(tmp_path):
    with RunStore(tmp_path / "runs.db", FINGERPRINT) as store:
        assert store.claim(RunKey("a", 0))
        store.record(record("a", status="failed"))
        assert list(store.records()) == []
        (failed,) = store.records("failed")
        assert failed.val_rows is None
        assert store.claim(RunKey("a", 0), retry_failed=True)
        store.record(record("a", rows=ROWS))
        assert next(store.records()).val_rows == ROWS


def test_a_store_of_another_fingerprint_is_refused_naming_the_added_or_dropped_part(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(path, FINGERPRINT).close()
    weighted = {**FINGERPRINT, "weighting": {"method": "nash-mtl"}}
    with pytest.raises(StoreError, match=r"weighting: absent from the store's fingerprint vs \{'method': 'nash-mtl'\}"):
        RunStore(path, weighted)
    other = tmp_path / "weighted.db"
    RunStore(other, weighted).close()
    with pytest.raises(StoreError, match=r"weighting: stored \{'method': 'nash-mtl'\} vs absent now"):
        RunStore(other, FINGERPRINT)
