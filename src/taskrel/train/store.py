"""`RunStore`: finished (and failed) trainings in an SQLite file, safe to kill and to share.

One row per (problem name, group, seed, fingerprint digest). A store is bound to one problem
fingerprint (`Problem.fingerprint()`, recorded in its `meta` table); opening it for another is
refused, as is a file that is not a taskrel store. Every state change is one transaction in WAL
mode, so a process killed at any moment leaves either the old or the new row, never half of one.

Before training, a run is *claimed*: status ``running`` with a lease (the owner's host and pid, and
the time of its last heartbeat). A claim is free again when its owner no longer exists on this
host, or when its lease has not been renewed for `lease` seconds (a dead process on another host);
a sweep renews its claims every `lease / 5` seconds while it runs (`heartbeat`). So nothing is
lost and nothing runs twice even with several sweeps, on several machines, writing to one store.

Per-task values (losses, metrics) are JSON objects ``{task: value}``. A run's per-row validation
losses (`RunRecord.val_rows`, for paired tests between runs) are the column ``val_rows``: a JSON
object ``{task: base64 of the rows' little-endian float64 bytes}`` (NULL when the problem gave none),
so the floats come back bit for bit; `encode_rows` / `decode_rows` convert. A store made before that
column existed gains it (``ALTER TABLE``) when opened; its older runs read back with None.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taskrel.errors import StoreError

FORMAT = "taskrel-runstore/1"
STATUSES = ("running", "done", "failed")
#: Seconds after which a claim whose heartbeat stopped is considered abandoned.
DEFAULT_LEASE = 600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    dataset TEXT NOT NULL,
    grp TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    val_loss TEXT, test_loss TEXT, val_metric TEXT, test_metric TEXT,
    epochs INTEGER, best_epoch INTEGER, steps INTEGER, seconds REAL,
    error TEXT, owner TEXT, updated REAL NOT NULL, val_rows BLOB,
    PRIMARY KEY (dataset, grp, seed, config)
);
"""
#: Columns added since the first version of the schema, with their type: added on open when missing.
ADDED_COLUMNS = {"val_rows": "BLOB"}
#: The columns of `runs` in `RunRecord` order (after the dataset/config key columns).
RECORD_COLUMNS = (
    "grp", "seed", "status", "val_loss", "test_loss", "val_metric", "test_metric",
    "epochs", "best_epoch", "steps", "seconds", "error", "val_rows",
)  # fmt: skip


@dataclass(frozen=True)
class RunKey:
    """Identity of one training run: the group in canonical text form and the seed."""

    group: str
    seed: int


@dataclass(frozen=True)
class RunRecord:
    """A stored run. Per-task dictionaries are keyed by task name; losses are mean per-row losses.

    `val_rows`: per task, the loss of every validation row (restored best weights, the validation
    split's fixed row order), whose mean is `val_loss`; None for failed runs, problems that give none
    and runs stored before the store kept them.
    """

    group: str
    seed: int
    status: str
    val_loss: dict[str, float] | None
    test_loss: dict[str, float] | None
    val_metric: dict[str, float] | None
    test_metric: dict[str, float] | None
    epochs: int | None
    best_epoch: int | None
    steps: int | None
    seconds: float | None
    error: str | None
    val_rows: dict[str, list[float]] | None = None


def encode_rows(rows: dict[str, list[float]] | None) -> bytes | None:
    """`val_rows` as stored: JSON ``{task: base64 of little-endian float64 bytes}`` in UTF-8, or None."""
    if rows is None:
        return None
    packed = {t: base64.b64encode(np.asarray(v, dtype="<f8").tobytes()).decode("ascii") for t, v in rows.items()}
    return json.dumps(packed).encode()


