"""Executors that run sweep jobs: in this process, in a local process pool, or on a Ray cluster.

All three expose `imap_unordered(fn, jobs)`: `jobs` is consumed lazily (at most `in_flight` jobs
are outstanding), and ``(job, outcome)`` pairs are yielded as they finish. The outcome is what
``fn(job)`` returned, or a `WorkerCrash` when the process running the job died (killed, out of
memory): the pool is then restarted and the other jobs go on. The job function is the same for
all, so the same seeds give the same numbers whichever executor ran them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from taskrel.choices import EXECUTORS
from taskrel.errors import ConfigError


@dataclass(frozen=True)
class WorkerCrash:
    """The outcome of a job whose worker process died before returning."""

    message: str


class InlineExecutor:
    """Runs jobs one after another in the calling process (workers=1)."""

    workers = 1

    def imap_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        for job in jobs:
            yield job, fn(job)

    def close(self) -> None:
        pass


class LocalExecutor:
    """A pool of `workers` fresh processes (spawned, so no state leaks from the parent)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be ≥ 1, got {workers}")
        self.workers = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def imap_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        def next_done(pending: list[tuple[Any, Future]]) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Future]]]:
            done, _ = wait([future for _, future in pending], return_when=FIRST_COMPLETED)
            broken = any(isinstance(future.exception(), BrokenProcessPool) for future in done)
            if not broken:
                return [(job, f.result()) for job, f in pending if f in done], [
                    (j, f) for j, f in pending if f not in done
                ]
            # A worker died: the pool is unusable and every run still on it is lost with it.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            crash = WorkerCrash("a worker process died (killed or out of memory) while this run was in its pool")
            lost = lambda f: not f.done() or isinstance(f.exception(), BrokenProcessPool)  # noqa: E731
            return [(job, crash if lost(f) else f.result()) for job, f in pending], []

        return _bounded(lambda job: (job, self._pool.submit(fn, job)), next_done, jobs, 2 * self.workers)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Runs jobs as Ray tasks: on the cluster at `address`, or on a local cluster it starts.

    The local cluster binds every port to 127.0.0.1 and is shut down by `close()`.
    """

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        try:
            import ray  # optional dependency
        except ImportError as exc:
            raise ConfigError("the Ray executor needs Ray: pip install 'taskrel[ray]'") from exc
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            if address is None:
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                ray.init(
                    num_cpus=workers or os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                    object_store_memory=200 * 1024 * 1024,
                )
            else:
                ray.init(address=address, log_to_driver=False)
        self.workers = int(ray.cluster_resources().get("CPU", 1))

    def imap_unordered(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        remote = self._ray.remote(num_cpus=1)(fn)  # Ray itself retries a task whose worker died

        def next_done(pending: list[tuple[Any, Any]]) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
            done, _ = self._ray.wait([ref for _, ref in pending], num_returns=1)
            finished = [(job, ref) for job, ref in pending if ref in done]
            rest = [(job, ref) for job, ref in pending if ref not in done]
            results = []
            for job, ref in finished:
                try:
                    results.append((job, self._ray.get(ref)))
                except self._ray.exceptions.RayError as exc:  # the worker died after Ray's own retries
                    results.append((job, WorkerCrash(f"the Ray worker died: {type(exc).__name__}")))
            return results, rest

        return _bounded(lambda job: (job, remote.remote(job)), next_done, jobs, 2 * self.workers)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def _bounded(
    submit: Callable[[Any], Any],
    next_done: Callable[[list], tuple[list[Any], list]],
    jobs: Iterable[Any],
    in_flight: int,
) -> Iterator[Any]:
    """Keep at most `in_flight` submitted jobs, pulling `jobs` lazily; yield results as they finish."""
    pending: list = []
    source = iter(jobs)
    exhausted = False
    while True:
        while not exhausted and len(pending) < in_flight:
            job = next(source, None)
            if job is None:
                exhausted = True
            else:
                pending.append(submit(job))
        if not pending:
            return
        results, pending = next_done(pending)
        yield from results


def make_executor(kind: str = "local", workers: int = 1, address: str | None = None):
    """An executor by name: "local" (inline for one worker, else a process pool) or "ray"."""
    if kind == "local":
        if address is not None:
            raise ConfigError("--address is only meaningful with the Ray executor")
        return InlineExecutor() if workers == 1 else LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, address)
    raise ConfigError(f"unknown executor {kind!r}; use one of {EXECUTORS}")
