"""Hard-parameter-sharing models and per-task losses."""

from taskrel.models.losses import loss_function
from taskrel.models.multitask import MultiTaskModel, chemical_model, mlp_model, mlp_trunk

__all__ = ["MultiTaskModel", "chemical_model", "loss_function", "mlp_model", "mlp_trunk"]
