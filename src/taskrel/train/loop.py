"""The training loop every trainer shares: one group (STL is a group of one), per-task losses.

Both trainers share this loop (`BaseTrainer.fit`): a fresh model seeded by `seed`, the sum of task
losses (or a weighting method's combination) as the objective, early stopping on the summed
validation loss of the monitored tasks with the best weights restored. Early stopping watches the
first validation rows (`TrainConfig.stop_rows`); the result reports the losses on the others, which
did not choose the weights. They differ in the data:

* `Trainer` (`taskrel.train.multi_input`) — multi-input data (`MultiTaskDataset`: every task its
  own rows); each step draws one sub-batch per task (ETAP's protocol, with class-balanced upsampling);
* `SharedInputTrainer` (`taskrel.train.single_input`) — single-input data (`SingleInputDataset`:
  one input, a target per task); each step draws one batch of rows that feeds every task head.

Same data, group, config and seed give the same numbers. The loop follows the callback contract
of `taskrel.train.callbacks` exactly as a user's own loop would. The batched engine
(`taskrel.train.batched`) trains many of these trainers at once with the same pieces: each trainer's
row stream (`epoch_rows`) and losses (`_losses`, with an optional padding mask), the stopping rule
(`EarlyStopping`), the epoch record (`epoch_logs`) and the final evaluation (`BaseTrainer.result`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from taskrel import gradients as engine
from taskrel.errors import ConfigError, ModelError, NonFiniteError
from taskrel.groups import make_group, ordered, parse_group
from taskrel.problems.protocol import GroupResult
from taskrel.train.callbacks import Callback, StepContext, TrialEvaluator
from taskrel.train.config import TrainConfig


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run a block with `count` torch intra-op threads, restoring the previous count afterwards."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r} ({exc})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here (use 'cpu' or 'auto')")
    return resolved


@dataclass(frozen=True)
class TrainResult(GroupResult):
    """A `GroupResult` with the run's provenance and per-epoch `history` (train and val losses).

    For the built-in datasets `*_metric` is accuracy for binary tasks and mean squared error in
    original target units for regression tasks.
    """

    dataset: str = ""
    group: tuple[str, ...] = ()
    seed: int = 0
    config: TrainConfig | None = None
    epochs: int = 0
    best_epoch: int = -1
    history: list[dict] = field(repr=False, default_factory=list)


class BaseTrainer:
    """The loop shared by both trainers; subclasses provide batches, losses and evaluation.

    `weighting`, if given, is any object with ``backward(losses, shared_parameters)`` that fills the
    `.grad` of the model's parameters (e.g. a `taskrel.weighting` method); otherwise the summed loss
    is back-propagated. `threads` is torch's intra-op thread count during `fit()` (restored after):
    one thread is fastest for small models and makes results bit-identical across machines' core
    counts; `None` leaves torch's setting alone. `monitor` names the tasks whose summed validation
    loss drives early stopping and the restored best weights (default: every task of the group;
    in auxiliary learning, the main task only).
    """

    name = ""

    def __init__(
        self,
        tasks: Sequence[str],
        model: nn.Module,
        config: TrainConfig,
        *,
        seed: int,
        callbacks: Sequence[Callback],
        weighting: object | None,
        threads: int | None,
        monitor: Iterable[str] | None,
        device: torch.device,
    ) -> None:
        self.tasks = tuple(tasks)
        self.monitor = (
            self.tasks if monitor is None else tuple(ordered(make_group(monitor, self.tasks, "monitor"), self.tasks))
        )
        self.config = config
        self.seed = int(seed)
        self.threads = threads
        self.callbacks = list(callbacks)
        self.weighting = weighting
        self.device = device
        self.model = model.to(device)
        self._params = list(self.model.parameters())
        self._shared = _shared_parameters(self.model) if self.callbacks or weighting is not None else []
        self._heads = [_task_parameters(self.model, t) for t in self.tasks] if self.callbacks else []
        # Collectors that read per-task gradients or only their Gram matrix get them with the update's own
        # backward, where a trainer has such a path (`_fast_backward`); `_gram_only`: none reads more.
        self._fast_gradients = (
            any(cb.needs_task_gradients or cb.needs_task_gram for cb in self.callbacks)
            and weighting is None
            and len(self.tasks) > 1
        )
        self._gram_only = not any(cb.needs_task_gradients for cb in self.callbacks)
        self.optimizer = make_optimizer(config, self.model.parameters())

    # -- provided by subclasses -----------------------------------------------------------------
    def _epoch(self) -> Iterator[object]:  # pragma: no cover - abstract
        raise NotImplementedError

    #: task k's loss reads only its own rows of a batch, so trial evaluations of fewer tasks cost less
    separable = False

    def _losses(self, batch, model: nn.Module | None = None, tasks: tuple[int, ...] | None = None) -> torch.Tensor:
        """Per-task mean losses (K,) of the current model on `batch`, with the autograd graph.

        A trial evaluation passes the `model` to call (its parameters swapped) and the task indices it needs
        (then the losses of those tasks only). Provided by subclasses.
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def evaluate(self, split: str) -> tuple[dict[str, float], dict[str, float]]:
        """Per-task mean loss and metric of the current model on `split`.

        Splits: "train", "test", "stop" (the validation rows early stopping monitors) and "val" (the
        other validation rows, the run's reported validation losses; `TrainConfig.stop_rows`).
        """
        losses, metrics, _ = self._evaluate(split, rows=False)
        return losses, metrics

    def evaluate_rows(self, split: str) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]] | None]:
        """`evaluate(split)` plus, per task, the loss of every row of `split` in the split's row order.

        The row losses come from the same forward pass as the mean losses (whose mean they are); under a
        mask of observed targets only a task's observed rows, in row order.
        """
        return self._evaluate(split, rows=True)

    def _evaluate(self, split: str, rows: bool) -> tuple[dict, dict, dict | None]:  # pragma: no cover - abstract
        """Per-task losses and metrics on `split`, and with `rows` each task's per-row losses (else None)."""
        raise NotImplementedError

    def _fast_backward(self, batch) -> engine.TaskGradients | None:
        """Per-task gradients and the summed-loss `.grad` in one pass, where a trainer has such a path."""
        return None

    def _step_context(self, losses, batch, gradients, step, epoch) -> StepContext:
        evaluator = TrialEvaluator(
            self.model, lambda model, tasks: self._losses(batch, model, tasks), separable=self.separable
        )
        return StepContext(
            self.tasks, losses, self._shared, self.optimizer, evaluator,
            task_parameters=self._heads,
            task_gradients=None if gradients is None else gradients.shared,
            task_gram=None if gradients is None else gradients.gram,
            head_gradients=None if gradients is None else gradients.heads,
            step=step, epoch=epoch,
        )  # fmt: skip

    # -- the loop ---------------------------------------------------------------------------------
    def _step(self, batch, step: int, epoch: int) -> torch.Tensor:
        """One update; returns the per-task losses (K,) before the update."""
        for p in self._params:
            p.grad = None
        gradients = self._fast_backward(batch)
        losses = gradients.losses if gradients is not None else self._losses(batch)
        if self.callbacks:
            ctx = self._step_context(losses, batch, gradients, step, epoch)
            for cb in self.callbacks:
                cb.on_step(ctx)
        if self.weighting is not None:
            self.weighting.backward(list(losses), self._shared)
        elif gradients is None:
            losses.sum().backward()
        self.optimizer.step()
        return losses.detach()

    def fit(self) -> TrainResult:
        """Train until early stopping (or the step/epoch cap); per-task losses of the best weights."""
        with torch_threads(self.threads):
            return self._fit()

    def _fit(self) -> TrainResult:
        cfg, started = self.config, time.perf_counter()
        torch.manual_seed(self.seed)
        if self.callbacks:
            initial = {"val_loss": self.evaluate("stop")[0]}
            for cb in self.callbacks:
                cb.on_train_begin(initial)
        stopping, history, step, epoch = EarlyStopping(cfg, self.monitor), [], 0, 0
        while stopping.another_epoch(epoch, step):
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr_at(epoch)
            sums, count = torch.zeros(len(self.tasks), device=self.device), 0
            for batch in self._epoch():
                sums += self._step(batch, step, epoch)
                count += 1
                step += 1
            logs = epoch_logs(self.tasks, (sums / count).tolist(), self.evaluate("stop")[0], epoch, step, cfg)
            history.append(logs)
            for cb in self.callbacks:
                cb.on_epoch_end(epoch, logs)
            verdict = stopping.update(logs["val_loss"], epoch, step)
            if verdict == "improved":
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            elif verdict == "stop":
                break
            epoch += 1
        stopping.check(self.tasks)
        self.model.load_state_dict(best_state)
        result = self.result(history, step, stopping.best_epoch, time.perf_counter() - started)
        for cb in self.callbacks:
            cb.on_train_end()
        return result

    def result(self, history: list[dict], steps: int, best_epoch: int, seconds: float) -> TrainResult:
        """The run's `TrainResult` from the current (restored best) weights: reported val rows and test."""
        val_loss, val_metric, val_rows = self.evaluate_rows("val")
        test_loss, test_metric = self.evaluate("test")
        return TrainResult(
            val_loss, test_loss, val_metric, test_metric, steps=steps, seconds=seconds, val_rows=val_rows,
            dataset=self.name, group=self.tasks, seed=self.seed, config=self.config, epochs=len(history),
            best_epoch=best_epoch, history=history,
        )  # fmt: skip


