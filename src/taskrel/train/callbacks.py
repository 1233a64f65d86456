"""Hooks into a training loop: the step context and the callback protocol.

A `StepContext` describes one optimisation step *before* its update: the per-task losses on the
current mini-batch, the shared parameters, the optimiser (learning rate and momentum state still
those of step k) and, for lookahead collectors, `evaluate`. Per-task gradients on the shared
parameters (`task_gradients`, (K, P)), their Gram matrix (`task_gram`, (K, K)) and each task's head
gradients (`head_gradients`) are computed on first access by `taskrel.gradients`, or supplied by a
trainer that already has them (a trainer may supply the Gram matrix without the gradients, from a
cheaper route: `taskrel.gradients.shared_input_backward`).

`ctx.evaluate(shared, heads, tasks)` returns the per-task losses of the step's batch with some
parameters replaced by trial tensors (N stacked trial sets at once), without writing the live
parameters, buffers or `.grad`: it is backed by a `TrialEvaluator`, the one helper any loop uses
to provide it. In a user's own loop::

    evaluator = TrialEvaluator(model, lambda m, tasks: per_task_losses(m(x), y)[list(tasks)])
    ctx = StepContext(tasks, list(losses), shared_params, optimizer, evaluator)

Trials run in evaluation mode (`model.eval()` semantics, restored afterwards) under `no_grad`:
Dropout is off and BatchNorm normalises with its running statistics, which are read and never
written; no random numbers are drawn.

Collectors and weighting methods only need a `StepContext`, so they work in the `Trainer` and in
a user's own loop alike.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from taskrel import gradients as engine
from taskrel.errors import ConfigError, ModelError

#: ``losses(module, tasks)``: losses (len(tasks),) of the step's batch for task indices `tasks`,
#: computed by calling `module` (the model, its parameters replaced by trial values).
TaskLosses = Callable[[nn.Module, tuple[int, ...]], torch.Tensor]
TRIAL_MODES = ("auto", "vmap", "loop")


@contextlib.contextmanager
def evaluation_mode(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Run a block with `modules` in eval mode (their `training` flags off), restoring each flag afterwards.

    The flag is written as `nn.Module.__setattr__` finally writes it, without its checks for parameters,
    buffers and submodules (which made switching a model's modules cost more than a small forward).
    """
    switched = [m for m in modules if m.training]
    for m in switched:
        object.__setattr__(m, "training", False)
    try:
        yield
    finally:
        for m in switched:
            object.__setattr__(m, "training", True)


class _Bound(nn.Module):
    """`model` and a loss function as one module, so `functional_call` can swap the model's parameters."""

    def __init__(self, model: nn.Module, losses: TaskLosses) -> None:
        super().__init__()
        self.model = model
        self.losses = losses

    def forward(self, tasks: tuple[int, ...]) -> torch.Tensor:
        return self.losses(self.model, tasks)


class TrialEvaluator:
    """Per-task losses of one step's batch under N trial parameter sets, the live ones untouched.

    `losses(module, tasks)` computes the losses of task indices `tasks` by calling `module`.
    `separable=True` says task k's loss reads only its own rows of the batch (multi-input data), so
    evaluating fewer tasks costs proportionally less; collectors then ask only for what they need.
    `mode`: ``"vmap"`` evaluates the N trials in one `torch.func.vmap` over stacked parameters,
    ``"loop"`` one `functional_call` per trial (same numbers); ``"auto"`` takes vmap (one batched call
    instead of N) and falls back to the loop, with a warning, for a model
    that vmap cannot batch (an op without a batching rule, data-dependent control flow).
    """

    def __init__(self, model: nn.Module, losses: TaskLosses, *, separable: bool = False, mode: str = "auto") -> None:
        if mode not in TRIAL_MODES:
            raise ConfigError(f"mode must be one of {TRIAL_MODES}, got {mode!r}")
        self.model, self.losses = model, losses
        self.separable = separable
        self.mode = mode
        self._names: dict[int, list[str]] | None = None  # set on first use: a step that never evaluates pays nothing

    def _prepare(self) -> None:
        self.module = _Bound(self.model, self.losses)
        self._modules = list(self.model.modules())
        self._names = {}  # a tied parameter has several names; each gets the trial value
        for name, p in self.model.named_parameters(remove_duplicate=False):
            self._names.setdefault(id(p), []).append(f"model.{name}")

    def __call__(
        self, replace: Mapping[torch.Tensor, torch.Tensor], tasks: tuple[int, ...], trials: int
    ) -> torch.Tensor:
        """Losses (trials, len(tasks)); `replace` maps live parameters to stacked trial values (trials, *shape)."""
        if self._names is None:
            self._prepare()
        try:
            named = {name: value for p, value in replace.items() for name in self._names[id(p)]}
        except KeyError:
            raise ConfigError("a trial parameter is not a parameter of the evaluator's model") from None

        def call(values: dict[str, torch.Tensor]) -> torch.Tensor:  # ties are resolved above
            return functional_call(self.module, values, (tasks,), tie_weights=False)

        with torch.no_grad(), evaluation_mode(self._modules):
            if not named:
                return self.module(tasks).unsqueeze(0).expand(trials, -1)
            if self.mode != "loop":
                try:
                    return vmap(call)(named)
                except RuntimeError as exc:
                    if self.mode == "vmap":
                        raise ModelError(f"torch.func.vmap cannot batch the trial evaluation: {exc}") from exc
                    warnings.warn(f"trial evaluations run in a loop: vmap cannot batch them ({exc})", stacklevel=3)
                    self.mode = "loop"
            return torch.stack([call({k: v[n] for k, v in named.items()}) for n in range(trials)])


