"""Train one task group (STL is a group of one) and report per-task losses.

The `Trainer` runs the protocol of `TrainConfig` on a `MultiTaskDataset` restricted to the group:
a fresh hard-parameter-sharing model seeded by `seed`, one mini-batch per task per step, the sum of
task losses (or a weighting method's combination) as the objective, early stopping on the summed
validation loss with the best weights restored. Same dataset, group, config and seed give the same
numbers. Callbacks see every step before its update (see `taskrel.train.callbacks`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from taskrel import gradients as engine
from taskrel.data.dataset import MultiTaskDataset
from taskrel.errors import ConfigError, NonFiniteError
from taskrel.groups import make_group, ordered, parse_group
from taskrel.models import MultiTaskModel, loss_function, mlp_model
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


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one training run. Losses are per task, from the restored best weights.

    `*_metric` is accuracy for binary tasks and mean squared error in original target units for
    regression tasks. `history` has one entry per epoch with per-task train and validation losses.
    """

    dataset: str
    group: tuple[str, ...]
    seed: int
    config: TrainConfig
    val_loss: dict[str, float]
    test_loss: dict[str, float]
    val_metric: dict[str, float]
    test_metric: dict[str, float]
    epochs: int
    best_epoch: int
    steps: int
    seconds: float
    history: list[dict] = field(repr=False, default_factory=list)


