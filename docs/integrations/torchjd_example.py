"""Task affinity from a torchjd training loop (UPGrad), and the same aggregator in taskrel's sweeps.

A shared trunk and one head per task forecast ETTh1 channels (the next hour's value from the last 12
hours of all 7 channels), trained with torchjd's Jacobian descent. ETAP reads the Jacobian torchjd
computes. Run it: ``python docs/integrations/torchjd_example.py`` (ETTh1.csv under $TASKREL_DATA/ett/).
Sweep it with UPGrad: ``taskrel sweep --problem docs/integrations/torchjd_example.py:problem --groups all
--seeds 1 --store runs.db``. Lines that are taskrel's end with ``# taskrel``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torchjd.aggregation import UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward

from taskrel.affinity import EtapAffinity  # taskrel
from taskrel.data.single import SingleInputDataset  # taskrel
from taskrel.integrations.torchjd import AggregatorWeighting, step_context  # taskrel
from taskrel.models import MultiTaskModel  # taskrel
from taskrel.problems.torch_problem import TorchProblem  # taskrel
from taskrel.train import TrainConfig  # taskrel

TASKS = ("HUFL", "MUFL", "OT")
CHANNELS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
WINDOW = 12


def windows(tasks=TASKS, rows=1500):
    """(x, y) of the first `rows` hours of ETTh1, split 60/20/20 in time, standardised on the training hours."""
    path = Path(os.environ.get("TASKREL_DATA", "~/.cache/taskrel")).expanduser() / "ett" / "ETTh1.csv"
    values = pd.read_csv(path, nrows=rows).drop(columns="date").to_numpy(np.float32)
    cut = int(0.6 * rows)
    values = (values - values[:cut].mean(axis=0)) / values[:cut].std(axis=0)
    x = np.stack([values[i : i + WINDOW] for i in range(rows - WINDOW)])
    y = values[WINDOW:, [CHANNELS.index(t) for t in tasks]]
    bounds = [0, cut - WINDOW, int(0.8 * rows) - WINDOW, rows - WINDOW]
    return [(torch.from_numpy(x[a:b]), torch.from_numpy(y[a:b])) for a, b in itertools.pairwise(bounds)]


def forecaster(group, seed):
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(WINDOW * 7, 32), nn.ReLU())
    return MultiTaskModel(trunk, {t: nn.Linear(32, 1) for t in group})


def task_losses(model, x, y, tasks=TASKS):
    return [nn.functional.mse_loss(out, y[:, k]) for k, out in enumerate(model.forward_all(x, tasks))]


def train(epochs=3, seed=0, batch_size=128):
    """The user's torchjd loop: Jacobian descent with UPGrad, ETAP watching it."""
    torch.manual_seed(seed)
    model = forecaster(TASKS, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    aggregator, shared = UPGrad(), list(model.trunk.parameters())
    (x, y), (x_val, y_val), _ = windows()

    def validation():
        with torch.no_grad():
            return {t: float(loss) for t, loss in zip(TASKS, task_losses(model, x_val, y_val), strict=True)}

    etap = EtapAffinity()  # taskrel
    etap.on_train_begin({"val_loss": validation()})  # taskrel
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for rows in torch.randperm(len(x), generator=order).split(batch_size):
            features = model.trunk(x[rows])
            losses = [nn.functional.mse_loss(model.head(t)(features)[:, 0], y[rows, k]) for k, t in enumerate(TASKS)]
            optimizer.zero_grad()
            mtl_backward(losses, features)
            etap.on_step(step_context(TASKS, losses, shared, optimizer))  # taskrel: reads torchjd's Jacobian
            jac_to_grad(shared, aggregator)
            optimizer.step()
        etap.on_epoch_end(epoch, {"val_loss": validation()})  # taskrel
    return model, etap.matrix()  # taskrel: A[source, target]


def data():
    return SingleInputDataset("etth1-window", TASKS, *windows())  # taskrel


# Every group of a sweep or the pipeline trains with UPGrad, as the loop above does
problem = TorchProblem(  # taskrel
    data(), forecaster, loss="mse", weighting=AggregatorWeighting(UPGrad()),  # taskrel
    config=TrainConfig(optimizer="adam", lr=3e-3, batch_size=128, max_epochs=3),  # taskrel
)  # taskrel


if __name__ == "__main__":
    _, matrix = train()
    print(matrix.to_frame().round(3))
    print(problem.train(["HUFL", "OT"], seed=0).test_loss)
