"""`Trainer`: multi-input data (`MultiTaskDataset`: every task its own rows), ETAP's protocol.

Each step draws one sub-batch per task, with class-balanced upsampling of every task to the largest
task of the group; the loop is `taskrel.train.loop.BaseTrainer`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from taskrel import gradients as engine
from taskrel.data.dataset import MultiTaskDataset
from taskrel.errors import ConfigError
from taskrel.models import MultiTaskModel, loss_function, mlp_model
from taskrel.train.batches import BatchPlan, upsample_rows
from taskrel.train.callbacks import Callback
from taskrel.train.config import TrainConfig
from taskrel.train.loop import BaseTrainer, members, resolve_device


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

    def epoch_rows(self, plan: BatchPlan | None = None) -> Iterator[np.ndarray]:
        """The steps of one epoch as (K, B) row indices into `train_x` (row k: task k's sub-batch), drawn by
        the run's `plan` (or another, e.g. for AuxiNash's meta batches)."""
        for rows in (plan or self.plan).epoch():
            yield self.offsets + np.stack(rows)

    def _epoch(self, plan: BatchPlan | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for rows in self.epoch_rows(plan):
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


