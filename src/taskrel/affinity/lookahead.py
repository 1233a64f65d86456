"""Lookahead affinities: take a trial optimiser step, measure every task's loss, undo the step.

`trial_step` applies given gradients to given parameters with the optimiser's own rule (its
learning rate, momentum buffers, Adam moments, ...), evaluates the per-task losses on the same
mini-batch, and restores the parameters, their gradients and the optimiser state exactly.

TAG (Fifty et al.): Z(i → j) = (1 − L_j(after i's update of the shared parameters) / L_j) / η.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from taskrel.affinity.collector import AffinityCollector
from taskrel.errors import ConfigError
from taskrel.gradients import unflatten
from taskrel.train.callbacks import StepContext


def trial_step(ctx: StepContext, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-task losses (K,) after one optimiser step that sets `params`' gradients to `grads`, undone after."""
    if ctx.evaluate is None:
        raise ConfigError("lookahead affinities need ctx.evaluate to re-measure the losses after a trial step")
    optimizer = ctx.optimizer
    all_params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_grads = [p.grad for p in all_params]
    saved_values = [p.detach().clone() for p in params]
    saved_state = {p: copy.deepcopy(optimizer.state[p]) for p in params if p in optimizer.state}
    try:
        for p in all_params:
            p.grad = None
        for p, g in zip(params, grads, strict=True):
            p.grad = g.detach().to(p.dtype).reshape(p.shape).clone()
        optimizer.step()
        return ctx.evaluate().detach().to(torch.float64)
    finally:
        with torch.no_grad():
            for p, value in zip(params, saved_values, strict=True):
                p.copy_(value)
        for p in params:
            if p in saved_state:
                optimizer.state[p] = saved_state[p]
            else:
                optimizer.state.pop(p, None)
        for p, g in zip(all_params, saved_grads, strict=True):
            p.grad = g


class TagAffinity(AffinityCollector):
    """TAG's lookahead inter-task affinity on the shared parameters, A[source, target]."""

    method = "tag"
    needs_task_gradients = True

    def collect(self, ctx: StepContext) -> np.ndarray:
        before = ctx.loss_values
        shared = ctx.shared_parameters
        rows = []
        for g in ctx.task_gradients:
            after = trial_step(ctx, shared, unflatten(g, shared))
            rows.append((1.0 - after / before) / ctx.lr)
        return torch.stack(rows).numpy()
