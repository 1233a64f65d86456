"""Training one task group, hooks into the loop, and sweeps over many groups."""

from taskrel.train.callbacks import Callback, StepContext
from taskrel.train.config import TrainConfig
from taskrel.train.trainer import BaseTrainer, SharedInputTrainer, Trainer, TrainResult

__all__ = ["BaseTrainer", "Callback", "SharedInputTrainer", "StepContext", "TrainConfig", "TrainResult", "Trainer"]
