"""Training one task group, hooks into the loop, and sweeps over many groups."""

from taskrel.train.callbacks import Callback, StepContext, TrialEvaluator
from taskrel.train.config import TrainConfig
from taskrel.train.loop import BaseTrainer, TrainResult
from taskrel.train.multi_input import Trainer
from taskrel.train.single_input import SharedInputTrainer

__all__ = [
    "BaseTrainer",
    "Callback",
    "SharedInputTrainer",
    "StepContext",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrialEvaluator",
]
