"""Small auxiliary-learning problems for the weighting tests (by spec: ``tests/weighting/aux_problems.py:NAME``).

`regression` — one input x ~ N(0, I₈) feeds three regression tasks: ``main`` (y = xᵀw + noise, labelled
on only `MAIN_LABELS` training rows), ``helpful`` (the same w, labelled on every row) and ``noise``
(standard normal labels drawn independently of x: an exactly harmful auxiliary). `UserLoopRegression`
trains the same data with its own loop, which calls ``weighting.backward`` as documented.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from taskrel.data.single import SingleInputDataset
from taskrel.models import MultiTaskModel
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train import TrainConfig

TASKS = ("main", "helpful", "noise")
FEATURES, ROWS, MAIN_LABELS = 8, 400, 40
CONFIG = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, max_steps=300, max_epochs=40, patience=40,
                     stop_fraction=1.0)  # fmt: skip


def regression_data(seed: int = 0) -> SingleInputDataset:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=FEATURES)

    def part(n: int, labelled: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, FEATURES))
        y = np.stack([x @ w + 0.5 * rng.normal(size=n), x @ w + 0.1 * rng.normal(size=n), rng.normal(size=n)], 1)
        mask = np.ones((n, 3), dtype=bool)
        mask[labelled:, 0] = False
        return x.astype(np.float32), y.astype(np.float32), mask

    return SingleInputDataset("aux-regression", TASKS, part(ROWS, MAIN_LABELS), part(200, 200), part(200, 200))


def small_model(group: tuple[str, ...], seed: int) -> MultiTaskModel:
    trunk = nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh())
    return MultiTaskModel(trunk, {t: nn.Linear(16, 1) for t in group})


def regression() -> TorchProblem:
    return TorchProblem(regression_data(), small_model, name="aux-regression", loss="mse", config=CONFIG)
