"""Sweeps: train many groups × seeds, store every result, resume after any interruption.

`run_sweep` enumerates (group, seed) runs, skips those already done in the `RunStore` (and
failed ones unless `retry_failed`), claims the rest one by one as executors pull them, and
records each result or failure as soon as it arrives. Single-task runs of every member task are
always part of the sweep, since gains are measured against them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from taskrel.data import load_dataset
from taskrel.data.dataset import MultiTaskDataset
from taskrel.errors import ConfigError, DataError
from taskrel.groups import Group, all_groups, group_name, make_group, parse_group
from taskrel.train.config import TrainConfig
from taskrel.train.executors import make_executor
from taskrel.train.store import RunKey, RunRecord, RunStore
from taskrel.train.trainer import Trainer


# --------------------------------------------------------------------------------------------
# Which groups
def stratified_groups(
    tasks: Sequence[str], count: int, seed: int = 0, sizes: Iterable[int] | None = None
) -> list[Group]:
    """`count` distinct random groups spread as evenly as possible over `sizes` (default 2..n).

    A size with fewer groups than its share gives all of them; the rest goes to the other sizes.
    """
    n = len(tasks)
    sizes = sorted(set(sizes)) if sizes is not None else list(range(2, n + 1))
    available = {s: math.comb(n, s) for s in sizes}
    if count > sum(available.values()):
        raise ConfigError(f"asked for {count} groups but only {sum(available.values())} exist of sizes {sizes}")
    quota = dict.fromkeys(sizes, 0)
    left, open_sizes = count, list(sizes)
    while left > 0:
        share = max(1, left // len(open_sizes))
        for s in list(open_sizes):
            take = min(share, available[s] - quota[s], left)
            quota[s] += take
            left -= take
            if quota[s] == available[s]:
                open_sizes.remove(s)
            if left == 0:
                break
    rng = np.random.default_rng(seed)
    chosen: list[Group] = []
    for s in sizes:
        if quota[s] == available[s]:
            chosen.extend(all_groups(tasks, [s]))
            continue
        picked: set[frozenset[int]] = set()
        while len(picked) < quota[s]:
            picked.add(frozenset(rng.choice(n, s, replace=False).tolist()))
        chosen.extend(frozenset(tasks[i] for i in combo) for combo in sorted(picked, key=sorted))
    return chosen


def sample_groups(tasks: Sequence[str], spec: str, seed: int = 0) -> list[Group]:
    """Groups named by a sweep spec: ``all``, ``pairs``, ``size:K[,K…]``, ``random:N`` or a file.

    A file lists one group per line in canonical text form (``a|c``), or is a CSV with a
    ``group`` column. Order is kept, duplicates are dropped.
    """
    if spec == "all":
        groups = list(all_groups(tasks))
    elif spec == "pairs":
        groups = list(all_groups(tasks, [2]))
    elif spec.startswith("size:"):
        try:
            sizes = [int(s) for s in spec[5:].split(",")]
        except ValueError:
            raise ConfigError(f"bad group spec {spec!r}: expected size:K or size:K1,K2") from None
        groups = list(all_groups(tasks, sizes))
    elif spec.startswith("random:"):
        try:
            count = int(spec[7:])
        except ValueError:
            raise ConfigError(f"bad group spec {spec!r}: expected random:N") from None
        groups = stratified_groups(tasks, count, seed)
    elif Path(spec).is_file():
        groups = _read_group_file(Path(spec), tasks)
    else:
        raise ConfigError(f"unknown group spec {spec!r}: use all, pairs, size:K, random:N or an existing file")
    return list(dict.fromkeys(groups))


def _read_group_file(path: Path, tasks: Sequence[str]) -> list[Group]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    if lines and "," in lines[0]:
        header = [c.strip() for c in lines[0].split(",")]
        if "group" not in header:
            raise DataError(f"{path}: a CSV group list needs a 'group' column")
        col = header.index("group")
        lines = [line.split(",")[col].strip() for line in lines[1:]]
        first = 2
    else:
        first = 1
    return [parse_group(text, tasks, f"{path} line {i + first}") for i, text in enumerate(lines) if text]


# --------------------------------------------------------------------------------------------
# One job
@dataclass(frozen=True)
class SweepJob:
    """Everything a worker needs to train one run, in plain values (picklable for any executor)."""

    dataset: str
    data_dir: str | None
    config: dict
    group: str
    seed: int


_DATASETS: dict[tuple[str, str | None], MultiTaskDataset] = {}


def run_job(job: SweepJob) -> RunRecord:
    """Train one (group, seed); any exception becomes a failed record carrying its message."""
    started = time.perf_counter()
    try:
        key = (job.dataset, job.data_dir)
        if key not in _DATASETS:
            _DATASETS[key] = load_dataset(job.dataset, job.data_dir)
        result = Trainer(_DATASETS[key], job.group, TrainConfig.from_dict(job.config), seed=job.seed).fit()
    except Exception as exc:  # recorded as a failed run with its message; the sweep goes on
        return RunRecord(
            job.group,
            job.seed,
            "failed",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            time.perf_counter() - started,
            f"{type(exc).__name__}: {exc}",
        )
    return RunRecord(
        job.group,
        job.seed,
        "done",
        result.val_loss,
        result.test_loss,
        result.val_metric,
        result.test_metric,
        result.epochs,
        result.best_epoch,
        result.steps,
        result.seconds,
        None,
    )


# --------------------------------------------------------------------------------------------
# The sweep
@dataclass(frozen=True)
class SweepReport:
    """What a sweep did: runs planned, already done before it started, newly done, failed, seconds."""

    planned: int
    skipped: int
    done: int
    failed: int
    seconds: float

    @property
    def nothing_to_do(self) -> bool:
        return self.planned == self.skipped


def store_config(config: TrainConfig) -> dict:
    """The configuration a store is bound to: the training protocol (not where the data lives)."""
    return {"train": config.to_dict()}


def plan_runs(tasks: Sequence[str], groups: Iterable[Group], seeds: Sequence[int]) -> list[RunKey]:
    """(group, seed) keys of a sweep: the singles of every member task first, then the groups."""
    groups = list(groups)
    members = {t for g in groups for t in g}
    singles = [frozenset([t]) for t in tasks if t in members]
    ordered = list(dict.fromkeys(singles + groups))
    return [RunKey(group_name(g, tasks), int(s)) for g in ordered for s in seeds]


def run_sweep(
    dataset: str,
    groups: Iterable[Group | str] | str,
    seeds: int | Sequence[int],
    store: str | os.PathLike,
    *,
    config: TrainConfig | None = None,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    retry_failed: bool = False,
    data_dir: str | None = None,
    group_seed: int = 0,
    progress: bool = True,
) -> SweepReport:
    """Train every (group, seed) not yet done in `store`; see the module docstring.

    `seeds` is a count (seeds 0..S−1) or an explicit list. `groups` is a list of groups (sets of
    task names or canonical texts like ``"87|55"``) or a spec for `sample_groups` (``random:N``
    draws with `group_seed`).
    """
    config = config or TrainConfig()
    tasks = load_dataset(dataset, data_dir).task_names
    if isinstance(groups, str):
        groups = sample_groups(tasks, groups, group_seed)
    else:
        groups = [parse_group(g, tasks) if isinstance(g, str) else make_group(g, tasks) for g in groups]
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("a sweep needs at least one seed")
    keys = plan_runs(tasks, groups, seed_list)
    started = time.perf_counter()
    with RunStore(store, dataset, store_config(config)) as runs:
        status = runs.status(keys)
        skip = {"done"} | (set() if retry_failed else {"failed"})
        todo = [k for k in keys if status.get(k) not in skip]
        counts = {"done": 0, "failed": 0}
        if not todo:
            return SweepReport(len(keys), len(keys), 0, 0, time.perf_counter() - started)
        claimed: set[RunKey] = set()

        def jobs() -> Iterator[SweepJob]:
            for key in todo:
                if runs.claim(key, retry_failed=retry_failed):
                    claimed.add(key)
                    yield SweepJob(dataset, data_dir, config.to_dict(), key.group, key.seed)

        bar = tqdm(total=len(todo), desc=f"sweep {dataset}", unit="run", disable=None if progress else True)
        pool = make_executor(executor, workers, address)
        try:
            for record in pool.imap_unordered(run_job, jobs()):
                runs.record(record)
                claimed.discard(RunKey(record.group, record.seed))
                counts[record.status] += 1
                bar.update(1)
                bar.set_postfix(
                    done=counts["done"],
                    failed=counts["failed"],
                    remaining=len(todo) - counts["done"] - counts["failed"],
                )
        finally:
            bar.close()
            pool.close()
            for key in claimed:
                runs.release(key)
        return SweepReport(
            len(keys), len(keys) - len(todo), counts["done"], counts["failed"], time.perf_counter() - started
        )
