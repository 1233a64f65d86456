"""Hard parameter sharing: one shared trunk, one head per task.

`MultiTaskModel` knows which parameters are shared (the trunk) and which belong to a task (its
head), which is what per-task gradients, affinity collectors and weighting methods need. Heads
output one logit (binary tasks) or one value (regression) per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from taskrel.errors import ModelError, UnknownTaskError


class MultiTaskModel(nn.Module):
    """A shared `trunk` followed by one head per task; tasks may have their own inputs."""

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ModelError("a multi-task model needs at least one task head")
        self.trunk = trunk
        self.task_names: tuple[str, ...] = tuple(heads)
        self.heads = nn.ModuleList(heads.values())
        self._index = {name: i for i, name in enumerate(self.task_names)}

    def head(self, task: str) -> nn.Module:
        try:
            return self.heads[self._index[task]]
        except KeyError:
            raise UnknownTaskError(
                f"model has no head for task {task!r}; heads: {', '.join(self.task_names)}"
            ) from None

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Predictions of one task for inputs `x` (n, d): a tensor of shape (n,)."""
        return self.head(task)(self.trunk(x)).squeeze(-1)

    def forward_tasks(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predictions for several tasks, each on its own inputs, with one pass through the trunk."""
        names = list(inputs)
        sizes = [len(inputs[t]) for t in names]
        features = self.trunk(torch.cat([inputs[t] for t in names]))
        return {t: self.head(t)(h).squeeze(-1) for t, h in zip(names, features.split(sizes), strict=True)}

    def forward_all(self, x: torch.Tensor, tasks: Sequence[str]) -> list[torch.Tensor]:
        """Predictions of each of `tasks` for shared inputs `x` (n, ...), with one pass through the trunk."""
        features = self.trunk(x)
        return [self.head(t)(features).squeeze(-1) for t in tasks]

    def forward_stacked(self, inputs: torch.Tensor, tasks: Sequence[str]) -> torch.Tensor:
        """Predictions (K, B) for stacked per-task inputs (K, B, d); block k belongs to ``tasks[k]``.

        One pass through the trunk; when every head is a linear unit, one batched matmul for all heads.
        """
        k, b = inputs.shape[:2]
        features = self.trunk(inputs.reshape(k * b, *inputs.shape[2:])).reshape(k, b, -1)
        return self.heads_forward(features, tasks)

    def heads_forward(self, features: torch.Tensor, tasks: Sequence[str]) -> torch.Tensor:
        """Head outputs (K, B) for stacked trunk features (K, B, H), block k through ``tasks[k]``'s head."""
        heads = [self.head(t) for t in tasks]
        if all(isinstance(h, nn.Linear) and h.out_features == 1 and h.bias is not None for h in heads):
            weight = torch.stack([h.weight for h in heads])  # (K, 1, H)
            bias = torch.stack([h.bias for h in heads])  # (K, 1)
            return torch.baddbmm(bias.unsqueeze(1), features, weight.transpose(1, 2)).squeeze(-1)
        return torch.stack([h(f).squeeze(-1) for h, f in zip(heads, features, strict=True)])

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the trunk (raises `ModelError` when there are none)."""
        params = [p for p in self.trunk.parameters() if p.requires_grad]
        if not params:
            raise ModelError("the model has no trainable shared (trunk) parameters; nothing is shared")
        return params

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return [p for p in self.head(task).parameters() if p.requires_grad]


def mlp_trunk(n_features: int, hidden: Sequence[int]) -> nn.Sequential:
    """Fully connected ReLU layers; Glorot-uniform weights and zero biases (Keras' defaults)."""
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layer = nn.Linear(width, size)
        _glorot(layer)
        layers += [layer, nn.ReLU()]
        width = size
    return nn.Sequential(*layers)


def _glorot(layer: nn.Linear) -> None:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


def mlp_model(tasks: Sequence[str], n_features: int, hidden: Sequence[int] = (32, 16), seed: int = 0) -> MultiTaskModel:
    """An MLP trunk with one linear output unit per task, initialised from `seed`."""
    if not hidden:
        raise ModelError("an MLP trunk needs at least one hidden layer to share anything")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        trunk = mlp_trunk(n_features, hidden)
        heads = {}
        for task in tasks:
            heads[task] = nn.Linear(hidden[-1], 1)
            _glorot(heads[task])
    finally:
        torch.random.set_rng_state(generator_state)
    return MultiTaskModel(trunk, heads)


def chemical_model(tasks: Sequence[str], seed: int = 0) -> MultiTaskModel:
    """ETAP's Chemical architecture: 180→32→16 ReLU trunk, one sigmoid unit per task.

    The heads return logits; the sigmoid is applied inside the loss (`binary_cross_entropy_with_logits`),
    which is the same model computed stably.
    """
    return mlp_model(tasks, 180, (32, 16), seed)
