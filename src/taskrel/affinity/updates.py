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
        g = torch.add(g, p, alpha=group["weight_decay"])
    mu = group["momentum"]
    if mu == 0:
        return g
    buffer = state.get("momentum_buffer")
    # one pass over the (N, *shape) rows per term, as SGD's own buf.mul_(μ).add_(g, alpha=1 − dampening)
    buffer = g if buffer is None else torch.add(buffer * mu, g, alpha=1 - group["dampening"])
    return torch.add(g, buffer, alpha=mu) if group["nesterov"] else buffer


def _adam_direction(group: dict, state: dict, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if group["maximize"]:
        g = -g
    decoupled = group.get("decoupled_weight_decay", False)
    wd = group["weight_decay"]
    if wd and not decoupled:
        g = torch.add(g, p, alpha=wd)
    dtype = torch.promote_types(p.dtype, g.dtype)
    g = g.to(dtype)

    def moment(name: str) -> torch.Tensor:  # of the parameter's shape; broadcast over the N rows
        return state[name].to(dtype) if name in state else p.new_zeros(p.shape, dtype=dtype)

    beta1, beta2 = group["betas"]
    step = float(state["step"]) + 1 if "step" in state else 1.0
    # Adam's own rule on new tensors, each written in place once made: lerp, addcmul, sqrt, divisions
    m = torch.lerp(moment("exp_avg"), g, 1 - beta1)
    v = torch.addcmul(moment("exp_avg_sq") * beta2, g, g, value=1 - beta2)
    if group["amsgrad"]:
        v = torch.maximum(moment("max_exp_avg_sq"), v)
    denom = v.sqrt_().div_(math.sqrt(1 - beta2**step)).add_(group["eps"])
    u = m.div_(denom).div_(1 - beta1**step)
    return u.add_(p.to(dtype), alpha=wd) if wd and decoupled else u


def _rule(optimizer: torch.optim.Optimizer):
    if not isinstance(optimizer, SUPPORTED):
        raise ConfigError(f"lookaheads follow the update rule of SGD, Adam or AdamW; got {type(optimizer).__name__}")
    return _sgd_direction if isinstance(optimizer, torch.optim.SGD) else _adam_direction


def parameter_directions(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Per parameter, directions (N, *p.shape) with p_after = p − lr·u, for gradients (N, *p.shape).

    Computed in the promoted dtype of the parameter and the gradients (float64 gradients give float64 directions).
    """
    rule = _rule(optimizer)
    return [
        rule(group, optimizer.state.get(p, {}), p.detach(), g)
        for p, g, group in zip(params, grads, _groups_of(optimizer, params), strict=True)
    ]


def flat_directions(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], rows: torch.Tensor
) -> torch.Tensor:
    """Directions (N, P) for flat gradient rows (N, P) over `params` in order (as `parameter_directions`).

    When the parameters share one parameter group and the same kinds of optimiser state, the rule runs
    once on them concatenated (the same arithmetic, element by element, in a few calls instead of a few
    per parameter); otherwise parameter by parameter.
    """
    rule = _rule(optimizer)
    groups = _groups_of(optimizer, params)
    state = _concatenated_state([optimizer.state.get(p, {}) for p in params])
    if state is None or any(group is not groups[0] for group in groups):
        parts = parameter_directions(optimizer, params, split_rows(rows, params))
        return torch.cat([u.reshape(len(rows), -1) for u in parts], dim=1)
    return rule(groups[0], state, torch.cat([p.detach().reshape(-1) for p in params]), rows)


def flat_trial_parameters(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], rows: torch.Tensor
) -> torch.Tensor:
    """Trial values (N, P) of `params` flattened in order after one step for each flat gradient row (N, P)."""
    groups = _groups_of(optimizer, params)
    if any(group["lr"] != groups[0]["lr"] for group in groups):
        trial = trial_parameters(optimizer, params, split_rows(rows, params))
        return torch.cat([t.reshape(len(rows), -1) for t in trial], dim=1)
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return torch.sub(flat, flat_directions(optimizer, params, rows), alpha=float(groups[0]["lr"]))


def _concatenated_state(states: list[dict]) -> dict | None:
    """The parameters' optimiser states as one, tensors concatenated; None if their kinds or steps differ."""
    keys = set(states[0])
    if any(set(state) != keys for state in states):
        return None
    merged = {}
    for key in keys:
        values = [state[key] for state in states]
        if key == "step":
            if len({float(v) for v in values}) != 1:
                return None
            merged[key] = values[0]
        elif all(v is None for v in values):
            merged[key] = None
        elif all(torch.is_tensor(v) for v in values):
            merged[key] = torch.cat([v.reshape(-1) for v in values])
        else:
            return None
    return merged


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
    return flat_directions(optimizer, params, grads).to(grads.dtype)
