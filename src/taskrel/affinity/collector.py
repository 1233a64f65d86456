"""Base of the affinity collectors: collect every k-th step, average per epoch, aggregate.

A collector is a training callback and relies on nothing but the callback contract of
`taskrel.train.callbacks.Callback`, so it works in taskrel's trainers and in a user's own loop.
Per collected step the subclass returns a (K, K) matrix, rows = source tasks, columns = target
tasks. `matrix()` aggregates them:

* ``weighting="steps"`` (default): the plain time average over collected steps (ETAP eq. 6);
* ``weighting="validation"``: each epoch's mean counts, for target column j, in proportion to how
  much task j's best validation loss improved during that epoch (the first epoch against the
  loss before training, recorded by `on_train_begin`). Interactions late in training,
  when the tasks no longer generalise better, then stop diluting the estimate (on Chemical their
  affinity even anti-correlates with measured gains; see benchmarks/predictors_chemical.py).
"""

from __future__ import annotations

import time

import numpy as np

from taskrel.affinity.matrix import AffinityMatrix
from taskrel.errors import ConfigError
from taskrel.train.callbacks import Callback, StepContext

WEIGHTINGS = ("steps", "validation")


class AffinityCollector(Callback):
    """Collect a per-step (K, K) affinity every `every`-th call of `on_step`."""

    method = "affinity"

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ConfigError(f"every must be ≥ 1, got {every}")
        self.every = every
        self.reset()

    def reset(self) -> None:
        self._tasks: tuple[str, ...] = ()
        self._calls = 0
        self.steps = 0
        self.seconds = 0.0
        self.epoch_sums: list[np.ndarray] = []  # per closed epoch: sum of collected step matrices
        self.epoch_counts: list[int] = []
        self.epoch_val: list[dict[str, float] | None] = []
        self._sum: np.ndarray | None = None
        self._count = 0
        self.initial_val: dict[str, float] | None = None

    def on_train_begin(self, logs: dict) -> None:
        """Record the validation losses before training: the baseline of the first epoch's improvement."""
        self.initial_val = logs.get("val_loss")

    def on_step(self, ctx: StepContext) -> None:
        self._calls += 1
        if (self._calls - 1) % self.every:
            return
        started = time.perf_counter()
        if not self._tasks:
            self._tasks = ctx.tasks
        elif ctx.tasks != self._tasks:
            raise ConfigError(f"collector started with tasks {self._tasks}, now given {ctx.tasks}")
        value = self.collect(ctx)
        self._sum = value if self._sum is None else self._sum + value
        self._count += 1
        self.steps += 1
        self.seconds += time.perf_counter() - started

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self._count == 0:
            return
        self.epoch_sums.append(self._sum)
        self.epoch_counts.append(self._count)
        self.epoch_val.append(logs.get("val_loss"))
        self._sum, self._count = None, 0

    def collect(self, ctx: StepContext) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def matrix(self, weighting: str = "steps") -> AffinityMatrix:
        """Aggregated affinity A[source, target] (see the module docstring for `weighting`)."""
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        sums, counts = list(self.epoch_sums), list(self.epoch_counts)
        if self._count:
            sums.append(self._sum)
            counts.append(self._count)
        if not sums:
            raise ConfigError(f"{type(self).__name__} has not collected any step yet")
        values = np.sum(sums, axis=0) / np.sum(counts) if weighting == "steps" else self._validation_weighted()
        name = self.method if weighting == "steps" else f"{self.method}-validation"
        return AffinityMatrix(values, self._tasks, name, self.steps, self.seconds)

    def _validation_weighted(self) -> np.ndarray:
        if len(self.epoch_val) < 2 or any(v is None for v in self.epoch_val):
            raise ConfigError("validation weighting needs per-epoch validation losses (logs['val_loss']) of ≥ 2 epochs")
        val = np.array([[v[t] for t in self._tasks] for v in self.epoch_val])
        if self.initial_val is not None:
            val = np.vstack([[self.initial_val[t] for t in self._tasks], val])
        best = np.minimum.accumulate(val, axis=0)
        weights = best[:-1] - best[1:]  # improvement of the best validation loss during each epoch
        if self.initial_val is None:  # no baseline: the first epoch's improvement is unknown
            weights = np.vstack([np.zeros((1, len(self._tasks))), weights])
        stalled = [t for t, total in zip(self._tasks, weights.sum(axis=0), strict=True) if total <= 0]
        if stalled:
            raise ConfigError(f"validation loss of task(s) {stalled} never improved during training")
        means = np.stack([s / c for s, c in zip(self.epoch_sums, self.epoch_counts, strict=True)])
        return np.einsum("ej,eij->ij", weights, means) / weights.sum(axis=0)[None, :]
