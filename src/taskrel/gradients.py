"""Per-task gradients on the shared parameters, and their Gram matrix: the one engine.

`task_gradients(losses, params)` returns a (K, P) tensor whose row k is ∂losses[k]/∂params,
flattened in the order of `params`. Two autograd paths give identical results: a loop of K
backward passes, and one batched backward (`is_grads_batched`), chosen by size (the batched path
wins on small models on CPU, the loop on large ones). Affinity collectors and weighting methods
all take their gradients from here.

`backward_with_task_gradients` is the fast path for multi-input models, where task k's loss
depends only on its own rows: one ordinary backward of the summed loss also yields every task's
gradients (see its docstring), so measuring them during training costs little extra.

`shared_input_backward` is the path for models whose shared parameters are all linear layers
(any data, single-input in particular): the ordinary backward, plus one backward batched over
tasks to the layers' outputs only; per-task gradients, or only their Gram matrix, follow from
each layer's inputs and output gradients without a backward through the weights per task.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from taskrel.errors import ConfigError, ModelError, NonFiniteError

#: Above this many shared parameters, the loop is used (batched backward measured slower there).
BATCHED_MAX_PARAMS = 65_536
MODES = ("auto", "loop", "batched")


def _task_label(names: Sequence[str] | None, k: int) -> str:
    return repr(names[k]) if names is not None else f"#{k}"


def check_finite_losses(losses: Sequence[torch.Tensor] | torch.Tensor, names: Sequence[str] | None = None) -> None:
    """Raise `NonFiniteError` naming the first task whose loss is NaN or infinite."""
    values = torch.stack([loss.detach().reshape(()) for loss in losses]) if not torch.is_tensor(losses) else losses
    finite = torch.isfinite(values.detach())
    if not finite.all():
        k = int((~finite).nonzero()[0, 0])
        raise NonFiniteError(f"loss of task {_task_label(names, k)} is {values[k].item()}")


def check_finite_rows(grads: torch.Tensor, names: Sequence[str] | None = None, what: str = "gradient") -> None:
    """Raise `NonFiniteError` naming the first task (row) of `grads` with a NaN or infinite entry."""
    if torch.isfinite(grads.sum(dim=1)).all():  # a NaN or ±inf entry makes its row's sum non-finite: one reduction
        return
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
    try:
        grads = _gradient_rows(losses, params, mode, retain_graph)
    except RuntimeError as exc:
        if "backward through the graph a second time" not in str(exc):
            raise
        raise ConfigError(
            "the losses' graph was already freed: call the collectors' on_step (or build the StepContext) "
            "before loss.backward(), or back-propagate with retain_graph=True"
        ) from None
    check_finite_rows(grads, names)
    return grads


def _gradient_rows(losses: list[torch.Tensor], params: list[torch.Tensor], mode: str, retain_graph: bool
                   ) -> torch.Tensor:  # fmt: skip
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
        return torch.cat(
            [
                (g if g is not None else torch.zeros(len(losses), *p.shape)).reshape(len(losses), -1)
                for g, p in zip(parts, params, strict=True)
            ],
            dim=1,
        )
    rows = []
    for k, loss in enumerate(losses):
        keep = retain_graph or k < len(losses) - 1
        parts = torch.autograd.grad(loss, params, retain_graph=keep, allow_unused=True)
        rows.append(flatten(parts, params))
    return torch.stack(rows)


def gram(grads: torch.Tensor) -> torch.Tensor:
    """Gram matrix G Gᵀ of per-task gradients (K, K), computed in float64."""
    g = grads.to(torch.float64)
    return g @ g.T


@dataclass(frozen=True)
class TaskGradients:
    """Per-task losses (K,), shared-parameter gradients (K, P) and each task's head gradients.

    `shared` is None when only their Gram matrix `gram` (K, K, float64) was computed; `gram` is None
    when it was not (`StepContext.task_gram` then forms it from `shared`).
    """

    losses: torch.Tensor
    shared: torch.Tensor | None
    heads: list[list[torch.Tensor]]
    gram: torch.Tensor | None = None


#: Modules a trunk may consist of for the hook path: linear layers and row-wise, parameter-free maps.
ROWWISE = (nn.Linear, nn.Sequential, nn.Identity, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)


def backward_with_task_gradients(
    model: torch.nn.Module,
    tasks: Sequence[str],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[..., torch.Tensor],
    *,
    task_parameters: Sequence[Sequence[torch.Tensor]] | None = None,
    with_gram: bool = False,
) -> TaskGradients:
    """Back-propagate the summed loss and also return every task's own gradients.

    For a `MultiTaskModel` whose tasks each have their own sub-batch: `inputs` (K, B, d) and
    `targets` (K, B), block k belonging to ``tasks[k]``. Afterwards `.grad` of every parameter holds
    the gradient of Σ_k L_k (as ``losses.sum().backward()`` would, up to rounding). Task k's loss
    depends only on its own rows, so its gradients are recovered without K backward passes:

    * trunks of `nn.Linear` layers and row-wise activations: one backward pass to every layer's
      output gives δ; task k's weight gradient is δ_kᵀ a_k over its rows, and their sum is the
      update's gradient (cost ≈ one ordinary backward);
    * any other trunk: one vectorised backward per sub-batch with `torch.func.vmap`.

    `task_parameters` (per task, its head's parameters) saves looking them up; `with_gram` also
    returns the Gram matrix of the shared gradients (then their finiteness is checked on its diagonal).
    """
    head_params = [list(model.task_parameters(t)) for t in tasks] if task_parameters is None else task_parameters
    leaves = _linear_plan(model.trunk)
    if leaves is not None and _trainable_linear_only(model.trunk):
        return _linear_trunk_backward(model, leaves, tasks, inputs, targets, loss_fn, head_params, with_gram)
    result = _vmap_task_gradients(model, tasks, inputs, targets, loss_fn)
    set_gradients(list(model.shared_parameters()), result.shared.sum(dim=0))
    for params, grads in zip(head_params, result.heads, strict=True):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
    return TaskGradients(result.losses, result.shared, result.heads, gram(result.shared) if with_gram else None)


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _linear_plan(trunk: nn.Module) -> list[nn.Module] | None:
    """The trunk's leaf modules in execution order if it is a row-wise linear stack, else None (cached)."""
    modules = tuple(trunk.modules())
    cached = _PLANS.get(trunk)
    if cached is None or cached[0] != modules:
        leaves = [m for m in modules if not isinstance(m, nn.Sequential)]
        usable = all(isinstance(m, ROWWISE) for m in modules) and any(isinstance(m, nn.Linear) for m in leaves)
        cached = (modules, leaves if usable else None)
        _PLANS[trunk] = cached
    return cached[1]


def _linear_trunk_backward(model, leaves, tasks, inputs, targets, loss_fn, head_params, with_gram) -> TaskGradients:
    """Forward with the trunk weights held constant, back-propagate only to each layer's output, and
    form the weight gradients per task (δ_kᵀ a_k) and their sum ourselves: no work is done twice."""
    k, b = inputs.shape[:2]
    h = inputs.reshape(k * b, *inputs.shape[2:])
    linear_inputs, linear_outputs = [], []
    for module in leaves:
        if isinstance(module, nn.Linear):
            linear_inputs.append(h.detach())
            bias = None if module.bias is None else module.bias.detach()
            h = torch.nn.functional.linear(h, module.weight.detach(), bias)
            if not h.requires_grad:  # first layer: its output is where back-propagation stops
                h.requires_grad_()
            linear_outputs.append(h)
        else:
            h = module(h)
    features = h.reshape(k, b, -1)
    outputs = model.heads_forward(features, tasks)
    losses = loss_fn(outputs, targets, reduction="none").mean(dim=1)
    check_finite_losses(losses, tasks)
    flat_heads = [p for params in head_params for p in params]
    grads = torch.autograd.grad(losses.sum(), [*linear_outputs, *flat_heads], allow_unused=True)
    deltas, head_grads = grads[: len(linear_outputs)], grads[len(linear_outputs) :]
    pieces = []
    for module, a, delta in zip((m for m in leaves if isinstance(m, nn.Linear)), linear_inputs, deltas, strict=True):
        delta = delta.reshape(k, b, -1)
        weight = torch.bmm(delta.transpose(1, 2), a.reshape(k, b, -1))
        pieces.append(weight.reshape(k, -1))
        module.weight.grad = weight.sum(dim=0)
        if module.bias is not None:
            bias = delta.sum(dim=1)
            pieces.append(bias)
            module.bias.grad = bias.sum(dim=0)
    shared = torch.cat(pieces, dim=1)
    if with_gram:
        gram_matrix = _checked_gram(gram(shared), tasks)
    else:
        gram_matrix = None
        check_finite_rows(shared, tasks)
    heads = _assign_head_gradients(head_params, head_grads)
    return TaskGradients(losses.detach(), shared, heads, gram_matrix)


def _checked_gram(matrix: torch.Tensor, tasks: Sequence[str]) -> torch.Tensor:
    """A Gram matrix of task gradients, checked on its diagonal: a non-finite entry of gradient k, or
    one in its Gram route, makes the diagonal entry k non-finite."""
    diagonal = torch.isfinite(matrix.diagonal())
    if not diagonal.all():
        k = int((~diagonal).nonzero()[0, 0])
        raise NonFiniteError(f"gradient of task {_task_label(tasks, k)} has non-finite entries or its norm overflows")
    return matrix


def _assign_head_gradients(head_params, head_grads) -> list[list[torch.Tensor]]:
    """Write each head's gradients (flat over every task's head parameters, in order) into its `.grad`."""
    heads, position = [], 0
    for params in head_params:
        chunk = head_grads[position : position + len(params)]
        position += len(params)
        own = [torch.zeros_like(p) if g is None else g for g, p in zip(chunk, params, strict=True)]
        for p, g in zip(params, own, strict=True):
            p.grad = g
        heads.append(own)
    return heads


GRAM_ROUTES = ("auto", "gram", "gradients")
#: How many times cheaper the cost model counts a multiply-add of the Gram route than one of the per-task
#: weight gradients: the Gram route's products (a aᵀ, kernel · δ) are plain matrix products, which run
#: faster per multiply-add than per-task gradients (measured by benchmarks/task_gram.py).
GRAM_SPEEDUP = 2.0


def shared_linear_layers(model: nn.Module, shared: Sequence[torch.Tensor]) -> list[nn.Linear] | None:
    """The `nn.Linear` modules of `model` that hold exactly the `shared` parameters, or None if they do not.

    When every shared parameter is the weight or bias of a linear layer, per-task gradients (and their
    Gram matrix) follow from each layer's input rows and the gradients at its output
    (`shared_input_backward`), whatever else the model computes in between.
    """
    wanted = {id(p) for p in shared}
    layers = [
        m for m in model.modules()
        if isinstance(m, nn.Linear) and any(id(p) in wanted for p in m.parameters(recurse=False))
    ]  # fmt: skip
    held = [p for m in layers for p in m.parameters(recurse=False) if p.requires_grad]
    if not layers or len(held) != len(wanted) or {id(p) for p in held} != wanted:
        return None
    return layers


class LinearCapture:
    """Within a ``with`` block, record every call of `layers`: its input rows and its output (in the graph)."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        self.layers = list(layers)
        self.calls: dict[nn.Linear, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._handles: list = []

    def __enter__(self) -> LinearCapture:
        self.calls = {m: [] for m in self.layers}
        for m in self.layers:
            self._handles.append(m.register_forward_hook(lambda mod, args, out: self.calls[mod].append((args[0], out))))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def shared_input_backward(
    losses: torch.Tensor,
    capture: LinearCapture,
    shared: Sequence[torch.Tensor],
    task_parameters: Sequence[Sequence[torch.Tensor]],
    tasks: Sequence[str],
    *,
    gram_only: bool = False,
    route: str = "auto",
) -> TaskGradients:
    """``losses.sum().backward()``, and every task's gradients on the `shared` parameters besides.

    For models whose shared parameters are all linear layers (`shared_linear_layers`), when the
    losses (K,) were computed inside `capture` and every task may read every row (single-input
    data). The update's `.grad` is that of the ordinary backward, bit for bit; the per-task
    gradients (or only their Gram matrix) come from `linear_task_gradients`. Returns `TaskGradients`:
    `shared` (K, P) in the order of `shared`; with ``gram_only=True``, `shared` None and `gram` (K, K)
    float64. Head gradients are read from the ordinary backward's `.grad`.
    """
    grads, matrix = linear_task_gradients(losses, capture, shared, tasks, gram_only=gram_only, route=route)
    losses.sum().backward()
    heads = [[torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params] for params in task_parameters]
    return TaskGradients(losses.detach(), grads, heads, matrix)


def linear_task_gradients(
    losses: torch.Tensor,
    capture: LinearCapture,
    shared: Sequence[torch.Tensor],
    tasks: Sequence[str],
    *,
    gram_only: bool = False,
    route: str = "auto",
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-task gradients (K, P) on `shared`, all weights and biases of the captured linear layers, or only
    their Gram matrix (K, K, float64): (gradients, None), or (None, Gram) with ``gram_only=True``.

    The losses (K,) were computed inside `capture`; their graph is kept. One backward, batched over the
    K tasks, reaches only the layers' outputs: δ_k (rows × out) per task and layer; with the layer's
    input rows a (rows × in, every call of the layer stacked):

    * ``route="gradients"``: task k's weight gradient δ_kᵀ a (≈ K · rows · in · out multiply-adds
      per layer, no backward through the weights per task);
    * ``route="gram"`` (with ``gram_only=True``): only the Gram matrix, without forming any gradient,
      ⟨δ_iᵀ a, δ_jᵀ a⟩ = ⟨δ_i, (a aᵀ + 1) δ_j⟩, the 1 for the bias (≈ rows² · (in + K · out)); the idea
      of torchjd's autogram. ``"auto"``: `cheaper_route`.
    """
    if route not in GRAM_ROUTES:
        raise ConfigError(f"route must be one of {GRAM_ROUTES}, got {route!r}")
    if route == "gram" and not gram_only:
        raise ConfigError('route="gram" gives only the Gram matrix: pass gram_only=True')
    check_finite_losses(losses, tasks)
    k = len(tasks)
    outputs = [out for m in capture.layers for _, out in capture.calls[m]]
    eye = torch.eye(k, dtype=losses.dtype, device=losses.device)
    deltas = (
        torch.autograd.grad(
            losses, outputs, grad_outputs=eye, is_grads_batched=True, retain_graph=True, allow_unused=True
        )
        if outputs
        else ()
    )
    rows, position = [], 0  # per layer: input rows a (n, in) and output gradients δ (K, n, out), calls stacked
    for m in capture.layers:  # a layer not called has no rows: its gradients are 0
        calls = capture.calls[m]
        grads = deltas[position : position + len(calls)]
        position += len(calls)
        a = torch.cat(
            [m.weight.new_zeros(0, m.in_features), *(x.detach().reshape(-1, m.in_features) for x, _ in calls)]
        )
        d = torch.cat(
            [
                m.weight.new_zeros(k, 0, m.out_features),
                *(
                    (out.new_zeros(k, *out.shape) if g is None else g).reshape(k, -1, m.out_features)
                    for (_, out), g in zip(calls, grads, strict=True)
                ),
            ],
            dim=1,
        )
        rows.append((m, a, d, m.weight.requires_grad, m.bias is not None and m.bias.requires_grad))
    if gram_only and route == "auto":
        route = cheaper_route(k, [(len(a), m.in_features, m.out_features, b) for m, a, _, _, b in rows])
    if route == "gram":
        matrix = 0
        for _, a, d, weight, bias in rows:
            kernel = (a @ a.T if weight else a.new_zeros(len(a), len(a))) + (1 if bias else 0)
            matrix = matrix + d.reshape(k, -1) @ (kernel @ d).reshape(k, -1).T
        return None, _checked_gram(matrix.to(torch.float64), tasks)
    pieces = {}
    for m, a, d, weight, bias in rows:
        if weight:
            pieces[id(m.weight)] = torch.einsum("kro,ri->koi", d, a).reshape(k, -1)
        if bias:
            pieces[id(m.bias)] = d.sum(dim=1)
    grads = torch.cat([pieces[id(p)] for p in shared], dim=1)
    if gram_only:
        return None, _checked_gram(gram(grads), tasks)
    check_finite_rows(grads, tasks)
    return grads, None


def cheaper_route(tasks: int, layers: Sequence[tuple[int, int, int, bool]]) -> str:
    """The route "auto" takes: "gram" unless it needs `GRAM_SPEEDUP` times the multiply-adds of "gradients"."""
    costs = gram_route_cost(tasks, layers)
    return "gram" if costs["gram"] < GRAM_SPEEDUP * costs["gradients"] else "gradients"


def gram_route_cost(tasks: int, layers: Sequence[tuple[int, int, int, bool]]) -> dict[str, int]:
    """Multiply-adds of the two routes of `shared_input_backward` for linear layers (rows, in, out, bias)."""
    params = sum(i * o + (o if bias else 0) for _, i, o, bias in layers)
    gradients = sum(tasks * r * i * o for r, i, o, _ in layers) + tasks * tasks * params
    gram = sum(r * r * (i + tasks * o) + tasks * tasks * r * o for r, i, o, _ in layers)
    return {"gradients": gradients, "gram": gram}


def _trainable_linear_only(trunk: nn.Module) -> bool:
    """Every linear layer's weight (and bias) trains: the hook-free path writes their gradients."""
    return all(
        p.requires_grad for m in trunk.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False)
    )


def _vmap_task_gradients(model, tasks, inputs, targets, loss_fn) -> TaskGradients:
    heads = [model.head(t) for t in tasks]
    shared = {n: p.detach() for n, p in model.trunk.named_parameters()}
    if not shared:
        raise ModelError("the model has no shared (trunk) parameters; nothing is shared")
    try:
        head_params, head_buffers = stack_module_state(heads)
    except RuntimeError as exc:
        raise ModelError(f"heads of {list(tasks)} differ in architecture ({exc})") from exc
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
