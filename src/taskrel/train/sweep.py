"""Sweeps: train many groups × seeds of any problem, store every result, resume after any interruption.

`run_sweep` enumerates (group, seed) runs, skips those already done in the `RunStore` (and
failed ones unless `retry_failed`), claims the rest one by one as executors pull them, and
records each result or failure as soon as it arrives. Single-task runs of every member task are
always part of the sweep, since gains are measured against them.

Runs travel to the executors in batches of up to `group_batch` (ordered by group size, so runs
whose models share a layout travel together); a problem with ``train_many`` (every `TorchProblem`)
trains a batch as one batched model (`taskrel.train.batched`), others train its runs one by one.
A failed run fails alone; a batch lost with its worker is rerun one run at a time.

Workers receive the problem's spec (`taskrel.problems.load_problem`) and build the problem
themselves, so a user's problem runs in a spawned process pool or on a Ray cluster; a problem
object without a spec is sent as it is (it must then be picklable). The runs lost with a worker
process that died are rerun one at a time; one that kills its worker again alone is recorded as failed.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from taskrel.choices import GROUP_BATCH
from taskrel.errors import ConfigError, DataError
from taskrel.groups import Group, all_groups, group_name, make_group, parse_group
from taskrel.problems.protocol import GroupResult, Problem, attempt, check_fingerprint, check_result
from taskrel.problems.registry import load_problem, problem_spec
from taskrel.train.executors import WorkerCrash, make_executor
from taskrel.train.store import RunKey, RunRecord, RunStore


# --------------------------------------------------------------------------------------------
# Which groups
def stratified_groups(
    tasks: Sequence[str], count: int, seed: int = 0, sizes: Iterable[int] | None = None
) -> list[Group]:
    """`count` distinct random groups spread as evenly as possible over `sizes` (default 2..n).

    A size with fewer groups than its share gives all of them; the rest goes to the other sizes.
    With fewer groups than sizes, the sizes used are spaced evenly from the smallest to the largest.
    """
    n = len(tasks)
    sizes = sorted(set(sizes)) if sizes is not None else list(range(2, n + 1))
    if 0 < count < len(sizes):
        sizes = [sizes[i] for i in np.unique(np.round(np.linspace(0, len(sizes) - 1, count)).astype(int))]
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
    """Everything a worker needs to train a batch of runs: the problem (spec and options, or the object)."""

    problem: tuple[str, dict] | Problem
    runs: tuple[RunKey, ...]


_PROBLEMS: dict[str, Problem] = {}


def resolve_job_problem(problem: tuple[str, dict] | Problem) -> Problem:
    """The job's problem: built once per worker process from its spec, or the object itself."""
    if not isinstance(problem, tuple):
        return problem
    spec, options = problem
    key = json.dumps([spec, options], sort_keys=True, default=str)
    if key not in _PROBLEMS:
        _PROBLEMS[key] = load_problem(spec, **options)
    return _PROBLEMS[key]


def run_job(job: SweepJob) -> list[RunRecord]:
    """Train the job's runs (one `train_many` call where the problem has it); one record per run, in order.

    Any exception becomes a failed record of the run it ended, carrying its message; the others are kept.
    """
    started = time.perf_counter()
    try:
        problem = resolve_job_problem(job.problem)
        groups = [[t for t in problem.tasks if t in set(key.group.split("|"))] for key in job.runs]
        train_many = getattr(problem, "train_many", None)
        if len(job.runs) > 1 and train_many is not None:
            outcomes = train_many([(g, key.seed) for g, key in zip(groups, job.runs, strict=True)],
                                  max_batch=len(job.runs))  # fmt: skip
        else:
            outcomes = [attempt(problem, g, key.seed) for g, key in zip(groups, job.runs, strict=True)]
    except Exception as exc:  # the problem could not be built or trained at all: every run fails with it
        seconds = (time.perf_counter() - started) / len(job.runs)
        return [failed_record(key, f"{type(exc).__name__}: {exc}", seconds) for key in job.runs]
    records = []
    for key, group, outcome in zip(job.runs, groups, outcomes, strict=True):
        try:
            if isinstance(outcome, Exception):
                raise outcome
            checked = check_result(outcome, group, f"train({key.group!r}, seed={key.seed})")
            records.append(result_record(key.group, key.seed, checked))
        except Exception as exc:  # recorded as a failed run with its message; the sweep goes on
            records.append(failed_record(key, f"{type(exc).__name__}: {exc}"))
    return records