class EarlyStopping:
    """The stopping rule every engine applies after each epoch, and the training cap.

    Keep the weights of the epoch with the lowest summed validation loss of the `monitor`ed tasks
    (on the "stop" rows); stop once `patience` epochs and `patience_steps` steps have passed without
    improvement, or at the cap: no epoch starts at `max_epochs` epochs or `max_steps` steps (an
    epoch that has started is finished).
    """

    def __init__(self, config: TrainConfig, monitor: Sequence[str]) -> None:
        self.config, self.monitor = config, tuple(monitor)
        self.best, self.best_epoch, self.best_step = float("inf"), -1, 0

    def another_epoch(self, epoch: int, step: int) -> bool:
        cfg = self.config
        return (cfg.max_epochs is None or epoch < cfg.max_epochs) and step < cfg.max_steps

    def update(self, val_loss: Mapping[str, float], epoch: int, step: int) -> str:
        """"improved" (keep these weights), "stop" or "continue" after `epoch` ended at `step`."""
        total = sum(val_loss[t] for t in self.monitor)
        if total < self.best:
            self.best, self.best_epoch, self.best_step = total, epoch, step
            return "improved"
        if epoch - self.best_epoch >= self.config.patience and step - self.best_step >= self.config.patience_steps:
            return "stop"
        return "continue"

    def check(self, tasks: Sequence[str]) -> None:
        """Raise `NonFiniteError` when no epoch gave a finite validation loss (no weights to restore)."""
        if self.best_epoch < 0:
            raise NonFiniteError(f"validation loss of group {'|'.join(tasks)} was never finite")


