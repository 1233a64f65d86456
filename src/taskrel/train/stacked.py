"""Per-member losses of many built-in MLPs at once, by batched matrix products.

The batched engine (`taskrel.train.batched`) stacks its members' parameters along a leading member
dimension G. For any model it computes their losses under ``vmap(functional_call)``, whose Python
overhead dominates a step of the small models task grouping trains. For the built-in model on
multi-input data (a `MultiTaskModel` whose trunk is linear layers with biases and ReLUs, one linear
unit per task, no buffers, an elementwise torch loss) `StackedMLPLosses` computes the same losses
directly: one ``baddbmm`` per trunk layer and one for the heads. The engine's admission checks
compare its stop-row losses with each member's own evaluation, as for the ``vmap`` path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from taskrel.models import MultiTaskModel, loss_function
from taskrel.train.loop import BaseTrainer
from taskrel.train.multi_input import Trainer

#: The losses `Trainer` takes from `loss_function`: torch losses computed elementwise on tensors of any shape.
ELEMENTWISE_LOSSES = tuple(loss_function(kind) for kind in ("binary", "regression"))


class StackedMLPLosses:
    """Per-member per-task losses (G, W) of a stacked multi-input batch under stacked MLP parameters.

    `layers`: the trunk in order, a linear layer's parameter prefix or None for a ReLU. Parameters are
    named as the engine stacks them (``model.trunk.0.weight`` of shape (G, out, in), …); a batch is
    inputs (G, W, B, d), targets (G, W, B) and a 0/1 mask (G, W, B), block k of a member being task k
    through head k.
    """

    def __init__(self, layers: list[str | None], loss_fn: Callable) -> None:
        self.layers = layers
        self.loss_fn = loss_fn

    @classmethod
    def of(cls, trainer: BaseTrainer) -> StackedMLPLosses | None:
        """The direct computation for `trainer`'s runs, or None unless it trains the built-in MLP on multi-input
        data with rows of one feature vector each."""
        if type(trainer) is not Trainer or trainer.train_x.dim() != 2 or trainer.loss_fn not in ELEMENTWISE_LOSSES:
            return None
        model = trainer.model
        if not isinstance(model, MultiTaskModel) or set(dict(model.named_children())) != {"trunk", "heads"}:
            return None
        trunk = model.trunk
        if not isinstance(trunk, nn.Sequential) or any(type(m) not in (nn.Linear, nn.ReLU) for m in trunk):
            return None
        if any(type(m) is nn.Linear and m.bias is None for m in trunk) or next(model.buffers(), None) is not None:
            return None
        if model.task_names != tuple(trainer.tasks) or not all(
            type(h) is nn.Linear and h.out_features == 1 and h.bias is not None for h in model.heads
        ):
            return None
        layers = [f"model.trunk.{i}" if type(m) is nn.Linear else None for i, m in enumerate(trunk)]
        return cls(layers, trainer.loss_fn)

    def __call__(self, params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        inputs, targets, mask = batch
        g, w, b = targets.shape
        h = inputs.reshape(g, w * b, -1)
        for name in self.layers:
            if name is None:
                h = torch.relu(h)
            else:
                h = torch.baddbmm(params[f"{name}.bias"].unsqueeze(1), h, params[f"{name}.weight"].transpose(1, 2))
        weight = torch.cat([params[f"model.heads.{k}.weight"] for k in range(w)], 1)  # (G, W, H)
        bias = torch.cat([params[f"model.heads.{k}.bias"] for k in range(w)], 1)  # (G, W)
        features = h.view(g * w, b, -1)
        outputs = torch.baddbmm(bias.reshape(g * w, 1, 1), features, weight.reshape(g * w, -1, 1)).view(g, w, b)
        elementwise = self.loss_fn(outputs, targets, reduction="none")
        return (elementwise * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)


__all__ = ["ELEMENTWISE_LOSSES", "StackedMLPLosses"]