class Trainer:
    """Train `group` of `dataset` with `config`; `fit()` returns a `TrainResult`.

    `weighting`, if given, is any object with ``backward(losses, shared_parameters)`` that fills the
    `.grad` of the model's parameters (e.g. a `taskrel.weighting` method); otherwise the summed loss
    is back-propagated. `threads` is torch's intra-op thread count during `fit()` (restored after):
    one thread is fastest for small models and makes results bit-identical across machines' core
    counts; `None` leaves torch's setting alone. `monitor` names the tasks whose summed validation
    loss drives early stopping and the restored best weights (default: every task of the group;
    in auxiliary learning, the main task only).
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
    ) -> None:
        names = (
            parse_group(group, dataset.task_names)
            if isinstance(group, str)
            else make_group(group, dataset.task_names, f"dataset {dataset.name!r}")
        )
        self.tasks = tuple(ordered(names, dataset.task_names))
        self.monitor = (
            tuple(self.tasks)
            if monitor is None
            else tuple(ordered(make_group(monitor, self.tasks, "monitor"), self.tasks))
        )
        self.dataset = dataset.subset(self.tasks)
        self.config = config or TrainConfig()
        self.seed = int(seed)
        self.threads = threads
        self.callbacks = list(callbacks)
        self.weighting = weighting
        self.model = (
            model
            if model is not None
            else mlp_model(self.tasks, dataset.n_features, self.config.hidden, seed=self.seed)
        )
        missing = [t for t in self.tasks if t not in self.model.task_names]
        if missing:
            raise ConfigError(f"the model has no head for task(s) {missing}")
        self.loss_fn = loss_function(dataset.kind)
        self._params = list(self.model.parameters())
        self._shared = self.model.shared_parameters()
        self._task_params = [self.model.task_parameters(t) for t in self.tasks]
        # Collectors that read per-task gradients get them with the update's own backward pass.
        self._fast_gradients = (
            any(cb.needs_task_gradients for cb in self.callbacks) and weighting is None and len(self.tasks) > 1
        )
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=self.config.lr, momentum=self.config.momentum, foreach=True
        )
        self._prepare_data()

    def _prepare_data(self) -> None:
        rng = np.random.default_rng([self.seed, 1])
        tasks = self.dataset.tasks
        target = max(len(t.train) for t in tasks) if self.config.upsample and len(tasks) > 1 else 0
        rows = [upsample_rows(t.train.y, target, rng) if target else np.arange(len(t.train)) for t in tasks]
        sizes = [len(r) for r in rows]
        # All tasks' training rows in one tensor; task k occupies rows offsets[k] : offsets[k] + sizes[k].
        self.train_x = torch.from_numpy(np.concatenate([t.train.x[r] for t, r in zip(tasks, rows, strict=True)]))
        self.train_y = torch.from_numpy(np.concatenate([t.train.y[r] for t, r in zip(tasks, rows, strict=True)]))
        self.offsets = np.cumsum([0, *sizes[:-1]])[:, None]
        self.plan = BatchPlan(sizes, self.config.batch_size, rng)

    # ----------------------------------------------------------------------------------------
    def _losses(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        model: MultiTaskModel | None = None,
        tasks: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """Per-task mean losses for stacked sub-batches (K, B, d) and targets (K, B).

        A trial evaluation passes the `model` to call (its parameters swapped) and the task indices it needs.
        """
        if tasks is not None and len(tasks) < len(self.tasks):
            index = torch.tensor(tasks, device=inputs.device)
            inputs, targets = inputs.index_select(0, index), targets.index_select(0, index)
        names = self.tasks if tasks is None else [self.tasks[k] for k in tasks]
        outputs = (model or self.model).forward_stacked(inputs, names)
        return self.loss_fn(outputs, targets, reduction="none").mean(dim=1)

    def evaluate(self, split: str) -> tuple[dict[str, float], dict[str, float]]:
        """Per-task mean loss and metric of the current model on `split` ("train", "val" or "test")."""
        self.model.eval()
        losses, metrics = {}, {}
        with torch.no_grad():
            for task in self.dataset.tasks:
                part = task.split(split)
                out = self.model(torch.from_numpy(part.x), task.name)
                y = torch.from_numpy(part.y)
                losses[task.name] = float(self.loss_fn(out, y))
                if self.dataset.kind == "binary":
                    metrics[task.name] = float(((out > 0).float() == y).float().mean())
                else:
                    metrics[task.name] = losses[task.name] * self.dataset.target_scale[1] ** 2
        self.model.train()
        return losses, metrics

    def _step(self, inputs: torch.Tensor, targets: torch.Tensor, step: int, epoch: int) -> torch.Tensor:
        """One update on stacked sub-batches; returns the per-task losses (K,) before the update."""
        gradients = None
        for p in self._params:
            p.grad = None
        if self._fast_gradients:  # fills .grad with the summed-loss gradient, as the plain path below
            gradients = engine.backward_with_task_gradients(self.model, self.tasks, inputs, targets, self.loss_fn)
            losses = gradients.losses
        else:
            losses = self._losses(inputs, targets)
        if self.callbacks:
            evaluator = TrialEvaluator(
                self.model, lambda model, tasks: self._losses(inputs, targets, model, tasks), separable=True
            )
            ctx = StepContext(
                self.tasks, list(losses), self._shared, self.optimizer, evaluator,
                task_parameters=self._task_params,
                task_gradients=None if gradients is None else gradients.shared,
                head_gradients=None if gradients is None else gradients.heads,
                step=step, epoch=epoch,
            )  # fmt: skip
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
        for cb in self.callbacks:
            cb.on_train_begin(self)
        best_val, best_state, best_epoch, best_step = float("inf"), None, -1, 0
        history, step, epoch = [], 0, 0
        while (cfg.max_epochs is None or epoch < cfg.max_epochs) and step < cfg.max_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr_at(epoch)
            sums, count = torch.zeros(len(self.tasks)), 0
            for rows in self.plan.epoch():
                index = torch.from_numpy(self.offsets + np.stack(rows))  # (K, B) rows of train_x
                flat = index.reshape(-1)
                inputs = self.train_x.index_select(0, flat).view(*index.shape, -1)
                sums += self._step(inputs, self.train_y.index_select(0, flat).view(index.shape), step, epoch)
                count += 1
                step += 1
            if not torch.isfinite(sums).all():
                k = int((~torch.isfinite(sums)).nonzero()[0, 0])
                raise NonFiniteError(f"loss of task {self.tasks[k]!r} became {sums[k].item()} during epoch {epoch}")
            val_loss, _ = self.evaluate("val")
            logs = {
                "epoch": epoch,
                "step": step,
                "lr": cfg.lr_at(epoch),
                "train_loss": dict(zip(self.tasks, (sums / count).tolist(), strict=True)),
                "val_loss": val_loss,
            }
            history.append(logs)
            for cb in self.callbacks:
                cb.on_epoch_end(epoch, logs)
            total = sum(val_loss[t] for t in self.monitor)
            if total < best_val:
                best_val, best_epoch, best_step = total, epoch, step
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            elif epoch - best_epoch >= cfg.patience and step - best_step >= cfg.patience_steps:
                break
            epoch += 1
        self.model.load_state_dict(best_state)
        val_loss, val_metric = self.evaluate("val")
        test_loss, test_metric = self.evaluate("test")
        result = TrainResult(
            self.dataset.name,
            self.tasks,
            self.seed,
            cfg,
            val_loss,
            test_loss,
            val_metric,
            test_metric,
            epochs=len(history),
            best_epoch=best_epoch,
            steps=step,
            seconds=time.perf_counter() - started,
            history=history,
        )
        for cb in self.callbacks:
            cb.on_train_end(result)
        return result
