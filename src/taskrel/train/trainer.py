"""Train one task group (STL is a group of one) and report per-task losses.

Two trainers share one loop (`BaseTrainer.fit`): a fresh model seeded by `seed`, the sum of task
losses (or a weighting method's combination) as the objective, early stopping on the summed
validation loss of the monitored tasks with the best weights restored. Early stopping watches the
first validation rows (`TrainConfig.stop_rows`); the result reports the losses on the others, which
did not choose the weights. They differ in the data:

* `Trainer` — multi-input data (`MultiTaskDataset`: every task its own rows); each step draws one
  sub-batch per task (ETAP's protocol, with class-balanced upsampling);
* `SharedInputTrainer` — single-input data (`SingleInputDataset`: one input, a target per task);
  each step draws one batch of rows that feeds every task head.

Same data, group, config and seed give the same numbers. The loop follows the callback contract
of `taskrel.train.callbacks` exactly as a user's own loop would. The batched engine
(`taskrel.train.batched`) trains many of these trainers at once with the same pieces: each trainer's
row stream (`epoch_rows`) and losses (`_losses`, with an optional padding mask), the stopping rule
(`EarlyStopping`), the epoch record (`epoch_logs`) and the final evaluation (`BaseTrainer.result`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from taskrel import gradients as engine
from taskrel.data.dataset import MultiTaskDataset
from taskrel.data.single import SingleInputDataset
from taskrel.errors import ConfigError, ModelError, NonFiniteError
from taskrel.groups import make_group, ordered, parse_group
from taskrel.models import MultiTaskModel, loss_function, mlp_model
from taskrel.problem import GroupResult
from taskrel.train.batches import BatchPlan, upsample_rows
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

    def evaluate(self, split: str) -> tuple[dict[str, float], dict[str, float]]:  # pragma: no cover
        """Per-task mean loss and metric of the current model on `split`.

        Splits: "train", "test", "stop" (the validation rows early stopping monitors) and "val" (the
        other validation rows, the run's reported validation losses; `TrainConfig.stop_rows`).
        """
        raise NotImplementedError

    def evaluate_rows(self, split: str) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]] | None]:
        """`evaluate(split)` plus, per task, the loss of every row of `split` in the split's row order.

        The row losses come from the same forward pass as the mean losses (whose mean they are); under a
        mask of observed targets only a task's observed rows, in row order. A subclass without rows gives None.
        """
        losses, metrics = self.evaluate(split)
        return losses, metrics, None

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


# ----------------------------------------------------------------------------------------------
class Trainer(BaseTrainer):
    """Train `group` of a multi-input `dataset` with `config`; `fit()` returns a `TrainResult`.

    One mini-batch per task per step, class-balanced upsampling of every task to the largest task
    of the group (ETAP's protocol). The default model is the MLP of `config.hidden`.
    """

    def __init__(
        self,
        dataset: MultiTaskDataset,
        group: Iterable[str] | str,
        config: TrainConfig | None = None,
        *,
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        weighting: object | None = None,
        model: MultiTaskModel | None = None,
        threads: int | None = 1,
        monitor: Iterable[str] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        tasks = members(group, dataset.task_names, dataset.name)
        config = config or TrainConfig()
        if model is None:
            model = mlp_model(tasks, dataset.n_features, config.hidden, seed=seed)
        missing = [t for t in tasks if t not in model.task_names]
        if missing:
            raise ConfigError(f"the model has no head for task(s) {missing}")
        super().__init__(
            tasks, model, config, seed=seed, callbacks=callbacks, weighting=weighting, threads=threads,
            monitor=monitor, device=resolve_device(device),
        )  # fmt: skip
        self.name = dataset.name
        self.dataset = dataset.subset(self.tasks)
        self.loss_fn = loss_function(dataset.kind)
        self._prepare_data()

    def _prepare_data(self) -> None:
        rng = np.random.default_rng([self.seed, 1])
        tasks = self.dataset.tasks
        target = max(len(t.train) for t in tasks) if self.config.upsample and len(tasks) > 1 else 0
        rows = [upsample_rows(t.train.y, target, rng) if target else np.arange(len(t.train)) for t in tasks]
        sizes = [len(r) for r in rows]
        # All tasks' training rows in one tensor; task k occupies rows offsets[k] : offsets[k] + sizes[k].
        x = np.concatenate([t.train.x[r] for t, r in zip(tasks, rows, strict=True)])
        y = np.concatenate([t.train.y[r] for t, r in zip(tasks, rows, strict=True)])
        self.train_x = torch.from_numpy(x).to(self.device)
        self.train_y = torch.from_numpy(y).to(self.device)
        self.offsets = np.cumsum([0, *sizes[:-1]])[:, None]
        self.plan = BatchPlan(sizes, self.config.batch_size, rng)
        on_device = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        self._eval = {"stop": [], "val": [], "test": []}
        for t in tasks:
            k = self.config.stop_rows(len(t.val))
            reported = slice(k, None) if k < len(t.val) else slice(None)
            self._eval["stop"].append((on_device(t.val.x[:k]), on_device(t.val.y[:k])))
            self._eval["val"].append((on_device(t.val.x[reported]), on_device(t.val.y[reported])))
            self._eval["test"].append((on_device(t.test.x), on_device(t.test.y)))

    def epoch_rows(self) -> Iterator[np.ndarray]:
        """The steps of one epoch as (K, B) row indices into `train_x` (row k: task k's sub-batch)."""
        for rows in self.plan.epoch():
            yield self.offsets + np.stack(rows)

    def _epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for rows in self.epoch_rows():
            index = torch.from_numpy(rows).to(self.device)
            flat = index.reshape(-1)
            inputs = self.train_x.index_select(0, flat).view(*index.shape, -1)
            yield inputs, self.train_y.index_select(0, flat).view(index.shape)

    separable = True

    def _losses(self, batch, model=None, tasks=None) -> torch.Tensor:
        """Per-task mean losses for stacked sub-batches (K, B, d) and targets (K, B).

        A third element, a (K, B) 0/1 mask, restricts each task's mean to its rows marked 1 (padding).
        """
        inputs, targets, *mask = batch
        if tasks is not None and len(tasks) < len(self.tasks):
            index = torch.tensor(tasks, device=inputs.device)
            inputs, targets = inputs.index_select(0, index), targets.index_select(0, index)
            mask = [m.index_select(0, index) for m in mask]
        names = self.tasks if tasks is None else [self.tasks[k] for k in tasks]
        outputs = (self.model if model is None else model).forward_stacked(inputs, names)
        elementwise = self.loss_fn(outputs, targets, reduction="none")
        if not mask:
            return elementwise.mean(dim=1)
        return (elementwise * mask[0]).sum(dim=1) / mask[0].sum(dim=1).clamp(min=1.0)

    def _fast_backward(self, batch) -> engine.TaskGradients | None:
        if not self._fast_gradients:
            return None  # fills .grad with the summed-loss gradient, as the plain path does
        return engine.backward_with_task_gradients(
            self.model, self.tasks, *batch, self.loss_fn, task_parameters=self._heads, with_gram=self._gram_only
        )

    def evaluate(self, split: str) -> tuple[dict[str, float], dict[str, float]]:
        losses, metrics, _ = self._evaluate(split, rows=False)
        return losses, metrics

    def evaluate_rows(self, split: str) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]]]:
        """`evaluate(split)` plus each task's per-row losses, in the order of the task's rows of `split`."""
        return self._evaluate(split, rows=True)

    def _evaluate(self, split: str, rows: bool) -> tuple[dict, dict, dict | None]:
        self.model.eval()
        losses, metrics, per_row = {}, {}, {} if rows else None
        with torch.no_grad():
            for task in self.dataset.tasks:
                if split == "train":
                    part = task.train
                    x, y = torch.from_numpy(part.x).to(self.device), torch.from_numpy(part.y).to(self.device)
                else:
                    x, y = self._eval[split][self.tasks.index(task.name)]
                out = self.model(x, task.name)
                elementwise = self.loss_fn(out, y, reduction="none")
                losses[task.name] = float(elementwise.mean())  # bit-identical to the loss's "mean" reduction
                if rows:
                    per_row[task.name] = elementwise.reshape(len(y), -1).double().mean(dim=1).cpu().tolist()
                if self.dataset.kind == "binary":
                    metrics[task.name] = float(((out > 0).float() == y).float().mean())
                else:
                    metrics[task.name] = losses[task.name] * self.dataset.target_scale[1] ** 2
        self.model.train()
        return losses, metrics, per_row


