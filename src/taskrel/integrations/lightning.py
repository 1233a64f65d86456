"""PyTorch Lightning: task affinity during `Trainer.fit`, and a Lightning training as a taskrel `Problem`.

What the `LightningModule` follows (nothing else changes):

* ``training_step`` returns ``{"loss": total, "task_losses": {task: scalar tensor}}``: each task's mean
  loss on the batch, in the step's graph (the tasks in task order, the same every step);
* ``validation_step`` logs ``val_loss/<task>`` per task (``self.log(f"val_loss/{task}", loss)``, reduced
  over the validation set by Lightning as usual); for `LightningProblem`, ``test_step`` logs ``test_loss/<task>``.

`AffinityCallback` translates Lightning's hooks into taskrel's callback contract (`taskrel.train.callbacks`):

* ``on_train_begin``: the validation losses logged in Lightning's sanity check, the baseline of
  validation weighting (``Trainer(num_sanity_val_steps=-1)`` validates on every batch; the default 2
  batches give a baseline from those batches only, with a warning). Without a sanity check
  (``num_sanity_val_steps=0``) the first epoch has no baseline and counts with weight 0;
* ``on_step``: every training step (automatic optimisation), after ``training_step`` returned and before
  Lightning's backward: the callback wraps the module's ``training_step`` during the fit. When every shared
  parameter belongs to a linear layer, the per-task gradients (or only their Gram matrix, all ETAP needs)
  come from the layers' inputs and a backward to their outputs (`taskrel.gradients.linear_task_gradients`,
  from the second step on), not from a backward through the whole model per task;
* ``on_epoch_end``: after every validation during the fit, with the logged ``val_loss/<task>``. An epoch
  of the collectors is the training steps between two validations (``val_check_interval`` and
  ``check_val_every_n_epoch`` set it); a fit without validation keeps one open epoch (``weighting="steps"``);
* ``on_train_end``: at the end of training.

**Shared parameters**: ``shared_parameters(module)`` when given; else the module's own
``shared_parameters()`` method when it has one; else every trainable parameter that the losses of two or
more tasks depend on (found on the first step from each task loss's autograd graph). **Each task's own
parameters** (PTG's trial steps move them): the module's ``task_parameters(task)`` when it has one, else
the parameters that only that task's loss depends on.

Lookahead collectors (TAG, PTG) evaluate trial parameters by calling the module's ``training_step`` on
the step's batch again with the parameters swapped (`torch.func.functional_call`), in evaluation mode,
with ``self.log`` and ``self.log_dict`` silenced. The live parameters, buffers, ``.grad``, optimiser state
and random generators are not touched, so training with and without the callback is bit-identical.

**State**: `state_dict` / `load_state_dict` hold the collectors' sums, so a fit resumed from a checkpoint
(``trainer.fit(module, ckpt_path=...)``) continues them and ends with the matrix of an uninterrupted fit.

**DDP**: the callback collects on global rank 0 only (the other ranks' callbacks stay empty). The per-task
gradients it sees are those of rank 0's own share of each global batch: `torch.autograd.grad` does not run
DDP's gradient all-reduce, so they are not averaged over the ranks, and each step's affinity is estimated
from 1/world_size of its samples (the optimiser state that momentum directions read is the same on every rank).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

try:
    import lightning.pytorch as pl
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        "taskrel.integrations.lightning needs Lightning: pip install 'taskrel[lightning]'"
    ) from exc

from taskrel.affinity import COLLECTORS
from taskrel.affinity.collector import AffinityCollector
from taskrel.affinity.matrix import AffinityMatrix
from taskrel.affinity.measure import make_collector
from taskrel.errors import ConfigError, DataError, ModelError
from taskrel.gradients import LinearCapture, linear_task_gradients, shared_linear_layers
from taskrel.problems.protocol import GroupResult, check_task_names
from taskrel.problems.torch_problem import _digest, _source
from taskrel.train.callbacks import Callback, StepContext, TrialEvaluator
from taskrel.train.loop import members, torch_threads
from taskrel.weighting.methods import task_specific_parameters

#: ``shared_parameters(module)``: the parameters the tasks share.
SharedParameters = Callable[[nn.Module], Iterable[torch.Tensor]]
#: ``factory(group, seed)``: a fresh LightningModule / LightningDataModule for the group (tasks in task order).
ModuleFactory = Callable[[tuple[str, ...], int], "pl.LightningModule"]
DataModuleFactory = Callable[[tuple[str, ...], int], "pl.LightningDataModule"]


class AffinityCallback(pl.Callback):
    """Collect ETAP / TAG / PTG affinity during `Trainer.fit` (see the module docstring for the rules).

    `methods`: collector names (``"etap"``, ``"tag"``, ``"ptg"``, built with `every` and `weighting`) or
    taskrel callbacks (e.g. ``TagAffinity(sample=0.5)``). After the fit, ``callback.matrices["etap"]`` is
    the `AffinityMatrix` A[source, target]: row i, column j = effect of task i's update on task j.
    `val_key`: the logged name of a task's validation loss.
    """

    def __init__(
        self,
        methods: Sequence[str | Callback] = ("etap",),
        *,
        every: int = 1,
        weighting: str | None = None,
        shared_parameters: SharedParameters | None = None,
        val_key: str = "val_loss/{task}",
    ) -> None:
        if isinstance(methods, str):
            methods = (methods,)
        unknown = [m for m in methods if isinstance(m, str) and m not in COLLECTORS]
        if unknown:
            raise ConfigError(f"AffinityCallback: unknown method(s) {unknown}; use {sorted(COLLECTORS)}")
        self.callbacks = [make_collector(m, every, weighting=weighting) if isinstance(m, str) else m for m in methods]
        names = [getattr(cb, "method", type(cb).__name__) for cb in self.callbacks]
        if len(set(names)) != len(names):
            raise ConfigError(f"AffinityCallback: each method once, got {names}")
        if "{task}" not in val_key:
            raise ConfigError(f"AffinityCallback: val_key must contain '{{task}}', got {val_key!r}")
        self.names = names
        self.shared_parameters = shared_parameters
        self.val_key = val_key
        self._tasks: tuple[str, ...] = ()
        self._shared: list[torch.Tensor] = []
        self._heads: list[list[torch.Tensor]] = []
        self._optimizer: torch.optim.Optimizer | None = None
        self._layers: list[nn.Linear] | None = None  # shared linear layers, captured from the second step on
        self._needs_gradients = False
        self._initial: dict[str, float] | None = None
        self._begun = False
        self._module: pl.LightningModule | None = None  # whose training_step is wrapped during the fit

    @property
    def state_key(self) -> str:
        return self._generate_state_key(methods=self.names)

    @property
    def collectors(self) -> dict[str, AffinityCollector]:
        """The affinity collectors by method name."""
        return {cb.method: cb for cb in self.callbacks if isinstance(cb, AffinityCollector)}

    @property
    def matrices(self) -> dict[str, AffinityMatrix]:
        """Each collector's aggregated matrix A[source, target] (row = source task, column = target task)."""
        return {name: collector.matrix() for name, collector in self.collectors.items()}

    # -- Lightning hooks ---------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        if self._begun and trainer.ckpt_path is None:
            raise ConfigError("AffinityCallback: this callback already watched a fit; give each new fit its own")
        if not pl_module.automatic_optimization:
            raise ConfigError(
                f"AffinityCallback needs automatic optimisation; {type(pl_module).__name__} optimises manually: "
                "call the collectors' on_step(StepContext(...)) in its training_step before backward"
            )
        original = pl_module.training_step

        @functools.wraps(original)  # Lightning reads the signature of training_step
        def training_step(*args: Any, **kwargs: Any) -> Any:
            capture = LinearCapture(self._layers) if self._layers else contextlib.nullcontext()
            with capture:
                output = original(*args, **kwargs)
            rerun = functools.partial(original, *args, **kwargs)
            self._step(trainer, pl_module, rerun, output, capture if self._layers else None)
            return output

        pl_module.training_step = training_step
        self._module = pl_module

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._module is not None:
            del self._module.training_step
            self._module = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0 or self._begun:  # a resumed fit continues the restored collection
            return
        self._begun = True
        logs = {"val_loss": self._initial} if self._initial else {}
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0 or trainer.state.fn != "fit":
            return
        if trainer.sanity_checking:
            self._baseline(trainer)
            return
        if not self._tasks:
            return
        val = self._val_losses(trainer.callback_metrics)
        missing = [t for t in self._tasks if t not in val]
        if missing and self._weights_by_validation():
            keys = [self.val_key.format(task=t) for t in missing]
            raise ConfigError(
                f"AffinityCallback: {type(pl_module).__name__} logged no {keys} in validation (logged: "
                f"{sorted(trainer.callback_metrics)}); validation weighting needs "
                "self.log(f'val_loss/{task}', loss) per task in validation_step, or use weighting='steps'"
            )
        logs = {} if missing else {"val_loss": {t: val[t] for t in self._tasks}}
        for cb in self.callbacks:
            cb.on_epoch_end(trainer.current_epoch, logs)

    def _baseline(self, trainer: pl.Trainer) -> None:
        """The sanity check's validation losses: the baseline of validation weighting."""
        self._initial = self._val_losses(trainer.callback_metrics) or None
        checked, batches = trainer.num_sanity_val_batches, trainer.num_val_batches
        partial = any(c < b for c, b in zip(checked, batches, strict=True))
        if self._initial and self._weights_by_validation() and partial:
            warnings.warn(
                f"AffinityCallback: the baseline validation losses come from {checked} of {batches} validation "
                "batches (Lightning's sanity check); Trainer(num_sanity_val_steps=-1) uses them all",
                stacklevel=2,
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank == 0:
            for cb in self.callbacks:
                cb.on_train_end()

    def state_dict(self) -> dict[str, Any]:
        return {
            "begun": self._begun,
            "initial": self._initial,
            "callbacks": [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in self.callbacks],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._begun, self._initial = bool(state_dict["begun"]), state_dict["initial"]
        for cb, state in zip(self.callbacks, state_dict["callbacks"], strict=True):
            if state is not None:
                cb.load_state_dict(state)

    # -- the translation ---------------------------------------------------------------------------
    def _step(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        rerun: Callable[[], Any],
        output: Any,
        capture: LinearCapture | None,
    ) -> None:
        task_losses = _task_losses(output, module)
        if not self._tasks:
            self._start(trainer, module, task_losses)
        if tuple(task_losses) != self._tasks:
            raise ConfigError(
                f"{type(module).__name__}.training_step returned task_losses for {tuple(task_losses)}; "
                f"earlier steps had {self._tasks}"
            )

        def trial_losses(_: nn.Module, tasks: tuple[int, ...]) -> torch.Tensor:  # the parameters are swapped
            with _silenced(module):
                losses = _task_losses(rerun(), module)
            return torch.stack([losses[self._tasks[k]].reshape(()) for k in tasks])

        evaluator = TrialEvaluator(module, trial_losses)
        ctx = _Step(
            self._tasks, list(task_losses.values()), self._shared, self._optimizer, evaluator,
            task_parameters=self._heads, step=trainer.global_step, epoch=trainer.current_epoch,
        )  # fmt: skip
        ctx.capture, ctx.gradients_first = capture, self._needs_gradients
        for cb in self.callbacks:
            cb.on_step(ctx)

    def _start(self, trainer: pl.Trainer, module: pl.LightningModule, task_losses: dict[str, torch.Tensor]) -> None:
        """On the first step: tasks, optimiser, shared and task-specific parameters (module docstring)."""
        self._tasks = tuple(task_losses)
        check_task_names(self._tasks, f"AffinityCallback on {type(module).__name__}")
        if self._initial and (missing := [t for t in self._tasks if t not in self._initial]):
            raise ConfigError(
                f"AffinityCallback: {type(module).__name__}'s sanity-check validation logged no "
                f"{[self.val_key.format(task=t) for t in missing]}"
            )
        if len(trainer.optimizers) != 1:
            count = len(trainer.optimizers)
            raise ConfigError(f"AffinityCallback needs one optimizer, {type(module).__name__} has {count}")
        self._optimizer = trainer.optimizers[0]
        params = [p for p in module.parameters() if p.requires_grad]
        reached = [{id(p) for p in task_specific_parameters([loss], [])} for loss in task_losses.values()]
        users = {id(p): sum(id(p) in r for r in reached) for p in params}
        if self.shared_parameters is not None:
            shared = list(self.shared_parameters(module))
        elif callable(getattr(module, "shared_parameters", None)):
            shared = list(module.shared_parameters())
        else:
            shared = [p for p in params if users[id(p)] >= 2]
        if not shared:
            raise ModelError(
                f"AffinityCallback: no parameter of {type(module).__name__} is used by two tasks' losses; give "
                "shared_parameters=lambda module: module.<trunk>.parameters()"
            )
        shared_ids = {id(p) for p in shared}
        if callable(getattr(module, "task_parameters", None)):
            self._heads = [list(module.task_parameters(t)) for t in self._tasks]
        else:
            self._heads = [
                [p for p in params if id(p) in r and users[id(p)] == 1 and id(p) not in shared_ids] for r in reached
            ]
        self._shared = shared
        self._needs_gradients = any(cb.needs_task_gradients for cb in self.callbacks)
        if self._needs_gradients or any(cb.needs_task_gram for cb in self.callbacks):
            self._layers = shared_linear_layers(module, shared)

    def _val_losses(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """{task: value} of the logged metrics named like `val_key`."""
        prefix, _, suffix = self.val_key.partition("{task}")
        return {
            key[len(prefix) : len(key) - len(suffix)]: float(value)
            for key, value in metrics.items()
            if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix) + len(suffix)
        }

    def _weights_by_validation(self) -> bool:
        return any(getattr(cb, "weighting", None) == "validation" for cb in self.callbacks)


class _Step(StepContext):
    """A step whose per-task gradients (or only their Gram matrix) come, when first read, from the captured
    shared linear layers (`linear_task_gradients`); without a capture, from `StepContext`'s own route."""

    capture: LinearCapture | None = None
    gradients_first = False  # some callback reads the gradients: form them once, the Gram matrix from them

    @property
    def task_gradients(self) -> torch.Tensor:
        if self._task_gradients is None and self.capture is not None:
            self._task_gradients, _ = linear_task_gradients(self._stack(), self.capture, self.shared_parameters,
                                                            self.tasks)  # fmt: skip
        return super().task_gradients

    @property
    def task_gram(self) -> torch.Tensor:
        if self._task_gram is None and self.capture is not None and not self.gradients_first:
            _, self._task_gram = linear_task_gradients(self._stack(), self.capture, self.shared_parameters,
                                                       self.tasks, gram_only=True)  # fmt: skip
        return super().task_gram

    def _stack(self) -> torch.Tensor:
        return torch.stack([loss.reshape(()) for loss in self.losses])


def _task_losses(output: Any, module: nn.Module) -> dict[str, torch.Tensor]:
    losses = output.get("task_losses") if isinstance(output, Mapping) else None
    if not isinstance(losses, Mapping) or not losses:
        raise ConfigError(
            f"{type(module).__name__}.training_step returned {type(output).__name__}"
            f"{' with keys ' + str(sorted(output)) if isinstance(output, Mapping) else ''}; for AffinityCallback "
            "return {'loss': total, 'task_losses': {task: scalar loss tensor}}"
        )
    return dict(losses)


@contextlib.contextmanager
def _silenced(module: pl.LightningModule) -> Iterator[None]:
    """`module.log` and `module.log_dict` do nothing inside the block (trial evaluations log nothing)."""
    module.log = module.log_dict = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del module.log, module.log_dict


#: Trainer settings of `LightningProblem` unless its `trainer_kwargs` say otherwise.
TRAINER_DEFAULTS = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}


class LightningProblem:
    """A `Problem` whose ``train(group, seed)`` runs `lightning.Trainer.fit` for the group.

    `module_factory(group, seed)` and `datamodule_factory(group, seed)` build a fresh module and data
    module for the group (tasks in task order), after ``lightning.seed_everything(seed)``. `trainer_kwargs`
    are `lightning.Trainer`'s arguments (copied for every run, so callbacks such as ``EarlyStopping`` start
    fresh), over `TRAINER_DEFAULTS` and a temporary ``default_root_dir``. Early stopping and the restored
    weights are Lightning's: after the fit the losses come from ``trainer.validate`` and ``trainer.test``
    with ``ckpt_path="best"`` when a checkpoint callback saved one, else the final weights; the module
    logs ``val_loss/<task>`` and ``test_loss/<task>`` (`val_key`, `test_key`). Collectors given to `train`
    watch the fit through an `AffinityCallback`. `threads`: torch's intra-op threads during `train`.

    The fingerprint covers the name, tasks, the factories' and the module's source, the module's
    architecture and the trainer arguments; not the data files: give a new `name` when the data change.
    """

    def __init__(
        self,
        module_factory: ModuleFactory,
        datamodule_factory: DataModuleFactory,
        trainer_kwargs: Mapping[str, Any] | None = None,
        *,
        tasks: Sequence[str],
        name: str = "lightning",
        val_key: str = "val_loss/{task}",
        test_key: str = "test_loss/{task}",
        threads: int | None = 1,
    ) -> None:
        self.tasks = list(tasks)
        check_task_names(self.tasks, f"LightningProblem {name!r}")
        self.module_factory, self.datamodule_factory = module_factory, datamodule_factory
        self.trainer_kwargs = dict(trainer_kwargs or {})
        self.name, self.val_key, self.test_key, self.threads = name, val_key, test_key, threads

    def fingerprint(self) -> dict:
        with torch.random.fork_rng(devices=[]):
            module = self.module_factory(tuple(self.tasks), 0)
        classes = sorted({_source(type(m)) for m in module.modules() if not type(m).__module__.startswith("torch.")})
        return {
            "name": self.name,
            "tasks": list(self.tasks),
            "module": _digest(_source(self.module_factory) + "\n".join(classes)),
            "architecture": _digest(repr(module) + repr([(n, tuple(p.shape)) for n, p in module.named_parameters()])),
            "data": _digest(_source(self.datamodule_factory)),
            "trainer": {key: _describe(value) for key, value in sorted(self.trainer_kwargs.items())},
        }

    def train(
        self, group: Sequence[str], seed: int, *, callbacks: Sequence[Callback] = (), weighting: object | None = None
    ) -> GroupResult:
        """Fit `group` with `seed`; per-task validation and test losses of Lightning's restored weights."""
        if weighting is not None:
            raise ConfigError(
                f"LightningProblem {self.name!r} trains with its module's own optimisation step: put the weighting in "
                "the module (e.g. torchjd's mtl_backward in a manual training_step), not weighting="
            )
        group = members(group, self.tasks, self.name)
        started = time.perf_counter()
        with torch_threads(self.threads), tempfile.TemporaryDirectory(prefix="taskrel-lightning-") as root:
            pl.seed_everything(seed, verbose=False)
            module = self.module_factory(group, seed)
            data = self.datamodule_factory(group, seed)
            kwargs = {**TRAINER_DEFAULTS, "default_root_dir": root, **copy.deepcopy(self.trainer_kwargs)}
            if callbacks:
                kwargs["callbacks"] = [*kwargs.get("callbacks", []), AffinityCallback(list(callbacks))]
            trainer = pl.Trainer(**kwargs)
            trainer.fit(module, datamodule=data)
            checkpoint = trainer.checkpoint_callback
            best = "best" if checkpoint is not None and getattr(checkpoint, "best_model_path", "") else None
            val = trainer.validate(module, datamodule=data, ckpt_path=best, verbose=False)[0]
            test = trainer.test(module, datamodule=data, ckpt_path=best, verbose=False)[0]
        return GroupResult(
            self._losses(val, self.val_key, "validate", group),
            self._losses(test, self.test_key, "test", group),
            steps=int(trainer.global_step),
            seconds=time.perf_counter() - started,
        )

    def _losses(self, metrics: Mapping[str, Any], key: str, stage: str, group: Sequence[str]) -> dict[str, float]:
        missing = [key.format(task=t) for t in group if key.format(task=t) not in metrics]
        if missing:
            raise DataError(
                f"LightningProblem {self.name!r}: trainer.{stage} logged no {missing} (logged: {sorted(metrics)})"
            )
        return {t: float(metrics[key.format(task=t)]) for t in group}

    def __repr__(self) -> str:
        return f"LightningProblem({self.name!r}, {len(self.tasks)} tasks)"


def _describe(value: Any) -> Any:
    """A JSON-able description of a trainer argument (a callback by its Lightning `state_key`)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_describe(v) for v in value]
    if isinstance(value, pl.Callback):
        return value.state_key
    return type(value).__qualname__
