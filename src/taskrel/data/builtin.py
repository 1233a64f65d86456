"""The built-in datasets as problems: each is a `TorchProblem` with the default MLP.

Every factory takes ``data_dir=`` (see `taskrel.data.location`) and `TrainConfig` field overrides
(``max_steps=2000``, ...); the defaults are ETAP's Chemical protocol.
"""

from __future__ import annotations

import os

from taskrel.data import load_dataset
from taskrel.errors import ConfigError
from taskrel.torch_problem import TorchProblem
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