def result_record(group: str, seed: int, result: GroupResult) -> RunRecord:
    """The stored form of a checked result (`check_result`) of `group` (canonical text) and `seed`."""
    rows = getattr(result, "val_rows", None)
    return RunRecord(
        group, seed, "done", dict(result.val_loss), dict(result.test_loss),
        None if result.val_metric is None else dict(result.val_metric),
        None if result.test_metric is None else dict(result.test_metric),
        getattr(result, "epochs", None), getattr(result, "best_epoch", None), result.steps, result.seconds, None,
        None if rows is None else {t: [float(v) for v in values] for t, values in rows.items()},
    )  # fmt: skip


def failed_record(key: RunKey, message: str, seconds: float | None = None) -> RunRecord:
    return RunRecord(key.group, key.seed, "failed", None, None, None, None, None, None, None, seconds, message)


# --------------------------------------------------------------------------------------------
# The sweep
@dataclass(frozen=True)
class SweepReport:
    """What a sweep did: runs planned, already done before it started, newly done, failed, seconds.

    `failures` lists (run, message) of every failed run in the store among the planned ones: those of
    this sweep and, when they were not retried, those kept from earlier sweeps (`kept_failed` of them).
    """

    planned: int
    skipped: int
    done: int
    failed: int
    seconds: float
    failures: tuple[tuple[RunKey, str], ...] = ()
    kept_failed: int = 0

    @property
    def nothing_to_do(self) -> bool:
        return self.planned == self.skipped and not self.kept_failed

    def message(self, store: str | os.PathLike) -> str:
        """One line saying what happened, for people."""
        if self.planned == self.skipped + self.kept_failed and not self.done and not self.failed:
            if not self.kept_failed:
                return f"nothing to do: all {self.planned} runs are already in {store}"
            key, error = self.failures[0]
            return (f"{self.kept_failed} failed runs kept (first: {key.group} seed {key.seed}: {error}); "
                    "--retry-failed reruns them")  # fmt: skip
        text = (f"{self.done} runs done, {self.failed} failed, {self.skipped} already stored "
                f"({self.planned} planned) in {self.seconds:.1f} s")  # fmt: skip
        if self.kept_failed:
            text += f"; {self.kept_failed} failed runs kept from before (--retry-failed reruns them)"
        return text


def plan_runs(tasks: Sequence[str], groups: Iterable[Group], seeds: Sequence[int]) -> list[RunKey]:
    """(group, seed) keys of a sweep: the singles of every member task first, then the groups."""
    groups = list(groups)
    members = {t for g in groups for t in g}
    singles = [frozenset([t]) for t in tasks if t in members]
    ordered = list(dict.fromkeys(singles + groups))
    return [RunKey(group_name(g, tasks), int(s)) for g in ordered for s in seeds]


def resolve_groups(tasks: Sequence[str], groups: Iterable[Group | str] | str, group_seed: int = 0) -> list[Group]:
    """Groups from a spec (`sample_groups`) or a list of task sets / canonical texts."""
    if isinstance(groups, str):
        return sample_groups(tasks, groups, group_seed)
    return [parse_group(g, tasks) if isinstance(g, str) else make_group(g, tasks) for g in groups]


def open_store(store: str | os.PathLike, problem: Problem, **options) -> RunStore:
    """The run store of `problem` at `store` (created if absent; refused if bound to another fingerprint)."""
    return RunStore(store, check_fingerprint(problem), **options)


