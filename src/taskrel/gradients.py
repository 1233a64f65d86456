"""Per-task gradients on the shared parameters, and their Gram matrix: the one engine.

`task_gradients(losses, params)` returns a (K, P) tensor whose row k is ∂losses[k]/∂params,
flattened in the order of `params`. Two autograd paths give identical results: a loop of K
backward passes, and one batched backward (`is_grads_batched`), chosen by size (the batched path
wins on small models on CPU, the loop on large ones). Affinity collectors and weighting methods
all take their gradients from here.

`separable_task_gradients` is the fast path for multi-input models, where task k's loss depends
only on its own rows: it vectorises one backward per task sub-batch with `torch.func.vmap`, so
all K gradients cost about one ordinary backward pass. It returns the head gradients too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from taskrel.errors import ConfigError, ModelError, NonFiniteError

#: Above this many shared parameters, the loop is used (batched backward measured slower there).
BATCHED_MAX_PARAMS = 65_536
MODES = ("auto", "loop", "batched")


def _task_label(names: Sequence[str] | None, k: int) -> str:
    return repr(names[k]) if names is not None else f"#{k}"


def check_finite_losses(losses: Sequence[torch.Tensor], names: Sequence[str] | None = None) -> None:
    """Raise `NonFiniteError` naming the first task whose loss is NaN or infinite."""
    for k, loss in enumerate(losses):
        if not torch.isfinite(loss).all():
            raise NonFiniteError(f"loss of task {_task_label(names, k)} is {loss.item()}")


def check_finite_rows(grads: torch.Tensor, names: Sequence[str] | None = None, what: str = "gradient") -> None:
    """Raise `NonFiniteError` naming the first task (row) of `grads` with a NaN or infinite entry."""
    bad = ~torch.isfinite(grads).all(dim=1)
    if bad.any():
        k = int(bad.nonzero()[0, 0])
        raise NonFiniteError(f"{what} of task {_task_label(names, k)} has non-finite entries")


def flatten(tensors: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one vector; `None` (an unused parameter) becomes zeros."""
    return torch.cat(
        [(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(tensors, like, strict=True)]
    )


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector back into tensors shaped like `like`."""
    sizes = [p.numel() for p in like]
    return [v.view_as(p) for v, p in zip(vector.split(sizes), like, strict=True)]


def set_gradients(params: Sequence[torch.Tensor], vector: torch.Tensor) -> None:
    """Write a flat gradient vector into the `.grad` of `params` (replacing what was there)."""
    for p, g in zip(params, unflatten(vector.to(params[0].dtype), params), strict=True):
        p.grad = g.detach().clone()


def task_gradients(
    losses: Sequence[torch.Tensor] | torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    mode: str = "auto",
    names: Sequence[str] | None = None,
    retain_graph: bool = True,
) -> torch.Tensor:
    """Gradients of each loss w.r.t. `params` as a (K, P) tensor (row k = task k).

    `names` label tasks in error messages. The graph is kept (`retain_graph=True`) so the caller
    can still back-propagate a combined loss afterwards.
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    params = list(params)
    if not params:
        raise ModelError("no shared parameters given: per-task gradients need at least one")
    losses = list(losses)
    if not losses:
        raise ConfigError("no losses given")
    check_finite_losses(losses, names)
    n_params = sum(p.numel() for p in params)
    if mode == "auto":
        mode = "batched" if len(losses) > 1 and n_params <= BATCHED_MAX_PARAMS else "loop"
    if mode == "batched":
        stacked = torch.stack([loss.reshape(()) for loss in losses])
        eye = torch.eye(len(losses), dtype=stacked.dtype, device=stacked.device)
        parts = torch.autograd.grad(
            stacked,
            params,
            grad_outputs=eye,
            is_grads_batched=True,
            retain_graph=retain_graph,
            allow_unused=True,
        )
        grads = torch.cat(
            [
                (g if g is not None else torch.zeros(len(losses), *p.shape)).reshape(len(losses), -1)
                for g, p in zip(parts, params, strict=True)
            ],
            dim=1,
        )
    else:
        rows = []
        for k, loss in enumerate(losses):
            keep = retain_graph or k < len(losses) - 1
            parts = torch.autograd.grad(loss, params, retain_graph=keep, allow_unused=True)
            rows.append(flatten(parts, params))
        grads = torch.stack(rows)
    check_finite_rows(grads, names)
    return grads


def gram(grads: torch.Tensor) -> torch.Tensor:
    """Gram matrix G Gᵀ of per-task gradients (K, K), computed in float64."""
    g = grads.to(torch.float64)
    return g @ g.T


@dataclass(frozen=True)
class TaskGradients:
    """Per-task losses (K,), shared-parameter gradients (K, P) and each task's head gradients."""

    losses: torch.Tensor
    shared: torch.Tensor
    heads: list[list[torch.Tensor]]


def separable_task_gradients(
    model: torch.nn.Module,
    tasks: Sequence[str],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> TaskGradients:
    """Per-task gradients for a `MultiTaskModel` whose tasks each have their own sub-batch.

    `inputs` is (K, B, d) and `targets` (K, B): row block k belongs to ``tasks[k]``. All heads
    must share one architecture. Results equal `task_gradients` on the same losses.
    """
    heads = [model.head(t) for t in tasks]
    shared = {n: p.detach() for n, p in model.trunk.named_parameters()}
    if not shared:
        raise ModelError("the model has no shared (trunk) parameters; nothing is shared")
    try:
        head_params, head_buffers = stack_module_state(heads)
    except RuntimeError as exc:
        raise ModelError(f"heads of {list(tasks)} differ in architecture; use task_gradients ({exc})") from exc
    template = heads[0]

    def task_loss(shared_p, head_p, head_b, x, y):
        features = functional_call(model.trunk, shared_p, (x,))
        out = functional_call(template, (head_p, head_b), (features,)).squeeze(-1)
        return loss_fn(out, y)

    (shared_g, head_g), losses = vmap(grad_and_value(task_loss, argnums=(0, 1)), in_dims=(None, 0, 0, 0, 0))(
        shared, head_params, head_buffers, inputs, targets
    )
    check_finite_losses(list(losses), tasks)
    trunk_params = [n for n, _ in model.trunk.named_parameters()]
    flat = torch.cat([shared_g[n].reshape(len(tasks), -1) for n in trunk_params], dim=1)
    check_finite_rows(flat, tasks)
    head_names = [n for n, _ in template.named_parameters()]
    per_head = [[head_g[n][k].detach() for n in head_names] for k in range(len(tasks))]
    return TaskGradients(losses.detach(), flat.detach(), per_head)
