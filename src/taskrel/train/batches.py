"""Row sampling for multi-task training: upsampling and per-task mini-batch streams.

Every step draws one mini-batch from each task of the group. With upsampling (ETAP's protocol),
each task's training rows are first resampled with replacement, class-balanced, up to the size of
the largest task in the group, so one epoch is one pass over every task and all sub-batches have
the same size. Without it, smaller tasks cycle through their rows during an epoch of the largest.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def upsample_rows(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of `y` extended to `size` rows: all rows once, plus class-balanced draws.

    Extra rows are drawn with replacement from each class in proportion to its share, so the
    class balance of the task is kept.
    """
    n = len(y)
    if size <= n:
        return np.arange(n)
    extra = size - n
    classes, counts = np.unique(y, return_counts=True)
    quotas = np.floor(extra * counts / n).astype(int)
    for k in rng.permutation(len(classes))[: extra - quotas.sum()]:
        quotas[k] += 1
    drawn = [rng.choice(np.flatnonzero(y == c), q, replace=True) for c, q in zip(classes, quotas, strict=True)]
    return np.concatenate([np.arange(n), *drawn])


class BatchPlan:
    """Per-task index streams for one training run; `epoch()` yields the step batches of one epoch.

    Each yielded item is a list (one entry per task, in group order) of row indices into that
    task's (upsampled) training rows. All entries of one step have the same length.
    """

    def __init__(self, sizes: Sequence[int], batch_size: int, rng: np.random.Generator) -> None:
        self.sizes = list(sizes)
        self.batch_size = batch_size
        self.rng = rng
        self.epoch_rows = max(self.sizes)
        self._queues = [np.empty(0, dtype=np.int64) for _ in self.sizes]

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.epoch_rows // self.batch_size)

    def _take(self, k: int, count: int) -> np.ndarray:
        while len(self._queues[k]) < count:
            self._queues[k] = np.concatenate([self._queues[k], self.rng.permutation(self.sizes[k])])
        out, self._queues[k] = self._queues[k][:count], self._queues[k][count:]
        return out

    def epoch(self) -> Iterator[list[np.ndarray]]:
        remaining = self.epoch_rows
        while remaining > 0:
            count = min(self.batch_size, remaining)
            remaining -= count
            yield [self._take(k, count) for k in range(len(self.sizes))]
