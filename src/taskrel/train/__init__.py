"""Training one task group, hooks into the loop, and sweeps over many groups.

The names below are imported on first use (`taskrel.lazy`), so `taskrel.train.config` loads without torch.
"""

from taskrel.lazy import lazy_exports

_EXPORTS = {
    "Callback": "callbacks", "StepContext": "callbacks", "TrialEvaluator": "callbacks",
    "TrainConfig": "config", "BaseTrainer": "loop", "TrainResult": "loop",
    "Trainer": "multi_input", "SharedInputTrainer": "single_input",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
