"""Two real models for the collector tests: Chemical (one sub-batch per task) and an ETTh1 forecaster (one input).

A problem is (model, tasks, losses) with ``losses(module, task_indices) -> (len(task_indices),)``, the
contract of `TrialEvaluator`, so a test's own loop and the evaluator compute the same losses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from taskrel.models import MultiTaskModel, chemical_model, loss_function
from taskrel.train import StepContext, TrialEvaluator

ETT_CHANNELS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


@dataclass
class Problem:
    model: MultiTaskModel
    tasks: tuple[str, ...]
    losses: object  # (module, task indices) -> per-task losses
    separable: bool

    def context(self, optimizer, mode: str = "auto") -> StepContext:
        """The step context of the current parameters (losses with their graph, as a training loop has them)."""
        all_tasks = tuple(range(len(self.tasks)))
        losses = self.losses(self.model, all_tasks)
        evaluator = TrialEvaluator(self.model, self.losses, separable=self.separable, mode=mode)
        return StepContext(
            self.tasks,
            list(losses),
            self.model.shared_parameters(),
            optimizer,
            evaluator,
            task_parameters=[self.model.task_parameters(t) for t in self.tasks],
        )


def chemical_problem(chemical, rows: int = 24, seed: int = 0, dtype=torch.float64, tasks: int = 10) -> Problem:
    """ETAP's Chemical MLP on the first `rows` training rows of each of the first `tasks` tasks."""
    data = chemical.tasks[:tasks]
    tasks = tuple(t.name for t in data)
    model = chemical_model(tasks, seed=seed).to(dtype)
    x = torch.from_numpy(np.stack([t.train.x[:rows] for t in data])).to(dtype)
    y = torch.from_numpy(np.stack([t.train.y[:rows] for t in data])).to(dtype)
    loss = loss_function("binary")

    def losses(module, task_indices):
        index = list(task_indices)
        out = module.forward_stacked(x[index], [tasks[k] for k in index])
        return loss(out, y[index], reduction="none").mean(dim=1)

    return Problem(model, tasks, losses, separable=True)


def ett_problem(
    rows: int = 64,
    lookback: int = 24,
    horizon: int = 6,
    norm: bool = False,
    dropout: float = 0.0,
    seed: int = 0,
    dtype=torch.float32,
) -> Problem:
    """A forecaster of ETTh1: one window of all 7 channels in, each channel's next `horizon` hours out (a task each).

    The trunk is Linear → [BatchNorm1d] → ReLU → [Dropout] → Linear → ReLU; one Linear head per channel.
    """
    path = Path(os.environ["TASKREL_DATA"]) / "ett" / "ETTh1.csv"
    series = pd.read_csv(path, usecols=list(ETT_CHANNELS)).to_numpy(np.float32)
    series = (series - series[:8640].mean(axis=0)) / series[:8640].std(axis=0)
    starts = np.arange(rows) * 7
    x = torch.from_numpy(np.stack([series[s : s + lookback].reshape(-1) for s in starts])).to(dtype)
    y = torch.from_numpy(np.stack([series[s + lookback : s + lookback + horizon].T for s in starts])).to(dtype)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    layers = [nn.Linear(lookback * 7, 32)]
    layers += [nn.BatchNorm1d(32)] if norm else []
    layers += [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else []) + [nn.Linear(32, 16), nn.ReLU()]
    model = MultiTaskModel(nn.Sequential(*layers), {c: nn.Linear(16, horizon) for c in ETT_CHANNELS}).to(dtype)
    torch.random.set_rng_state(generator_state)

    def losses(module, task_indices):
        features = module.trunk(x)
        return torch.stack([((module.head(ETT_CHANNELS[k])(features) - y[:, k]) ** 2).mean() for k in task_indices])

    return Problem(model, ETT_CHANNELS, losses, separable=False)
