"""Base of the affinity collectors: collect every k-th step, average, time, return the matrix.

A collector is a training callback: the `Trainer` calls `on_step(ctx)` before every update, and a
user's own loop can do the same with a `StepContext` it builds. Per collected step the subclass
returns a (K, K) matrix with rows = source tasks and columns = target tasks; `matrix()` returns
their time average (ETAP eq. 6) as an `AffinityMatrix`.
"""

from __future__ import annotations

import time

import numpy as np

from taskrel.affinity.matrix import AffinityMatrix
from taskrel.errors import ConfigError
from taskrel.train.callbacks import Callback, StepContext


class AffinityCollector(Callback):
    """Collect a per-step (K, K) affinity every `every`-th call of `on_step`."""

    method = "affinity"

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ConfigError(f"every must be ≥ 1, got {every}")
        self.every = every
        self.reset()

    def reset(self) -> None:
        self._sum: np.ndarray | None = None
        self._tasks: tuple[str, ...] = ()
        self._calls = 0
        self.steps = 0
        self.seconds = 0.0

    def on_step(self, ctx: StepContext) -> None:
        self._calls += 1
        if (self._calls - 1) % self.every:
            return
        started = time.perf_counter()
        if self._sum is None:
            self._tasks = ctx.tasks
            self._sum = np.zeros((len(ctx.tasks), len(ctx.tasks)))
        elif ctx.tasks != self._tasks:
            raise ConfigError(f"collector started with tasks {self._tasks}, now given {ctx.tasks}")
        self._sum += self.collect(ctx)
        self.steps += 1
        self.seconds += time.perf_counter() - started

    def collect(self, ctx: StepContext) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def matrix(self) -> AffinityMatrix:
        """Time-averaged affinity A[source, target] over the collected steps."""
        if self._sum is None:
            raise ConfigError(f"{type(self).__name__} has not collected any step yet")
        return AffinityMatrix(self._sum / self.steps, self._tasks, self.method, self.steps, self.seconds)
