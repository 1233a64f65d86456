"""Training one task group, hooks into the loop, and sweeps over many groups."""

from taskrel.train.callbacks import Callback, StepContext, TrialEvaluator
from taskrel.train.config import TrainConfig
from taskrel.train.trainer import Trainer, TrainResult

__all__ = ["Callback", "StepContext", "TrainConfig", "TrainResult", "Trainer", "TrialEvaluator"]
