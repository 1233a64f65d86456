"""Problems as a user writes them, outside `src/`: loaded by spec (``tests/user_problems.py:NAME``).

* `forecast` — single-input multi-output on real data: a window of all 7 ETTh1 channels feeds one
  shared trunk, each of three channels is a task (next hour's value), built with `TorchProblem`.
* `UserLoopForecast` — the same model and data trained by the user's own loop (no taskrel trainer),
  following the callback contract.
* `exploding` / `killing` — `forecast` whose training raises, or kills its own process, for the
  group named in ``$TASKREL_TEST_BAD_GROUP`` (nothing happens when it is unset).
* `shifted` — `forecast` plus a task "shift" whose target is +1 in training and −1 in validation and
  test: whatever the model learns for it makes its validation loss worse (it never improves).
Every training appends "group seed pid" to ``$TASKREL_TEST_LOG`` when that is set.
"""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from taskrel.data.single import SingleInputDataset
from taskrel.models import MultiTaskModel
from taskrel.problems.protocol import GroupResult
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train import StepContext, TrainConfig
from taskrel.train.callbacks import TrialEvaluator

TASKS = ("HUFL", "MUFL", "OT")
WINDOW = 12
# stop_fraction=1: the user loop below watches and reports every validation row, as the built-in trainer then does
CONFIG = TrainConfig(optimizer="adam", lr=3e-3, batch_size=128, max_epochs=3, patience=10, max_steps=10_000,
                     stop_fraction=1.0)  # fmt: skip


def forecast_data(rows: int = 1500) -> SingleInputDataset:
    """Windows of the first `rows` hours of ETTh1 (split 60/20/20 in time), standardised on training rows."""
    path = Path(os.environ.get("TASKREL_DATA", "../shared/external_data")) / "ett" / "ETTh1.csv"
    values = pd.read_csv(path, nrows=rows).drop(columns="date").to_numpy(np.float32)
    cut = int(0.6 * rows)
    values = (values - values[:cut].mean(axis=0)) / values[:cut].std(axis=0)
    channels = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    columns = [channels.index(t) for t in TASKS]
    x = np.stack([values[i : i + WINDOW] for i in range(rows - WINDOW)])
    y = values[WINDOW:, columns]
    bounds = [0, cut - WINDOW, int(0.8 * rows) - WINDOW, rows - WINDOW]
    parts = [(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]
    return SingleInputDataset("etth1-window", TASKS, *parts, source=str(path))


def forecaster(group: tuple[str, ...], seed: int) -> MultiTaskModel:
    """A shared MLP over the flattened window, one linear head per task (torch's generator, seeded)."""
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(WINDOW * 7, 16), nn.ReLU())
    return MultiTaskModel(trunk, {t: nn.Linear(16, 1) for t in group})


def _log(group, seed) -> None:
    if os.environ.get("TASKREL_TEST_LOG"):
        with open(os.environ["TASKREL_TEST_LOG"], "a") as log:
            log.write(f"{'|'.join(group)} {seed} {os.getpid()}\n")


class LoggedProblem(TorchProblem):
    def train(self, group, seed, *, callbacks=(), weighting=None):
        _log(group, seed)
        return super().train(group, seed, callbacks=callbacks, weighting=weighting)


def forecast() -> TorchProblem:
    return LoggedProblem(forecast_data(), forecaster, name="etth1-window", loss="mse", config=CONFIG)


class Misbehaving(LoggedProblem):
    """Raises (`how="raise"`) or SIGKILLs its own process (`how="kill"`) for $TASKREL_TEST_BAD_GROUP."""

    def __init__(self, how: str) -> None:
        super().__init__(forecast_data(), forecaster, name="etth1-window", loss="mse", config=CONFIG)
        self.how = how

    def train(self, group, seed, *, callbacks=(), weighting=None):
        if "|".join(group) == os.environ.get("TASKREL_TEST_BAD_GROUP"):
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"simulated divergence of {'|'.join(group)}")
        return super().train(group, seed, callbacks=callbacks, weighting=weighting)


