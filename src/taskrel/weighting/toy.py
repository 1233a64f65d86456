"""AuxiNash's illustrative problem: 2-D linear regression with a helpful and a harmful auxiliary task.

All three tasks fit one shared linear map y = xᵀw (x ~ N(0, I₂)). The main task's targets are
x·W* plus heavy noise (σ = 20·σ_h); the helpful auxiliary task has the same W* with little noise
(σ_h = 0.25); the harmful one has W_harm = (−1, −4). Training follows the paper: 1000 samples,
Adam(1e-2), batch 256, from w = `W_START`. A method that learns to ignore the harmful task recovers W* far better
than one that balances all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from taskrel.errors import ConfigError
from taskrel.train.loop import torch_threads
from taskrel.weighting.auxinash import AuxiNash
from taskrel.weighting.methods import LinearScalarisation, NashMTL, WeightingMethod

TASKS = ("main", "helpful", "harmful")
W_MAIN = (1.0, 1.0)
W_HARMFUL = (-1.0, -4.0)
SIGMA_AUX = 0.25
SIGMA_MAIN = 20 * SIGMA_AUX
TOY_METHODS = ("stl", "ls", "nash_mtl", "auxinash")
#: Where training starts: far from all three optima, so the weighting acts during a long approach.
W_START = (4.0, -4.0)


@dataclass(frozen=True)
class ToyData:
    """Inputs (n, 2) and targets (3, n) for the train and test sets; row order = `TASKS`."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass
class ToyRun:
    """One trained model: its main-task test MSE, weights, and (AuxiNash) preference history."""

    method: str
    main_test_mse: float
    w: list[float]
    preference_steps: list[int] = field(default_factory=list)
    preferences: list[list[float]] = field(default_factory=list)


def toy_data(seed: int, n_train: int = 1000, n_test: int = 10_000) -> ToyData:
    """Sample the problem; the test set is large so its MSE has little sampling noise."""
    rng = np.random.default_rng(seed)
    truths = np.array([W_MAIN, W_MAIN, W_HARMFUL])
    noise = np.array([SIGMA_MAIN, SIGMA_AUX, SIGMA_AUX])[:, None]

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = rng.normal(size=(n, 2))
        y = truths @ x.T + noise * rng.normal(size=(3, n))
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return ToyData(x_train, y_train, x_test, y_test)


def train_toy(
    method: str,
    data: ToyData,
    seed: int,
    epochs: int = 1000,
    batch_size: int = 256,
    quiet: bool = True,
    auxinash_options: dict | None = None,
) -> ToyRun:
    """Train the shared linear map with one of `TOY_METHODS` in a plain PyTorch loop (one thread).

    `auxinash_options` go to the `AuxiNash` constructor (e.g. ``{"meta_lr": 0.05}``).
    """
    if method not in TOY_METHODS:
        raise ConfigError(f"unknown toy method {method!r}; use one of {TOY_METHODS}")
    with torch_threads(1):
        return _train_toy(method, data, seed, epochs, batch_size, quiet, auxinash_options)


def _train_toy(
    method: str,
    data: ToyData,
    seed: int,
    epochs: int,
    batch_size: int,
    quiet: bool,
    auxinash_options: dict | None,
) -> ToyRun:
    torch.manual_seed(seed)
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([W_START]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    shuffler = torch.Generator().manual_seed(seed)
    n = len(data.x_train)

    def task_losses(rows: torch.Tensor) -> list[torch.Tensor]:
        prediction = model(data.x_train[rows]).squeeze(-1)
        return [torch.mean((prediction - data.y_train[k, rows]) ** 2) for k in range(len(TASKS))]

    def main_loss_on_fresh_batch() -> torch.Tensor:
        return task_losses(torch.randperm(n, generator=shuffler)[:batch_size])[0]

    weighting: WeightingMethod | None = {
        "stl": None,
        "ls": LinearScalarisation(TASKS),
        "nash_mtl": NashMTL(TASKS),
        "auxinash": AuxiNash(TASKS, meta_loss=main_loss_on_fresh_batch, **(auxinash_options or {})),
    }[method]
    run = ToyRun(method, float("nan"), [])
    for _ in tqdm(range(epochs), desc=f"toy {method}", disable=quiet):
        for rows in torch.randperm(n, generator=shuffler).split(batch_size):
            optimizer.zero_grad()
            losses = task_losses(rows)
            if weighting is None:
                losses[0].backward()
            else:
                weighting.backward(losses, list(model.parameters()))
            optimizer.step()
            if isinstance(weighting, AuxiNash) and weighting.step % weighting.hypergrad_every == 0:
                run.preference_steps.append(weighting.step)
                run.preferences.append((weighting.preferences / weighting.preferences.sum()).tolist())
    with torch.no_grad():
        prediction = model(data.x_test).squeeze(-1)
        run.main_test_mse = float(torch.mean((prediction - data.y_test[0]) ** 2))
    run.w = model.weight.detach().squeeze(0).tolist()
    return run