# ----------------------------------------------------------------------------------------------
#: Per-row loss of one task: (predictions, targets) -> (n,) losses (mean over any other dimension).
RowLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES = ("mse", "bce", "ce")


def row_loss(spec: str | RowLoss) -> RowLoss:
    """A per-row loss by name ("mse", "bce" on logits, "ce" on class logits) or a callable as is.

    The named losses never broadcast: "mse" and "bce" need predictions shaped exactly like the
    targets, "ce" needs (n, classes, …) logits for (n, …) class targets; anything else raises a
    `ValueError` naming both shapes (the trainers add the task).
    """
    if callable(spec):
        return spec
    if spec == "mse":
        return lambda out, y: (_same_shape(out, y, spec) - y).pow(2).reshape(len(y), -1).mean(dim=1)
    if spec == "bce":
        return lambda out, y: F.binary_cross_entropy_with_logits(
            _same_shape(out, y, spec), y, reduction="none"
        ).reshape(len(y), -1).mean(1)
    if spec == "ce":
        return lambda out, y: F.cross_entropy(_class_logits(out, y), y.long(), reduction="none").reshape(
            len(y), -1
        ).mean(dim=1)
    raise ConfigError(f"unknown loss {spec!r}; use one of {LOSSES} or a callable (predictions, targets) -> (n,)")


