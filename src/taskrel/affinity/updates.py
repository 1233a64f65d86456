"""The update an optimiser would apply for a given gradient, read from its state, as new tensors.

`parameter_directions(optimizer, params, grads)` gives, for each parameter p and each of N
gradient rows, the direction u with ``p_after = p − lr·u`` that ``optimizer.step()`` would take
from its current state (SGD: momentum, dampening, Nesterov, weight decay, maximize; Adam and
AdamW: moments, bias correction, AMSGrad, L2 or decoupled weight decay, maximize). Nothing is
written: not the parameters, not their `.grad`, not the optimiser state. `trial_parameters`
turns the directions into trial parameter values for `torch.func.functional_call`.

All tensors stay on the parameters' device; gradient rows carry a leading trial dimension N.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from taskrel.errors import ConfigError

SUPPORTED = (torch.optim.SGD, torch.optim.Adam)


def _groups_of(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> list[dict]:
    """The optimiser's parameter group of each of `params`."""
    owner = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    try:
        return [owner[id(p)] for p in params]
    except KeyError:
        raise ConfigError("a parameter given to the lookahead is not managed by the optimizer") from None


def _sgd_direction(group: dict, state: dict, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if group["maximize"]:
        g = -g
    if group["weight_decay"]:
        g = g + group["weight_decay"] * p
    mu = group["momentum"]
    if mu == 0:
        return g
    buffer = state.get("momentum_buffer")
    buffer = g if buffer is None else mu * buffer + (1 - group["dampening"]) * g
    return g + mu * buffer if group["nesterov"] else buffer


def _adam_direction(group: dict, state: dict, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if group["maximize"]:
        g = -g
    decoupled = group.get("decoupled_weight_decay", False)
    wd = group["weight_decay"]
    if wd and not decoupled:
        g = g + wd * p
    beta1, beta2 = group["betas"]
    step = float(state["step"]) + 1 if "step" in state else 1.0
    exp_avg = state.get("exp_avg", torch.zeros_like(p))
    exp_avg_sq = state.get("exp_avg_sq", torch.zeros_like(p))
    m = exp_avg + (1 - beta1) * (g - exp_avg)
    v = beta2 * exp_avg_sq + (1 - beta2) * g * g
    if group["amsgrad"]:
        v = torch.maximum(state.get("max_exp_avg_sq", torch.zeros_like(p)), v)
    denom = v.sqrt() / math.sqrt(1 - beta2**step) + group["eps"]
    u = m / (1 - beta1**step) / denom
    return u + wd * p if wd and decoupled else u


def parameter_directions(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Per parameter, directions (N, *p.shape) with p_after = p − lr·u, for gradients (N, *p.shape).

    Computed in the promoted dtype of the parameter and the gradients (float64 gradients give float64 directions).
    """
    if not isinstance(optimizer, SUPPORTED):
        raise ConfigError(f"lookaheads follow the update rule of SGD, Adam or AdamW; got {type(optimizer).__name__}")
    rule = _sgd_direction if isinstance(optimizer, torch.optim.SGD) else _adam_direction
    return [
        rule(group, optimizer.state.get(p, {}), p.detach(), g)
        for p, g, group in zip(params, grads, _groups_of(optimizer, params), strict=True)
    ]


def trial_parameters(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Per parameter, the values (N, *p.shape) one optimiser step would give for gradients (N, *p.shape)."""
    directions = parameter_directions(optimizer, params, grads)
    return [
        torch.sub(p.detach(), u, alpha=float(group["lr"]))
        for p, u, group in zip(params, directions, _groups_of(optimizer, params), strict=True)
    ]


def split_rows(rows: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Flat gradient rows (N, P) as per-parameter views (N, *p.shape), in the order of `params`."""
    parts = rows.split([p.numel() for p in params], dim=1)
    return [part.reshape(len(rows), *p.shape) for part, p in zip(parts, params, strict=True)]


def update_directions(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], grads: torch.Tensor
) -> torch.Tensor:
    """Rows u_k = −Δθ/lr (K, P) that `optimizer` would apply to `params` for flat gradient rows `grads` (K, P)."""
    directions = parameter_directions(optimizer, params, split_rows(grads, params))
    return torch.cat([u.reshape(len(grads), -1) for u in directions], dim=1).to(grads.dtype)
