"""Task-weighting methods that plug into any PyTorch training loop.

Every method has one call per training step, used in place of ``sum(losses).backward()``::

    optimizer.zero_grad()
    losses = [loss_fn(model(x, t), y) for t in tasks]      # one scalar per task, in task order
    weights = method.backward(losses, model.shared_parameters())
    optimizer.step()

`backward` adds to ``.grad`` like ``Tensor.backward`` does. Shared parameters receive
Σ_i c_i g_i, where g_i is task i's gradient on them (from `taskrel.gradients.task_gradients`, or
passed in as ``grads`` when the caller already has them) and c the method's coefficients,
optionally clipped to norm `max_norm`. Every other trainable parameter in the losses' graph (the
task heads) receives the gradient of Σ_i h_i ℓ_i: h = c for weighting methods (linear
scalarisation, Nash-MTL, AuxiNash), h = 1 for gradient-surgery methods (GCS, PCGrad), which change
only the shared update. `backward` returns c as a float64 tensor. With ``update_every=T`` the
coefficients are recomputed every T steps and reused in between (no per-task gradients then).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from taskrel.errors import ConfigError, NonFiniteError, ShapeError, UnknownTaskError
from taskrel.gradients import check_finite_losses, check_finite_rows, gram, task_gradients, unflatten
from taskrel.weighting.bargaining import BargainingSolution, solve_bargaining


class WeightingMethod:
    """Base class: turns the per-task Gram matrix into shared coefficients and head weights.

    `tasks` is the list of task names (or their number); losses are given in that order.
    Subclasses implement `combine`.
    """

    #: Whether `combine` needs the Gram matrix (and hence per-task gradients).
    needs_gradients = True
    #: Whether task heads are weighted by the coefficients (False: heads get weight 1).
    weights_heads = True

    def __init__(self, tasks: Sequence[str] | int, *, max_norm: float | None = None, update_every: int = 1) -> None:
        names = [f"#{k}" for k in range(tasks)] if isinstance(tasks, int) else [str(t) for t in tasks]
        if not names:
            raise ConfigError("a weighting method needs at least one task")
        if len(set(names)) != len(names):
            raise ConfigError(f"task names must be distinct, got {names}")
        if max_norm is not None and not max_norm > 0:
            raise ConfigError(f"max_norm must be positive or None, got {max_norm}")
        if update_every < 1:
            raise ConfigError(f"update_every must be ≥ 1, got {update_every}")
        self.tasks = tuple(names)
        self.max_norm = max_norm
        self.update_every = int(update_every)
        self.step = 0
        self.weights: np.ndarray | None = None
        #: ‖g_i‖ on the shared parameters at the last refresh of the coefficients (None: not computed).
        self.gradient_norms: np.ndarray | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def task_index(self, task: str | int) -> int:
        """Position of a task given by name or index."""
        if isinstance(task, int) and 0 <= task < self.n_tasks:
            return task
        if task in self.tasks:
            return self.tasks.index(task)
        raise UnknownTaskError(f"unknown task {task!r}; tasks: {', '.join(self.tasks)}")

    def combine(self, gram: np.ndarray | None) -> np.ndarray:
        """Shared coefficients c (K,) from the (K, K) Gram matrix of task gradients (float64)."""
        raise NotImplementedError

    def backward(
        self,
        losses: Sequence[torch.Tensor],
        shared_parameters: Sequence[torch.Tensor],
        *,
        grads: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fill ``.grad`` for this step and return the coefficients c (float64, shape (K,)).

        `grads` (K, P): per-task gradients on `shared_parameters` (flattened in their order) when
        the caller has already computed them; otherwise they are computed here.
        """
        losses = list(losses)
        shared = list(shared_parameters)
        if len(losses) != self.n_tasks:
            raise ShapeError(f"got {len(losses)} losses for {self.n_tasks} tasks ({', '.join(self.tasks)})")
        check_finite_losses(losses, self.tasks)
        self.step += 1
        refresh = self.weights is None or (self.step - 1) % self.update_every == 0 or self._due_extra_step()
        if grads is not None:
            grads = self._checked_grads(grads, shared)
        if refresh:
            if self.needs_gradients and grads is None:
                grads = task_gradients(losses, shared, names=self.tasks)
            gram_matrix = gram(grads).cpu().numpy() if self.needs_gradients else None
            if gram_matrix is not None:
                self.gradient_norms = np.sqrt(np.maximum(np.diag(gram_matrix), 0.0))
            self.weights = self.combine(gram_matrix)
            self._extra_step(losses, shared, grads)
        coefficients = torch.from_numpy(self.weights)
        heads = task_specific_parameters(losses, shared)
        direction = None if grads is None else coefficients.to(grads.device) @ grads.double()
        _accumulate(losses, shared, heads, coefficients, self.head_weights(), direction, self.max_norm, self.tasks)
        return coefficients.clone()

    def head_weights(self) -> torch.Tensor:
        """Weights of the task heads' losses: the coefficients, or ones for surgery methods."""
        return torch.from_numpy(self.weights) if self.weights_heads else torch.ones(self.n_tasks, dtype=torch.float64)

    def _due_extra_step(self) -> bool:
        """Whether this step needs fresh per-task gradients for something besides the weights."""
        return False

    def _extra_step(self, losses: list[torch.Tensor], shared: list[torch.Tensor], grads: torch.Tensor | None) -> None:
        """Hook after the coefficients are computed (AuxiNash updates its preferences here)."""

    def _checked_grads(self, grads: torch.Tensor, shared: list[torch.Tensor]) -> torch.Tensor:
        n_params = sum(p.numel() for p in shared)
        if grads.shape != (self.n_tasks, n_params):
            raise ShapeError(
                f"grads must have shape ({self.n_tasks}, {n_params}) (tasks × shared parameters), "
                f"got {tuple(grads.shape)}"
            )
        check_finite_rows(grads, self.tasks)
        return grads

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: step counter and current coefficients."""
        return {"step": self.step, "weights": None if self.weights is None else self.weights.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        weights = state["weights"]
        if weights is not None and len(weights) != self.n_tasks:
            raise ShapeError(f"state has {len(weights)} weights for {self.n_tasks} tasks")
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tasks={list(self.tasks)})"


class LinearScalarisation(WeightingMethod):
    """Fixed weights w (default ones): the update of Σ w_i ℓ_i; no per-task gradients needed."""

    needs_gradients = False

    def __init__(
        self,
        tasks: Sequence[str] | int,
        weights: Sequence[float] | None = None,
        *,
        max_norm: float | None = None,
    ) -> None:
        super().__init__(tasks, max_norm=max_norm)
        w = np.ones(self.n_tasks) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (self.n_tasks,) or not np.isfinite(w).all() or (w < 0).any():
            raise ConfigError(f"weights must be {self.n_tasks} finite nonnegative numbers, got {w.tolist()}")
        self.fixed = w

    def combine(self, gram: np.ndarray | None) -> np.ndarray:
        return self.fixed.copy()


#: A task's squared gradient norm at most this times the largest one counts as vanished (`NashMTL`).
VANISHING = float(np.finfo(np.float32).eps) ** 2


class NashMTL(WeightingMethod):
    """Nash-MTL: the symmetric Nash bargaining weights, Gα = 1/α (Navon et al., 2022).

    Defaults follow the reference code: shared update clipped to norm 1, refreshed every step.
    `max_amplification` / `on_near_stationary` are passed to `solve_bargaining`.

    A task whose gradient on the shared parameters vanishes (e.g. a main task that has fit its few
    training rows until its float32 gradient underflows) has no stake in the step: it sits out with
    weight 0 and the others bargain (`active` marks who bargained; `sat_out_steps` counts such steps).
    Vanishing means a norm at most float32's relative precision (2⁻²³) times the largest task
    gradient's: below that it is rounding noise, which bargaining would amplify to an equal share.
    On the first step a vanishing gradient is a setup error (a loss that does not read the shared
    parameters) and raises `SolverError`, as `solve_bargaining` does.
    """

    def __init__(
        self,
        tasks: Sequence[str] | int,
        *,
        max_norm: float | None = 1.0,
        update_every: int = 1,
        max_amplification: float = 1e6,
        on_near_stationary: str = "regularise",
    ) -> None:
        super().__init__(tasks, max_norm=max_norm, update_every=update_every)
        self.max_amplification = max_amplification
        self.on_near_stationary = on_near_stationary
        self.solution: BargainingSolution | None = None
        self.active: np.ndarray = np.ones(self.n_tasks, dtype=bool)
        self.regularised_steps = 0  # solves that hit near Pareto-stationarity (warned once by Python)
        self.sat_out_steps = 0

    def bargaining_preferences(self) -> np.ndarray | None:
        """The preferences p of the bargaining game (None: symmetric)."""
        return None

    def combine(self, gram: np.ndarray | None) -> np.ndarray:
        diag = np.diag(np.asarray(gram, dtype=np.float64))
        vanished = diag <= VANISHING * max(float(np.max(np.abs(diag))), 1e-300)
        self.active = ~vanished if self.step > 1 and np.isfinite(diag).all() else np.ones(self.n_tasks, dtype=bool)
        alpha = np.zeros(self.n_tasks)
        self.sat_out_steps += not self.active.all()
        if not self.active.any():
            self.solution = None
            return alpha
        index = np.flatnonzero(self.active)
        preferences = self.bargaining_preferences()
        self.solution = solve_bargaining(
            np.asarray(gram)[np.ix_(index, index)],
            None if preferences is None else preferences[index],
            init=None if self.weights is None or not (self.weights[index] > 0).all() else self.weights[index],
            max_amplification=self.max_amplification,
            on_near_stationary=self.on_near_stationary,
            names=[self.tasks[i] for i in index],
        )
        self.regularised_steps += self.solution.ridge > 0
        alpha[index] = self.solution.alpha
        return alpha

    def state_dict(self) -> dict[str, Any]:
        counts = {"regularised_steps": self.regularised_steps, "sat_out_steps": self.sat_out_steps}
        return {**super().state_dict(), **counts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.regularised_steps = int(state["regularised_steps"])
        self.sat_out_steps = int(state["sat_out_steps"])


class GCS(WeightingMethod):
    """Gradient cosine similarity (Du et al., 2018): auxiliary task i joins the shared update
    only when cos(g_main, g_i) > 0 (``weighted=True``: with weight max(cos, 0)). Heads get weight 1.
    """

    weights_heads = False

    def __init__(
        self,
        tasks: Sequence[str] | int,
        main: str | int = 0,
        *,
        weighted: bool = False,
        max_norm: float | None = None,
        update_every: int = 1,
    ) -> None:
        super().__init__(tasks, max_norm=max_norm, update_every=update_every)
        self.main = self.task_index(main)
        self.weighted = weighted

    def combine(self, gram: np.ndarray | None) -> np.ndarray:
        norms = np.sqrt(np.diag(gram))
        cosine = gram[self.main] / np.maximum(norms[self.main] * norms, np.finfo(float).tiny)
        coefficients = np.maximum(cosine, 0.0) if self.weighted else (cosine > 0).astype(np.float64)
        coefficients[self.main] = 1.0
        return coefficients


class PCGrad(WeightingMethod):
    """PCGrad (Yu et al., 2020): each task gradient is projected off the gradients it conflicts
    with (in a random order per task), and the projected gradients are summed. Heads get weight 1.

    The projections are done on the Gram matrix: each projected gradient is tracked as a
    combination of the original ones, so the update is Σ_i c_i g_i with c returned as weights.
    """

    weights_heads = False

    def __init__(
        self, tasks: Sequence[str] | int, *, seed: int = 0, max_norm: float | None = None, update_every: int = 1
    ) -> None:
        super().__init__(tasks, max_norm=max_norm, update_every=update_every)
        self.rng = np.random.default_rng(seed)

    def combine(self, gram: np.ndarray | None) -> np.ndarray:
        k = self.n_tasks
        total = np.zeros(k)
        for i in range(k):
            c = np.eye(k)[i]
            for j in self.rng.permutation(k):
                dot = c @ gram[:, j]
                if dot < 0:
                    c[j] -= dot / gram[j, j]
            total += c
        return total

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.bit_generator.state = state["rng"]


def task_specific_parameters(losses: Sequence[torch.Tensor], shared: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Trainable leaf tensors that the losses depend on, other than `shared` (i.e. the task heads).

    Found by walking the autograd graph, so the caller only has to say what is shared.
    """
    shared_ids = {id(p) for p in shared}
    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    stack = [loss.grad_fn for loss in losses if loss.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) not in shared_ids:
            found[id(variable)] = variable
        stack.extend(fn for fn, _ in node.next_functions if fn is not None)
    return list(found.values())


