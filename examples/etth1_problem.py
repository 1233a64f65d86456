"""Your own single-input problem in 30 lines: ETTh1 channels forecast from one shared window."""

import os

import numpy as np
import pandas as pd
from torch import nn

from taskrel.data.single import SingleInputDataset
from taskrel.models import MultiTaskModel
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train import TrainConfig

CHANNELS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def windows(values: np.ndarray, start: int, stop: int, length: int = 24):
    x = np.stack([values[i - length : i].T for i in range(start, stop)])  # (n, 7 channels, 24 hours)
    return x, values[start:stop]  # y: (n, 7), the next hour of every channel; column k = task k


def model(group: tuple[str, ...], seed: int) -> MultiTaskModel:
    trunk = nn.Sequential(nn.Conv1d(7, 16, kernel_size=5), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 20, 32), nn.ReLU())
    return MultiTaskModel(trunk, {channel: nn.Linear(32, 1) for channel in group})  # one head per task


def problem(hours: int = 4000, **train_options) -> TorchProblem:
    path = os.path.join(os.environ.get("TASKREL_DATA", "data"), "ett", "ETTh1.csv")
    values = pd.read_csv(path, nrows=hours)[CHANNELS].to_numpy(np.float32)
    train_end, val_end = int(0.6 * hours), int(0.8 * hours)
    values = (values - values[:train_end].mean(0)) / values[:train_end].std(0)
    splits = [windows(values, 24, train_end), windows(values, train_end, val_end), windows(values, val_end, hours)]
    data = SingleInputDataset("etth1-next-hour", CHANNELS, *splits)
    config = TrainConfig(**{"optimizer": "adam", "lr": 1e-3, "batch_size": 256, "patience": 5, **train_options})
    return TorchProblem(data, model, loss="mse", config=config)
