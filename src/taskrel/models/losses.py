"""Per-task losses by dataset kind: binary cross-entropy on logits, or mean squared error."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from taskrel.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_function(kind: str) -> LossFn:
    """Mean loss over rows for a dataset kind ("binary" → BCE on logits, "regression" → MSE)."""
    if kind == "binary":
        return F.binary_cross_entropy_with_logits
    if kind == "regression":
        return F.mse_loss
    raise ConfigError(f"no loss for dataset kind {kind!r}; expected 'binary' or 'regression'")
