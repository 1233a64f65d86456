"""The sequential lookaheads the functional collectors replace, kept as the reference they must match.

Each trial sets the gradients, calls the real ``optimizer.step()``, measures every task's loss with
`evaluate()` and restores parameters, gradients and optimiser state in place.
"""

from __future__ import annotations

import copy
import itertools

import torch

from taskrel.gradients import unflatten


def trial_step(optimizer, evaluate, params, grads) -> torch.Tensor:
    """Per-task losses (K,) after one optimiser step that sets `params`' gradients to `grads`, undone after."""
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
        return evaluate().detach().to(torch.float64)
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


def tag(ctx, evaluate) -> torch.Tensor:
    """TAG's (K, K) lookahead matrix of one step, one in-place trial step per source task."""
    before = evaluate().to(torch.float64)
    shared = ctx.shared_parameters
    rows = [
        (1.0 - trial_step(ctx.optimizer, evaluate, shared, unflatten(g, shared)) / before) / ctx.lr
        for g in ctx.task_gradients
    ]
    return torch.stack(rows)


def ptg(ctx, evaluate, reference: str = "doubled") -> torch.Tensor:
    """PTG's (K, K) transfer gains of one step, one in-place trial step per pair and reference."""

    def step_on(weights):
        shared = ctx.shared_parameters
        total = sum(w * ctx.task_gradients[k] for k, w in weights.items())
        params, grads = list(shared), list(unflatten(total, shared))
        for k, w in weights.items():
            params += ctx.task_parameters[k]
            grads += [w * g for g in ctx.head_gradients[k]]
        return trial_step(ctx.optimizer, evaluate, params, grads)

    n = len(ctx.tasks)
    scale = 2.0 if reference == "doubled" else 1.0
    ref = torch.stack([step_on({j: scale})[j] for j in range(n)])
    gain = torch.zeros(n, n, dtype=torch.float64)
    for i, j in itertools.combinations(range(n), 2):
        after = step_on({i: 1.0, j: 1.0})
        gain[i, j] = 1.0 - after[j] / ref[j]
        gain[j, i] = 1.0 - after[i] / ref[i]
    return gain
