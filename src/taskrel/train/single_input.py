"""`SharedInputTrainer`: single-input data (one input, a target per task) and the per-row losses.

Each step draws one batch of rows that feeds every task head; the loop is
`taskrel.train.loop.BaseTrainer`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from taskrel import gradients as engine
from taskrel.data.single import SingleInputDataset
from taskrel.errors import ConfigError, ModelError
from taskrel.models import MultiTaskModel
from taskrel.train.batches import BatchPlan
from taskrel.train.callbacks import Callback
from taskrel.train.config import TrainConfig
from taskrel.train.loop import BaseTrainer, members, resolve_device

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

    def epoch_rows(self, plan: BatchPlan | None = None) -> Iterator[np.ndarray]:
        """The steps of one epoch as (B,) row indices into the training split, drawn by the run's `plan` (or
        another, e.g. for AuxiNash's meta batches)."""
        for (rows,) in (plan or self.plan).epoch():
            yield rows

    def _epoch(self, plan: BatchPlan | None = None) -> Iterator[tuple]:
        x, y, mask = self.data["train"]
        for rows in self.epoch_rows(plan):
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