def _same_shape(out: torch.Tensor, y: torch.Tensor, spec: str) -> torch.Tensor:
    if out.shape != y.shape:
        hint = " (squeeze the trailing 1)" if out.shape == (*y.shape, 1) else ""
        raise ValueError(
            f"loss {spec!r} needs predictions shaped like the targets: got {tuple(out.shape)} for targets "
            f"{tuple(y.shape)}{hint}"
        )
    return out


def _class_logits(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if out.dim() != y.dim() + 1 or out.shape[0] != y.shape[0] or out.shape[2:] != y.shape[1:]:
        raise ValueError(
            f"loss 'ce' needs (n, classes, …) logits for (n, …) class targets: got {tuple(out.shape)} for targets "
            f"{tuple(y.shape)}"
        )
    return out


def _metric(spec: str | RowLoss, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """Accuracy for "bce" and "ce", the loss itself otherwise; per row."""
    if spec == "bce":
        return ((out > 0).float() == y).float().reshape(len(y), -1).mean(dim=1)
    if spec == "ce":
        return (out.argmax(dim=-1) == y.long()).float().reshape(len(y), -1).mean(dim=1)
    return loss


class SharedInputTrainer(BaseTrainer):
    """Train `group` of a single-input `dataset`: each step one batch of rows feeds every task head.

    `model` returns per-task predictions for a batch: a `MultiTaskModel` (trunk once, then each
    head), or any module whose ``forward(x)`` returns ``{task: predictions}`` and which has
    `shared_parameters()`. `loss` is one spec for all tasks or ``{task: spec}`` (see `row_loss`);
    rows whose label is masked out do not count in that task's loss.
    """

    def __init__(
        self,
        dataset: SingleInputDataset,
        group: Iterable[str] | str,
        model: nn.Module,
        config: TrainConfig | None = None,
        *,
        loss: str | RowLoss | Mapping[str, str | RowLoss] = "auto",
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        weighting: object | None = None,
        threads: int | None = 1,
        monitor: Iterable[str] | None = None,
        device: str | torch.device = "cpu",
        eval_batch: int = 4096,
    ) -> None:
        tasks = members(group, dataset.task_names, dataset.name)
        super().__init__(
            tasks, model, config or TrainConfig(), seed=seed, callbacks=callbacks, weighting=weighting,
            threads=threads, monitor=monitor, device=resolve_device(device),
        )  # fmt: skip
        self.name = dataset.name
        default = "bce" if dataset.task_kind == "binary" else "mse"
        specs = loss if isinstance(loss, Mapping) else dict.fromkeys(tasks, loss)
        missing = [t for t in tasks if t not in specs]
        if missing:
            raise ConfigError(f"no loss given for task(s) {missing}")
        self.loss_specs = {t: default if specs[t] == "auto" else specs[t] for t in tasks}
        self.loss_fns = {t: row_loss(s) for t, s in self.loss_specs.items()}
        self.eval_batch = eval_batch
        self.dataset = dataset
        self.columns = columns = dataset.columns(tasks)  # the group's target columns in the dataset
        self.data = {}
        for which in ("train", "val", "test"):
            part = dataset.split(which)
            y = part.y[:, columns]
            mask = None if part.mask is None else part.mask[:, columns]
            self.data[which] = tuple(
                None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
                for a in (part.x, y, mask)
            )
        k = self.config.stop_rows(len(dataset.val))
        reported = slice(k, None) if k < len(dataset.val) else slice(None)
        self.data["stop"] = tuple(None if a is None else a[:k] for a in self.data["val"])
        self.data["val"] = tuple(None if a is None else a[reported] for a in self.data["val"])
        for which in ("stop", "val"):
            mask = self.data[which][2]
            if mask is not None and (mask.sum(dim=0) == 0).any():
                empty = [t for t, n in zip(tasks, mask.sum(dim=0).tolist(), strict=True) if n == 0]
                raise ConfigError(
                    f"task(s) {empty} have no labelled validation row among the {which} rows "
                    f"(stop_fraction={self.config.stop_fraction}); use more validation rows or stop_fraction=1"
                )
        if self.data["train"][2] is not None:
            unlabelled = [t for t, n in zip(tasks, self.data["train"][2].sum(dim=0).tolist(), strict=True) if n == 0]
            if unlabelled:
                raise ConfigError(f"task(s) {unlabelled} have no labelled training row")
        self.plan = BatchPlan([len(dataset.train)], self.config.batch_size, np.random.default_rng([self.seed, 1]))
        self._check_outputs()
        # The fast path needs every shared parameter in a linear layer (`engine.shared_input_backward`).
        self._linear_layers = engine.shared_linear_layers(self.model, self._shared) if self._fast_gradients else None

    def _outputs(self, x: torch.Tensor, model: nn.Module | None = None) -> list[torch.Tensor]:
        model = self.model if model is None else model
        if isinstance(model, MultiTaskModel):
            return model.forward_all(x, self.tasks)
        outputs = model(x)
        if not isinstance(outputs, Mapping):
            raise ModelError(
                f"{type(self.model).__name__}.forward must return {{task: predictions}}, got {type(outputs).__name__}"
            )
        missing = [t for t in self.tasks if t not in outputs]
        if missing:
            raise ModelError(f"the model returned no predictions for task(s) {missing}")
        return [outputs[t] for t in self.tasks]

    def _check_outputs(self) -> None:
        x, y, _ = self.data["val"]
        with torch.no_grad():
            outputs = self._outputs(x[:2])
        for k, (task, out) in enumerate(zip(self.tasks, outputs, strict=True)):
            if len(out) != len(x[:2]):
                raise ModelError(f"predictions of task {task!r} have {len(out)} rows for {len(x[:2])} inputs")
            try:
                rows = self.loss_fns[task](out, y[:2, k])
            except (RuntimeError, ValueError, IndexError) as exc:
                raise ModelError(
                    f"task {task!r}: predictions of shape {tuple(out.shape)} do not fit targets of shape "
                    f"{tuple(y[:2, k].shape)} under loss {self.loss_specs[task]!r} ({exc})"
                ) from None
            if rows.shape != (len(out),):
                raise ModelError(f"loss of task {task!r} must return one value per row, got shape {tuple(rows.shape)}")

    def _row_losses(self, x, y, model: nn.Module | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        outputs = self._outputs(x, model)
        return [
            (out, self.loss_fns[t](out, y[:, k])) for k, (t, out) in enumerate(zip(self.tasks, outputs, strict=True))
        ]

    def epoch_rows(self) -> Iterator[np.ndarray]:
        """The steps of one epoch as (B,) row indices into the training split."""
        for (rows,) in self.plan.epoch():
            yield rows

    def _epoch(self) -> Iterator[tuple]:
        x, y, mask = self.data["train"]
        for rows in self.epoch_rows():
            index = torch.from_numpy(rows).to(self.device)
            yield x[index], y[index], None if mask is None else mask[index]

    def _losses(self, batch, model=None, tasks=None) -> torch.Tensor:
        x, y, mask = batch
        rows = torch.stack([loss for _, loss in self._row_losses(x, y, model)], dim=1)  # (B, K)
        if mask is None:
            losses = rows.mean(dim=0)
        else:
            weights = mask.to(rows.dtype)
            losses = (rows * weights).sum(dim=0) / weights.sum(dim=0).clamp(min=1.0)
        return losses if tasks is None else losses[list(tasks)]

    def _fast_backward(self, batch) -> engine.TaskGradients | None:
        if self._linear_layers is None:
            return None  # the plain path: `losses.sum().backward()`, gradients on demand from the graph
        with engine.LinearCapture(self._linear_layers) as capture:
            losses = self._losses(batch)
        return engine.shared_input_backward(
            losses, capture, self._shared, self._heads, self.tasks, gram_only=self._gram_only
        )

    def evaluate(self, split: str) -> tuple[dict[str, float], dict[str, float]]:
        losses, metrics, _ = self._evaluate(split, rows=False)
        return losses, metrics

    def evaluate_rows(self, split: str) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]]]:
        """`evaluate(split)` plus each task's per-row losses (float64), its observed rows only, in row order."""
        return self._evaluate(split, rows=True)

    def _evaluate(self, split: str, rows: bool) -> tuple[dict, dict, dict | None]:
        x, y, mask = self.data[split]
        k = len(self.tasks)
        loss_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
        metric_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
        weights = torch.ones(len(x), k, dtype=torch.float64, device=self.device) if mask is None else mask.double()
        kept: list[list[torch.Tensor]] = [[] for _ in range(k)]
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(x), self.eval_batch):
                part = slice(start, start + self.eval_batch)
                for j, (task, (out, loss)) in enumerate(
                    zip(self.tasks, self._row_losses(x[part], y[part]), strict=True)
                ):
                    w = weights[part, j]
                    loss_sum[j] += (loss.double() * w).sum()
                    metric_sum[j] += (_metric(self.loss_specs[task], out, y[part, j], loss).double() * w).sum()
                    if rows:
                        kept[j].append(loss.double() if mask is None else loss.double()[mask[part, j].bool()])
        self.model.train()
        counts = weights.sum(dim=0)
        losses, metrics = (loss_sum / counts).tolist(), (metric_sum / counts).tolist()
        per_row = {t: torch.cat(kept[j]).cpu().tolist() for j, t in enumerate(self.tasks)} if rows else None
        return dict(zip(self.tasks, losses, strict=True)), dict(zip(self.tasks, metrics, strict=True)), per_row