def _accumulate(
    losses: list[torch.Tensor],
    shared: list[torch.Tensor],
    heads: list[torch.Tensor],
    coefficients: torch.Tensor,
    head_weights: torch.Tensor,
    direction: torch.Tensor | None,
    max_norm: float | None,
    names: Sequence[str],
) -> None:
    """Add Σ c_i g_i (clipped) to the shared ``.grad`` and ∇ Σ h_i ℓ_i to the heads' ``.grad``.

    `direction` is Σ c_i g_i when the per-task gradients are at hand; otherwise it comes from one
    backward pass of Σ c_i ℓ_i. The graph is kept so a non-finite result can be traced to its task.
    """
    same = torch.equal(coefficients, head_weights)
    head_grads: list[torch.Tensor] = []
    if direction is None:
        wanted = shared + heads if same else shared
        parts = _gradient(_weighted_sum(losses, coefficients), wanted)
        direction = torch.cat([g.reshape(-1).double() for g in parts[: len(shared)]])
        if same:
            head_grads = parts[len(shared) :]
        if not torch.isfinite(direction).all():
            _raise_non_finite(losses, shared, names, "shared")
    if heads and not head_grads:
        head_grads = _gradient(_weighted_sum(losses, head_weights), heads)
    if not all(torch.isfinite(g).all() for g in head_grads):
        _raise_non_finite(losses, heads, names, "task-specific")
    norm = float(direction.norm())
    if max_norm is not None and norm > max_norm:
        direction = direction * (max_norm / norm)
    for p, g in zip(shared, unflatten(direction, shared), strict=True):
        _add_grad(p, g)
    for p, g in zip(heads, head_grads, strict=True):
        _add_grad(p, g)


def _weighted_sum(losses: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    return sum(w.to(loss.dtype) * loss for w, loss in zip(weights, losses, strict=True))


def _gradient(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    parts = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [g if g is not None else torch.zeros_like(p) for g, p in zip(parts, params, strict=True)]


def _raise_non_finite(losses: list[torch.Tensor], params: list[torch.Tensor], names: Sequence[str], which: str) -> None:
    """Find the first task whose own gradient on `params` is non-finite and raise naming it."""
    for name, loss in zip(names, losses, strict=True):
        if not all(torch.isfinite(g).all() for g in _gradient(loss, params)):
            raise NonFiniteError(f"gradient of task {name!r} on the {which} parameters has non-finite entries")
    raise NonFiniteError(f"the weighted gradient on the {which} parameters has non-finite entries")


def _add_grad(param: torch.Tensor, grad: torch.Tensor) -> None:
    grad = grad.detach().to(param.dtype)
    if param.grad is None:
        param.grad = grad.clone()
    else:
        param.grad.add_(grad)
