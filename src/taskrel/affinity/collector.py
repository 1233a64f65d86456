"""Base of the affinity collectors: collect every k-th step, average per epoch, aggregate.

A collector is a training callback and relies on nothing but the callback contract of
`taskrel.train.callbacks.Callback`, so it works in taskrel's trainers and in a user's own loop.
`on_step` leaves the caller's graph, parameters, buffers, `.grad`, optimiser state and random
number generators as it found them: training with and without a collector is the same.
Per collected step the subclass returns a (K, K) tensor on the parameters' device, rows = source
tasks, columns = target tasks, and the entries it observed (a subsampling collector observes
only some); sums stay on the device and reach the host only in `matrix()`, which aggregates:

* ``weighting="steps"``: the plain time average over collected steps (ETAP eq. 6), entry by entry;
* ``weighting="validation"``: each epoch's mean counts, for target column j, in proportion to how
  much task j's best validation loss improved during that epoch (the first epoch against the
  loss before training, recorded by `on_train_begin`). Interactions late in training,
  when the tasks no longer generalise better, then stop diluting the estimate. A task whose best
  validation loss never improved (the joint training never helped it: negative transfer, which the
  affinity should show, not hide) has no such weights; its column is weighted by the epochs'
  collected steps instead, and the matrix lists it in `stalled`.

`weighting=` of the constructor is the default of `matrix()`; None takes the class's `default_weighting`.
`state_dict()` / `load_state_dict()` hold the collection so far, so a resumed training run (e.g. from a
checkpoint) continues the same sums.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from taskrel.affinity.matrix import AffinityMatrix
from taskrel.choices import AFFINITY_WEIGHTINGS as WEIGHTINGS
from taskrel.errors import ConfigError
from taskrel.train.callbacks import Callback, StepContext


class AffinityCollector(Callback):
    """Collect a per-step (K, K) affinity every `every`-th call of `on_step`."""

    method = "affinity"
    default_weighting = "steps"

    def __init__(self, every: int = 1, weighting: str | None = None) -> None:
        if every < 1:
            raise ConfigError(f"every must be ≥ 1, got {every}")
        weighting = self.default_weighting if weighting is None else weighting
        _check_weighting(weighting)
        self.every = every
        self.weighting = weighting
        self.reset()

    def reset(self) -> None:
        self._tasks: tuple[str, ...] = ()
        self._calls = 0
        self.steps = 0
        self.seconds = 0.0
        self.epoch_sums: list[torch.Tensor] = []  # per closed epoch: sum of collected step matrices
        self.epoch_counts: list[torch.Tensor] = []  # per closed epoch: how often each entry was observed
        self.epoch_val: list[dict[str, float] | None] = []
        self._sum: torch.Tensor | None = None
        self._count: torch.Tensor | None = None
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
        value, observed = self.collect(ctx)
        value = value.detach().to(torch.float64)
        if observed is not None:
            observed = observed.to(value)
            value = value * observed
        if self._sum is None:
            self._sum = value
            self._count = torch.ones_like(value) if observed is None else observed
        else:  # sums restored by `load_state_dict` may sit on another device
            self._sum = self._sum.to(value.device) + value
            self._count = self._count.to(value.device) + (1.0 if observed is None else observed)
        self.steps += 1
        self.seconds += time.perf_counter() - started

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self._sum is None:
            return
        self.epoch_sums.append(self._sum)
        self.epoch_counts.append(self._count)
        self.epoch_val.append(logs.get("val_loss"))
        self._sum = self._count = None

    def state_dict(self) -> dict:
        """The collection so far: tasks, counters, per-epoch sums and validation losses, the open epoch's sums."""
        return {
            "tasks": list(self._tasks), "calls": self._calls, "steps": self.steps, "seconds": self.seconds,
            "epoch_sums": list(self.epoch_sums), "epoch_counts": list(self.epoch_counts),
            "epoch_val": list(self.epoch_val), "sum": self._sum, "count": self._count, "initial_val": self.initial_val,
        }  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Continue the collection of `state_dict()` (its settings, e.g. `every`, are the constructor's)."""
        self._tasks = tuple(state["tasks"])
        self._calls, self.steps, self.seconds = int(state["calls"]), int(state["steps"]), float(state["seconds"])
        self.epoch_sums, self.epoch_counts = list(state["epoch_sums"]), list(state["epoch_counts"])
        self.epoch_val = list(state["epoch_val"])
        self._sum, self._count, self.initial_val = state["sum"], state["count"], state["initial_val"]

    def collect(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor | None]:  # pragma: no cover - abstract
        """This step's (K, K) values and which entries they observe (None: all)."""
        raise NotImplementedError

    def matrix(self, weighting: str | None = None) -> AffinityMatrix:
        """Aggregated affinity A[source, target] (see the module docstring for `weighting`)."""
        weighting = self.weighting if weighting is None else weighting
        _check_weighting(weighting)
        sums, counts = list(self.epoch_sums), list(self.epoch_counts)
        if self._sum is not None:
            sums.append(self._sum)
            counts.append(self._count)
        if not sums:
            raise ConfigError(f"{type(self).__name__} has not collected any step yet")
        sums = torch.stack([s.cpu() for s in sums]).numpy()
        counts = torch.stack([c.cpu() for c in counts]).numpy()
        stalled: tuple[str, ...] = ()
        if weighting == "steps":
            total = counts.sum(axis=0)
            _check_observed(total > 0, self._tasks)
            values = sums.sum(axis=0) / total
        else:
            n = len(self.epoch_sums)
            values, stalled = self._validation_weighted(sums[:n], counts[:n])
        name = self.method if weighting == "steps" else f"{self.method}-validation"
        return AffinityMatrix(values, self._tasks, name, self.steps, self.seconds, stalled)

    def _validation_weighted(self, sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
        if len(self.epoch_val) < 2 or any(v is None for v in self.epoch_val):
            raise ConfigError("validation weighting needs per-epoch validation losses (logs['val_loss']) of ≥ 2 epochs")
        val = np.array([[v[t] for t in self._tasks] for v in self.epoch_val])
        if self.initial_val is not None:
            val = np.vstack([[self.initial_val[t] for t in self._tasks], val])
        best = np.minimum.accumulate(val, axis=0)
        weights = best[:-1] - best[1:]  # improvement of the best validation loss during each epoch
        if self.initial_val is None:  # no baseline: the first epoch's improvement is unknown
            weights = np.vstack([np.zeros((1, len(self._tasks))), weights])
        stalled = weights.sum(axis=0) <= 0
        seen = counts > 0
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=seen)
        per_entry = weights[:, None, :] * seen  # epoch e's weight of entry (i, j), where it was observed
        per_entry[:, :, stalled] = counts[:, :, stalled]  # columns that never improved: weighted by steps
        total = per_entry.sum(axis=0)
        _check_observed(total > 0, self._tasks)
        names = tuple(t for t, s in zip(self._tasks, stalled, strict=True) if s)
        return (per_entry * means).sum(axis=0) / total, names


def _check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def _check_observed(observed: np.ndarray, tasks: tuple[str, ...]) -> None:
    if not observed.all():
        i, j = np.argwhere(~observed)[0]
        raise ConfigError(
            f"affinity {tasks[i]!r} → {tasks[j]!r} was never observed (with weight > 0); collect more steps or pairs"
        )
