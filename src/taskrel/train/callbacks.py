"""Hooks into a training loop: the step context and the callback protocol.

A `StepContext` describes one optimisation step *before* its update: the per-task losses on the
current mini-batch, the shared parameters, the optimiser (learning rate and momentum state still
those of step k) and `evaluate()`, which recomputes every task's loss (K,) on the same mini-batch
with the parameters as they are at call time (only lookahead collectors need it). Per-task
gradients on the shared parameters (`task_gradients`, (K, P)) and on each task's head
(`head_gradients`) are computed on first access by `taskrel.gradients`, or supplied by a trainer
that already has them.

Collectors and weighting methods only need a `StepContext`, so they work in the `Trainer` and in
a user's own loop alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from taskrel import gradients as engine
from taskrel.errors import ModelError


class StepContext:
    """Everything a collector may look at during one training step (see module docstring)."""

    def __init__(
        self,
        tasks: Sequence[str],
        losses: Sequence[torch.Tensor],
        shared_parameters: Sequence[torch.Tensor],
        optimizer: torch.optim.Optimizer,
        evaluate: Callable[[], torch.Tensor] | None = None,
        *,
        task_parameters: Sequence[Sequence[torch.Tensor]] | None = None,
        task_gradients: torch.Tensor | None = None,
        head_gradients: Sequence[Sequence[torch.Tensor]] | None = None,
        step: int = 0,
        epoch: int = 0,
    ) -> None:
        self.tasks = tuple(tasks)
        self.losses = list(losses)
        self.shared_parameters = list(shared_parameters)
        self.optimizer = optimizer
        self.evaluate = evaluate
        self.task_parameters = [list(p) for p in task_parameters] if task_parameters is not None else None
        self.step = step
        self.epoch = epoch
        self._task_gradients = task_gradients
        self._head_gradients = [list(g) for g in head_gradients] if head_gradients is not None else None
        engine.check_finite_losses(self.losses, self.tasks)

    @property
    def loss_values(self) -> torch.Tensor:
        """Per-task losses as a detached float64 vector (K,)."""
        return torch.stack([loss.detach().reshape(()) for loss in self.losses]).to(torch.float64)

    @property
    def task_gradients(self) -> torch.Tensor:
        """(K, P) gradients of each task's loss on the shared parameters."""
        if self._task_gradients is None:
            self._task_gradients = engine.task_gradients(self.losses, self.shared_parameters, names=self.tasks)
        return self._task_gradients

    @property
    def head_gradients(self) -> list[list[torch.Tensor]]:
        """Per task, the gradients of its loss on its own head parameters."""
        if self._head_gradients is None:
            if self.task_parameters is None:
                raise ModelError("head gradients need task_parameters= in the StepContext")
            self._head_gradients = [
                list(torch.autograd.grad(loss, params, retain_graph=True)) if params else []
                for loss, params in zip(self.losses, self.task_parameters, strict=True)
            ]
        return self._head_gradients

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


class Callback:
    """Base class of training hooks; override what you need.

    The contract every training loop follows (the built-in trainers and a user's own loop alike):

    * ``on_train_begin({"val_loss": {task: float}})`` once, with the initial model's validation losses;
    * ``on_step(StepContext(...))`` every optimisation step, before the loop's own ``backward()``;
    * ``on_epoch_end(epoch, {"val_loss": {task: float}, ...})`` after every epoch;
    * ``on_train_end()`` once.

    Nothing else is passed. Set `needs_task_gradients = True` when `on_step` reads
    `ctx.task_gradients` or `ctx.head_gradients`, so a trainer can compute them in its fastest way.
    """

    needs_task_gradients = False

    def on_train_begin(self, logs: dict) -> None:
        pass

    def on_step(self, ctx: StepContext) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_train_end(self) -> None:
        pass
