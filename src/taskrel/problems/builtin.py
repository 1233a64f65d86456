"""The built-in datasets as problems, each a `TorchProblem`.

Every factory takes ``data_dir=`` (see `taskrel.data.location`) and `TrainConfig` field overrides
(``max_steps=2000``, ...). The multi-input sets (Chemical, School, Landmine, Parkinsons) use the
default MLP and ETAP's Chemical protocol; ETTh1 / ETTh2 (single-input forecasting, one task per
channel) use `taskrel.models.forecast.window_forecaster` and `ETT_CONFIG`.
"""

from __future__ import annotations

import os

from taskrel.data import load_dataset
from taskrel.data.ett import ETT_TASKS, load_ett
from taskrel.data.single import SingleInputDataset
from taskrel.errors import ConfigError
from taskrel.models.forecast import window_forecaster
from taskrel.models.multitask import MultiTaskModel
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train.config import TrainConfig


def builtin_problem(name: str, data_dir: str | os.PathLike | None = None, **train_options) -> TorchProblem:
    """The built-in dataset `name` as a problem trained with `TrainConfig(**train_options)`."""
    if "loss" in train_options or "model_factory" in train_options:
        raise ConfigError(f"the built-in problem {name!r} has a fixed model and loss; only training options apply")
    config = TrainConfig.from_dict({**TrainConfig().to_dict(), **train_options})
    return TorchProblem(load_dataset(name, data_dir), config=config)


def chemical(data_dir: str | os.PathLike | None = None, **train_options) -> TorchProblem:
    """Chemical (ETAP): 10 binary assays, multi-input."""
    return builtin_problem("chemical", data_dir, **train_options)


def school(data_dir: str | os.PathLike | None = None, **train_options) -> TorchProblem:
    """School: 139 schools' exam-score regressions, multi-input."""
    return builtin_problem("school", data_dir, **train_options)


def landmine(data_dir: str | os.PathLike | None = None, **train_options) -> TorchProblem:
    """Landmine: 29 minefields' binary detections, multi-input."""
    return builtin_problem("landmine", data_dir, **train_options)


def parkinsons(data_dir: str | os.PathLike | None = None, **train_options) -> TorchProblem:
    """Parkinsons: 42 patients' UPDRS regressions, multi-input."""
    return builtin_problem("parkinsons", data_dir, **train_options)


#: ETT's protocol: Adam 5e-4, 256 windows per step, early stopping after 5 epochs without a lower summed
#: validation MSE (the forecasters reach their minimum within a few epochs; benchmarks/ett_convergence.py).
ETT_CONFIG = TrainConfig(optimizer="adam", lr=5e-4, batch_size=256, max_epochs=50, patience=5, patience_steps=0)
ETT_HIDDEN = 64


def ett_forecaster(group: tuple[str, ...], seed: int) -> MultiTaskModel:
    """The ETT model of a group: `window_forecaster` reading all seven channels, one head per member."""
    return window_forecaster(ETT_TASKS, group, input_len=96, horizon=24, hidden=ETT_HIDDEN, seed=seed)


def ett_problem(name: str, data_dir: str | os.PathLike | None = None, **train_options) -> TorchProblem:
    """ETTh1 or ETTh2 (`taskrel.data.ett`) as a single-input problem: seven channels, MSE, the ETT protocol."""
    windows = load_ett(name, data_dir)
    data = SingleInputDataset(name.lower(), windows.tasks, windows.train, windows.val, windows.test, windows.source)
    config = TrainConfig.from_dict({**ETT_CONFIG.to_dict(), **train_options})
    return TorchProblem(data, ett_forecaster, loss="mse", config=config)


def ett(data_dir: str | os.PathLike | None = None, **train_options) -> TorchProblem:
    """ETTh1: seven channels of one transformer station, 96 hours → the next 24, single-input."""
    return ett_problem("ETTh1", data_dir, **train_options)


def etth2(data_dir: str | os.PathLike | None = None, **train_options) -> TorchProblem:
    """ETTh2: the same layout from a second station."""
    return ett_problem("ETTh2", data_dir, **train_options)
