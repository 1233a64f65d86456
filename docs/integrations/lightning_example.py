"""Task affinity from a Lightning training, and the same training as a taskrel problem.

A LightningModule with a shared trunk and one head per task forecasts ETTh1 channels (the next hour's
value from the last 12 hours of all 7 channels). Run it: ``python docs/integrations/lightning_example.py``
(ETTh1.csv under $TASKREL_DATA/ett/). Sweep it: ``taskrel sweep --problem
docs/integrations/lightning_example.py:problem --groups all --seeds 1 --store runs.db --workers 2``.
Lines that are taskrel's end with ``# taskrel``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from taskrel.integrations.lightning import AffinityCallback, LightningProblem  # taskrel

TASKS = ("HUFL", "OT")
CHANNELS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
WINDOW = 12


class Forecaster(L.LightningModule):
    def __init__(self, tasks=TASKS, lr=3e-3):
        super().__init__()
        self.tasks, self.lr = tuple(tasks), lr
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(WINDOW * 7, 32), nn.ReLU())
        self.heads = nn.ModuleDict({t: nn.Linear(32, 1) for t in self.tasks})

    def task_losses(self, batch):
        x, y = batch
        features = self.trunk(x)
        return {t: nn.functional.mse_loss(self.heads[t](features)[:, 0], y[:, k]) for k, t in enumerate(self.tasks)}

    def training_step(self, batch, batch_idx):
        losses = self.task_losses(batch)
        return {"loss": sum(losses.values()), "task_losses": losses}

    def validation_step(self, batch, batch_idx):
        losses = self.task_losses(batch)
        for t, loss in losses.items():
            self.log(f"val_loss/{t}", loss)
        self.log("val_loss", sum(losses.values()))

    def test_step(self, batch, batch_idx):
        for t, loss in self.task_losses(batch).items():
            self.log(f"test_loss/{t}", loss)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class Windows(L.LightningDataModule):
    """The first `rows` hours of ETTh1, split 60/20/20 in time, standardised on the training hours."""

    def __init__(self, tasks=TASKS, rows=1500, batch_size=128, shuffle=True, seed=0):
        super().__init__()
        path = Path(os.environ.get("TASKREL_DATA", "~/.cache/taskrel")).expanduser() / "ett" / "ETTh1.csv"
        values = pd.read_csv(path, nrows=rows).drop(columns="date").to_numpy(np.float32)
        cut = int(0.6 * rows)
        values = (values - values[:cut].mean(axis=0)) / values[:cut].std(axis=0)
        x = torch.from_numpy(np.stack([values[i : i + WINDOW] for i in range(rows - WINDOW)]))
        y = torch.from_numpy(values[WINDOW:, [CHANNELS.index(t) for t in tasks]])
        bounds = [0, cut - WINDOW, int(0.8 * rows) - WINDOW, rows - WINDOW]
        self.splits = [TensorDataset(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed

    def train_dataloader(self):
        order = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.splits[0], self.batch_size, shuffle=self.shuffle, generator=order)

    def val_dataloader(self):
        return DataLoader(self.splits[1], batch_size=len(self.splits[1]))

    def test_dataloader(self):
        return DataLoader(self.splits[2], batch_size=len(self.splits[2]))


# Any stage of taskrel trains groups of tasks with this: taskrel sweep / gains / pipeline --problem FILE:problem
TRAINER = {"max_epochs": 3, "callbacks": [EarlyStopping("val_loss", patience=2), ModelCheckpoint(monitor="val_loss")]}
problem = LightningProblem(  # taskrel
    lambda group, seed: Forecaster(group),  # taskrel
    lambda group, seed: Windows(group, seed=seed),  # taskrel
    TRAINER,  # taskrel
    tasks=TASKS,  # taskrel
)  # taskrel


def main(out: Path = Path("lightning-affinity")) -> dict:
    L.seed_everything(0, verbose=False)
    module, data = Forecaster(), Windows()
    affinity = AffinityCallback(["etap", "tag"])  # taskrel
    trainer = L.Trainer(max_epochs=3, callbacks=[affinity], num_sanity_val_steps=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=data)
    out.mkdir(exist_ok=True)
    for name, matrix in affinity.matrices.items():  # taskrel
        matrix.to_csv(out / f"{name}.csv")  # taskrel
        matrix.plot(out / f"{name}.png")  # taskrel
        print(matrix.to_frame().round(3))  # taskrel: A[source, target]
    return affinity.matrices  # taskrel


if __name__ == "__main__":
    main()