class StepContext:
    """Everything a collector may look at during one training step (see module docstring)."""

    def __init__(
        self,
        tasks: Sequence[str],
        losses: Sequence[torch.Tensor] | torch.Tensor,
        shared_parameters: Sequence[torch.Tensor],
        optimizer: torch.optim.Optimizer,
        evaluator: TrialEvaluator | None = None,
        *,
        task_parameters: Sequence[Sequence[torch.Tensor]] | None = None,
        task_gradients: torch.Tensor | None = None,
        task_gram: torch.Tensor | None = None,
        head_gradients: Sequence[Sequence[torch.Tensor]] | None = None,
        step: int = 0,
        epoch: int = 0,
    ) -> None:
        self.tasks = tuple(tasks)
        if torch.is_tensor(losses) and losses.dim() > 1:
            raise ConfigError(
                f"losses of shape {tuple(losses.shape)} for tasks {self.tasks}: give one scalar per task (the mean "
                "over the batch), as a (K,) tensor or a list of K scalars"
            )
        for task, loss in zip(self.tasks, [] if torch.is_tensor(losses) else losses, strict=False):
            if not torch.is_tensor(loss) or loss.numel() != 1:
                shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
                raise ConfigError(
                    f"the loss of task {task!r} is {shape}, not a scalar tensor: give one scalar per task (the mean "
                    "over the batch, in the graph of the model), not per-example losses"
                )
        self._stacked = losses.reshape(-1) if torch.is_tensor(losses) else None
        self._losses = None if torch.is_tensor(losses) else list(losses)
        count = len(self._stacked) if self._losses is None else len(self._losses)
        if count != len(self.tasks):
            raise ConfigError(f"{count} losses given for {len(self.tasks)} tasks {self.tasks}")
        if evaluator is not None and not isinstance(evaluator, TrialEvaluator):
            raise ConfigError(
                f"evaluator is a {type(evaluator).__name__}: give a taskrel.train.TrialEvaluator(model, losses), where "
                "losses(model, task_indices) returns the tasks' losses of the current batch under `model`"
            )
        values = self._stacked.detach() if self._losses is None else torch.stack([x.detach() for x in self._losses])
        self._loss_values = values.reshape(-1).to(torch.float64)
        self.shared_parameters = list(shared_parameters)
        self.optimizer = optimizer
        self.evaluator = evaluator
        self.task_parameters = list(task_parameters) if task_parameters is not None else None
        self.step = step
        self.epoch = epoch
        self._task_gradients = task_gradients
        self._task_gram = task_gram
        self._head_gradients = [list(g) for g in head_gradients] if head_gradients is not None else None
        engine.check_finite_losses(self._loss_values, self.tasks)

    @property
    def losses(self) -> list[torch.Tensor]:
        """Per-task losses as scalar tensors in the caller's graph."""
        if self._losses is None:
            self._losses = list(self._stacked.unbind())
        return self._losses

    @property
    def loss_values(self) -> torch.Tensor:
        """Per-task losses as a detached float64 vector (K,)."""
        return self._loss_values

    @property
    def task_gradients(self) -> torch.Tensor:
        """(K, P) gradients of each task's loss on the shared parameters."""
        if self._task_gradients is None:
            self._task_gradients = engine.task_gradients(self.losses, self.shared_parameters, names=self.tasks)
        return self._task_gradients

    @property
    def task_gram(self) -> torch.Tensor:
        """(K, K) Gram matrix of the per-task gradients on the shared parameters, float64."""
        if self._task_gram is None:
            self._task_gram = engine.gram(self.task_gradients)
        return self._task_gram

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

    def evaluate(
        self,
        shared: Sequence[torch.Tensor] | None = None,
        heads: Mapping[int, Sequence[torch.Tensor]] | None = None,
        tasks: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Losses (N, len(tasks)) of the step's batch under N trial parameter sets, nothing written.

        `shared`: trial values (N, *p.shape) for each of `shared_parameters` (None: the live ones);
        `heads`: task index k → trial values (N, *p.shape) for each of ``task_parameters[k]``;
        `tasks`: the task indices whose losses are returned (default: all, in task order).
        See the module docstring for the evaluation mode.
        """
        if self.evaluator is None:
            raise ConfigError(
                "lookahead affinities need evaluator= in the StepContext (a TrialEvaluator of the model and its losses)"
            )
        replace: dict[torch.Tensor, torch.Tensor] = {}
        if shared is not None:
            replace.update(zip(self.shared_parameters, shared, strict=True))
        for k, values in (heads or {}).items():
            if self.task_parameters is None:
                raise ConfigError("trial heads need task_parameters= in the StepContext")
            replace.update(zip(self.task_parameters[k], values, strict=True))
        trials = len(next(iter(replace.values()))) if replace else 1
        tasks = tuple(range(len(self.tasks))) if tasks is None else tuple(tasks)
        return self.evaluator(replace, tasks, trials)

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
    `ctx.task_gradients` or `ctx.head_gradients`, and `needs_task_gram = True` when it reads only
    `ctx.task_gram`, so a trainer can compute them in its fastest way.
    """

    needs_task_gradients = False
    needs_task_gram = False

    def on_train_begin(self, logs: dict) -> None:
        pass

    def on_step(self, ctx: StepContext) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_train_end(self) -> None:
        pass