def epoch_logs(
    tasks: Sequence[str], mean_train: Sequence[float], val_loss: dict[str, float], epoch: int, step: int,
    config: TrainConfig,
) -> dict:
    """One epoch's history entry; `NonFiniteError` naming the first task whose training loss is not finite."""
    bad = [t for t, v in zip(tasks, mean_train, strict=True) if not np.isfinite(v)]
    if bad:
        value = mean_train[list(tasks).index(bad[0])]
        raise NonFiniteError(f"loss of task {bad[0]!r} became {value} during epoch {epoch}")
    return {
        "epoch": epoch,
        "step": step,
        "lr": config.lr_at(epoch),
        "train_loss": dict(zip(tasks, mean_train, strict=True)),
        "val_loss": val_loss,
    }


def members(group: Iterable[str] | str, tasks: Sequence[str], name: str) -> tuple[str, ...]:
    """The tasks of `group` (names or canonical text) in dataset order, checked against `tasks`."""
    names = parse_group(group, tasks) if isinstance(group, str) else make_group(group, tasks, f"dataset {name!r}")
    return tuple(ordered(names, tasks))


def make_optimizer(config: TrainConfig, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """The optimiser `config.optimizer` names: SGD with `config.momentum`, or Adam."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, foreach=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, foreach=True)


def _shared_parameters(model: nn.Module) -> list[torch.Tensor]:
    getter = getattr(model, "shared_parameters", None)
    if getter is None:
        raise ModelError(
            f"{type(model).__name__} has no shared_parameters(): collectors and weighting methods need to know "
            "which parameters the tasks share (use taskrel.models.MultiTaskModel or define the method)"
        )
    return list(getter())


def _task_parameters(model: nn.Module, task: str) -> list[torch.Tensor]:
    getter = getattr(model, "task_parameters", None)
    return list(getter(task)) if getter is not None else []