def run_sweep(
    problem: Problem | str,
    groups: Iterable[Group | str] | str,
    seeds: int | Sequence[int],
    store: str | os.PathLike,
    *,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    retry_failed: bool = False,
    group_seed: int = 0,
    progress: bool = True,
    lease: float | None = None,
    group_batch: int = GROUP_BATCH,
) -> SweepReport:
    """Train every (group, seed) of `problem` not yet done in `store`; see the module docstring.

    `problem` is a `Problem` or a spec. `seeds` is a count (seeds 0..S−1) or an explicit list.
    `groups` is a list of groups (sets of task names or canonical texts like ``"87|55"``) or a spec
    for `sample_groups` (``random:N`` draws with `group_seed`). `lease`: seconds after which an
    abandoned claim of another host is taken over (default `taskrel.train.store.DEFAULT_LEASE`).
    `group_batch`: the most runs sent to a worker at once, trained as one batched model where the
    problem can (1: one at a time); batches are sized so that every worker gets a share.
    """
    problem = load_problem(problem)
    tasks = list(problem.tasks)
    groups = resolve_groups(tasks, groups, group_seed)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("a sweep needs at least one seed")
    if group_batch < 1:
        raise ConfigError(f"group_batch must be ≥ 1, got {group_batch}")
    keys = plan_runs(tasks, groups, seed_list)
    sent = problem_spec(problem) or problem
    started = time.perf_counter()
    with open_store(store, problem, **({} if lease is None else {"lease": lease})) as runs, runs.heartbeat():
        status = runs.status(keys)
        skip = {"done"} | (set() if retry_failed else {"failed"})
        todo = [k for k in keys if status.get(k) not in skip]
        kept = [] if retry_failed else [k for k in keys if status.get(k) == "failed"]
        counts = {"done": 0, "failed": 0}
        claimed: set[RunKey] = set()
        if todo:
            bar = tqdm(total=len(todo), desc=f"sweep {runs.dataset}", unit="run", disable=None if progress else True)
            pool = make_executor(executor, workers, address)
            try:
                size = min(group_batch, -(-len(todo) // pool.workers))
                if size > 1:  # runs of one group size side by side: their models usually share a layout
                    todo = sorted(todo, key=lambda k: k.group.count("|"))
                _run(pool, runs, todo, sent, retry_failed, claimed, counts, bar, size)
            finally:
                bar.close()
                pool.close()
                for key in claimed:
                    runs.release(key)
        failures = _failures(runs, keys)
    return SweepReport(
        len(keys), len(keys) - len(todo) - len(kept), counts["done"], counts["failed"],
        time.perf_counter() - started, failures, len(kept),
    )  # fmt: skip


def _run(pool, runs: RunStore, todo, sent, retry_failed, claimed, counts, bar, size: int) -> None:
    """Claim and train `todo` on `pool`, in batches of up to `size` runs.

    A dead worker takes every run in flight on its pool down with it, so the runs lost that way are
    rerun one at a time afterwards: a run that dies again alone is the one that kills its worker and is
    recorded as failed; the others are done.
    """

    def jobs(keys: list[RunKey], size: int) -> Iterator[SweepJob]:
        batch: list[RunKey] = []
        for key in keys:
            if key in claimed or runs.claim(key, retry_failed=retry_failed):
                claimed.add(key)
                batch.append(key)
                if len(batch) == size:
                    yield SweepJob(sent, tuple(batch))
                    batch = []
        if batch:
            yield SweepJob(sent, tuple(batch))

    def train(keys: list[RunKey], size: int, last_chance: bool) -> list[RunKey]:
        lost = []
        for job, outcome in pool.imap_unordered(run_job, jobs(keys, size)):
            if isinstance(outcome, WorkerCrash):
                if not last_chance:
                    lost.extend(job.runs)
                    continue
                outcome = [failed_record(job.runs[0], f"WorkerCrash: {outcome.message}, also when run alone")]
            for record in outcome:
                runs.record(record)
                claimed.discard(RunKey(record.group, record.seed))
                counts[record.status] += 1
            bar.update(len(outcome))
            bar.set_postfix(done=counts["done"], failed=counts["failed"])
        return lost

    for key in train(todo, size, last_chance=False):
        train([key], 1, last_chance=True)


def _failures(runs: RunStore, keys: Sequence[RunKey]) -> tuple[tuple[RunKey, str], ...]:
    wanted = set(keys)
    found = {RunKey(r.group, r.seed): r.error or "" for r in runs.records("failed")}
    return tuple((k, found[k]) for k in keys if k in found and k in wanted)