def shifted() -> TorchProblem:
    data = forecast_data()
    parts = []
    for part, level in ((data.train, 1.0), (data.val, -1.0), (data.test, -1.0)):
        shift = np.full((len(part.y), 1), level, dtype=np.float32)
        parts.append((part.x, np.concatenate([part.y, shift], axis=1)))
    tasks = (*TASKS, "shift")
    return TorchProblem(SingleInputDataset("etth1-window-shifted", tasks, *parts), forecaster, loss="mse",
                        config=CONFIG)  # fmt: skip


def exploding() -> Misbehaving:
    return Misbehaving("raise")


def killing() -> Misbehaving:
    return Misbehaving("kill")


class UserLoopForecast:
    """The same forecasting problem trained by a plain PyTorch loop that follows the callback contract.

    Fixed `epochs` (no early stopping), Adam, one shuffled pass over the training rows per epoch in
    batches of `batch` rows (the permutation drawn as `numpy.random.default_rng([seed, 1])` does).
    """

    def __init__(self, epochs: int = 3, batch: int = 128, lr: float = 3e-3) -> None:
        self.data = forecast_data()
        self.tasks = list(TASKS)
        self.epochs, self.batch, self.lr = epochs, batch, lr

    def fingerprint(self) -> dict:
        return {"name": "etth1-window-user-loop", "epochs": self.epochs, "batch": self.batch, "lr": self.lr}

    def _losses(self, model, x, y, group) -> list[torch.Tensor]:
        outputs = model.forward_all(x, group)
        return [((out - y[:, k]) ** 2).reshape(len(y), -1).mean(dim=1).mean() for k, out in enumerate(outputs)]

    def _val(self, model, group, split="val") -> dict[str, float]:
        part = getattr(self.data, split)
        columns = self.data.columns(group)
        model.eval()
        with torch.no_grad():
            outputs = model.forward_all(torch.from_numpy(part.x), group)
            y = torch.from_numpy(part.y[:, columns])
            losses = [float((out - y[:, k]).pow(2).double().mean()) for k, out in enumerate(outputs)]
        model.train()
        return dict(zip(group, losses, strict=True))

    def train(self, group, seed, *, callbacks=(), weighting=None) -> GroupResult:
        group = [t for t in self.tasks if t in set(group)]
        torch.manual_seed(seed)
        model = forecaster(tuple(group), seed)
        torch.manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr, foreach=True)
        x = torch.from_numpy(self.data.train.x)
        y = torch.from_numpy(self.data.train.y[:, self.data.columns(group)])
        rng = np.random.default_rng([seed, 1])
        for cb in callbacks:
            cb.on_train_begin({"val_loss": self._val(model, group)})
        step = 0
        for epoch in range(self.epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), self.batch):
                rows = torch.from_numpy(order[start : start + self.batch])
                optimizer.zero_grad(set_to_none=True)
                xb, yb = x[rows], y[rows]
                losses = self._losses(model, xb, yb, group)
                evaluate = TrialEvaluator(  # lookahead collectors (TAG, PTG) evaluate trial parameters with it
                    model, lambda m, tasks, xb=xb, yb=yb: torch.stack(self._losses(m, xb, yb, group))[list(tasks)]
                )
                ctx = StepContext(
                    group, losses, model.shared_parameters(), optimizer, evaluate, step=step, epoch=epoch,
                    task_parameters=[model.task_parameters(t) for t in group],  # PTG's trial steps move the heads
                )  # fmt: skip
                for cb in callbacks:
                    cb.on_step(ctx)
                torch.stack(losses).sum().backward()
                optimizer.step()
                step += 1
            for cb in callbacks:
                cb.on_epoch_end(epoch, {"val_loss": self._val(model, group)})
        for cb in callbacks:
            cb.on_train_end()
        return GroupResult(self._val(model, group), self._val(model, group, "test"), steps=step)