def decode_rows(blob: bytes | str | None) -> dict[str, list[float]] | None:
    """The inverse of `encode_rows`: ``{task: [floats]}`` (exactly the stored float64 values), or None."""
    if blob is None:
        return None
    try:
        packed = json.loads(blob)
        return {t: np.frombuffer(base64.b64decode(v), dtype="<f8").tolist() for t, v in packed.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreError(f"unreadable val_rows in the run store ({exc})") from None


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str | None) -> bool:
    """Whether the process that claimed a run still exists (only knowable on this host)."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


class RunStore:
    """An SQLite run store bound to a problem `fingerprint`; see the module docstring.

    The problem's name is ``fingerprint["name"]`` (default ``"problem"``).
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict, *, lease: float = DEFAULT_LEASE) -> None:
        if lease <= 0:
            raise StoreError(f"lease must be positive, got {lease}")
        self.path = Path(path)
        self.dataset = str(fingerprint.get("name", "problem"))
        self.config = json.dumps(fingerprint, sort_keys=True)
        self.config_digest = _digest(self.config)
        self.lease = float(lease)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._bind()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite run store ({exc})") from exc

    @classmethod
    def open(cls, path: str | os.PathLike, name: str | None = None) -> RunStore:
        """Open an existing store with the fingerprint recorded in it (checked against `name` if given)."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"no run store at {path}")
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                meta = dict(db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path} is not a taskrel run store ({exc})") from exc
        if meta.get("format") != FORMAT or "config" not in meta:
            raise StoreError(f"{path} is not a taskrel run store (format {meta.get('format')!r})")
        if name is not None and meta.get("dataset") != name:
            raise StoreError(f"{path} holds runs of problem {meta.get('dataset')!r}, not {name!r}")
        return cls(path, json.loads(meta["config"]))

    def _bind(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and not {"meta", "runs"} <= tables:
            raise StoreError(f"{self.path} is an SQLite file of another application (tables: {sorted(tables)})")
        self._db.executescript(SCHEMA)
        self._add_columns()
        with self.transaction():
            meta = dict(self._db.execute("SELECT key, value FROM meta"))
            if not meta:
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("format", FORMAT),
                        ("dataset", self.dataset),
                        ("config", self.config),
                        ("created", str(time.time())),
                    ],
                )
                return
        if meta.get("format") != FORMAT:
            raise StoreError(f"{self.path} has format {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("dataset") != self.dataset:
            raise StoreError(
                f"{self.path} holds runs of problem {meta.get('dataset')!r}, not {self.dataset!r}; use another store"
            )
        if meta.get("config") != self.config:
            raise StoreError(
                f"{self.path} holds runs of a different problem ({_diff(meta.get('config'), self.config)}); "
                "start a new store (another path) or undo the change"
            )

    def _add_columns(self) -> None:
        """Bring a store of an older schema up to date: add the columns it lacks (NULL in its old rows)."""
        with self.transaction():
            present = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    def transaction(self):
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------
    def claim(self, key: RunKey, retry_failed: bool = False) -> bool:
        """Mark `key` as running by this process; False if it is done, failed (unless retried) or taken."""
        with self.transaction():
            row = self._db.execute(
                "SELECT status, owner, updated FROM runs WHERE dataset=? AND grp=? AND seed=? AND config=?",
                (self.dataset, key.group, key.seed, self.config_digest),
            ).fetchone()
            if row is not None:
                status, owner, updated = row
                expired = not _alive(owner) or time.time() - updated > self.lease
                free = (status == "failed" and retry_failed) or (status == "running" and expired)
                if not free:
                    return False
            self._db.execute(
                "INSERT OR REPLACE INTO runs (dataset, grp, seed, config, status, owner, updated) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?)",
                (self.dataset, key.group, key.seed, self.config_digest, owner_id(), time.time()),
            )
            return True

    def renew(self) -> None:
        """Renew the lease of every claim this process holds."""
        with self.transaction():
            self._db.execute(
                "UPDATE runs SET updated=? WHERE dataset=? AND config=? AND status='running' AND owner=?",
                (time.time(), self.dataset, self.config_digest, owner_id()),
            )

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Renew this process's claims every `lease / 5` seconds (own connection, own thread) in a block."""
        stop = threading.Event()

        def beat() -> None:
            with RunStore(self.path, json.loads(self.config), lease=self.lease) as own:
                while not stop.wait(self.lease / 5):
                    own.renew()

        thread = threading.Thread(target=beat, name="runstore-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def release(self, key: RunKey) -> None:
        """Drop this process's claim on `key` (e.g. when a sweep is interrupted)."""
        with self.transaction():
            self._db.execute(
                "DELETE FROM runs WHERE dataset=? AND grp=? AND seed=? AND config=? AND status='running' AND owner=?",
                (self.dataset, key.group, key.seed, self.config_digest, owner_id()),
            )

    def record(self, record: RunRecord) -> None:
        """Store a finished or failed run (replacing its claim) in one transaction."""
        if record.status not in ("done", "failed"):
            raise StoreError(f"cannot record a run with status {record.status!r}")
        dumps = lambda d: None if d is None else json.dumps(d)  # noqa: E731
        values = {
            "dataset": self.dataset,
            "grp": record.group,
            "seed": record.seed,
            "config": self.config_digest,
            "status": record.status,
            "val_loss": dumps(record.val_loss),
            "test_loss": dumps(record.test_loss),
            "val_metric": dumps(record.val_metric),
            "test_metric": dumps(record.test_metric),
            "epochs": record.epochs,
            "best_epoch": record.best_epoch,
            "steps": record.steps,
            "seconds": record.seconds,
            "error": record.error,
            "owner": owner_id(),
            "updated": time.time(),
            "val_rows": encode_rows(record.val_rows),
        }
        columns = ", ".join(values)
        marks = ", ".join(f":{name}" for name in values)
        with self.transaction():
            self._db.execute(f"INSERT OR REPLACE INTO runs ({columns}) VALUES ({marks})", values)

    def status(self, keys: Iterable[RunKey]) -> dict[RunKey, str]:
        """Current status of each key that has a row ('running', 'done' or 'failed')."""
        rows = self._db.execute(
            "SELECT grp, seed, status FROM runs WHERE dataset=? AND config=?", (self.dataset, self.config_digest)
        )
        known = {RunKey(g, s): st for g, s, st in rows}
        return {k: known[k] for k in keys if k in known}

    def records(self, status: str | None = "done") -> Iterator[RunRecord]:
        query = f"SELECT {', '.join(RECORD_COLUMNS)} FROM runs WHERE dataset=? AND config=?"
        args: tuple = (self.dataset, self.config_digest)
        if status is not None:
            query += " AND status=?"
            args += (status,)
        loads = lambda t: None if t is None else json.loads(t)  # noqa: E731
        for row in self._db.execute(query + " ORDER BY grp, seed", args):
            group, seed, state, val_loss, test_loss, val_metric, test_metric, *counts, error, rows = row
            yield RunRecord(
                group, seed, state, loads(val_loss), loads(test_loss), loads(val_metric), loads(test_metric),
                *counts, error, decode_rows(rows),
            )  # fmt: skip

    def counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT status, COUNT(*) FROM runs WHERE dataset=? AND config=? GROUP BY status",
            (self.dataset, self.config_digest),
        )
        return {status: 0 for status in STATUSES} | dict(rows)

    def merge_from(self, other: str | os.PathLike) -> int:
        """Copy the finished runs of another store (same dataset and config) into this one; returns how many."""
        source = RunStore(other, json.loads(self.config))
        added = 0
        try:
            for record in source.records("done"):
                current = self.status([RunKey(record.group, record.seed)])
                if current.get(RunKey(record.group, record.seed)) != "done":
                    self.record(record)
                    added += 1
        finally:
            source.close()
        return added


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): one writer at a time, atomic on crash."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _diff(stored: str | None, wanted: str) -> str:
    try:
        a, b = json.loads(stored or "{}"), json.loads(wanted)
    except json.JSONDecodeError:
        return "unreadable stored configuration"
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    parts = []
    for k in changed:
        if k not in a:  # e.g. a weighting added, or a store of an earlier taskrel version
            parts.append(f"{k}: absent from the store's fingerprint vs {_short(b[k])}")
        elif k not in b:
            parts.append(f"{k}: stored {_short(a[k])} vs absent now")
        elif isinstance(a[k], Mapping) and isinstance(b.get(k), Mapping):
            inner = sorted(j for j in set(a[k]) | set(b[k]) if a[k].get(j) != b[k].get(j))
            parts += [f"{k}.{j}: stored {_short(a[k].get(j))} vs {_short(b[k].get(j))}" for j in inner]
        else:
            parts.append(f"{k}: stored {_short(a[k])} vs {_short(b.get(k))}")
    return "; ".join(parts) or "same keys"


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
