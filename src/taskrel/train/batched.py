"""Train several runs of one problem at once, as one batched model (`torch.func.vmap`).

The members are the trainers one-at-a-time training would use (`Trainer` or `SharedInputTrainer`,
built for each (group, seed)), so each member starts from the same weights and draws the same
batches. Members whose models have the same layout (module tree, parameter names and shapes) and
the same losses are stacked: each step is one forward, one backward and one optimiser update for
all of them, with per member its own batch, learning rate, optimiser state, early stopping
(`EarlyStopping`, the same rule) and best weights. A member that stops, reaches its cap or fails
leaves the stack, so it costs nothing further; its result is computed by its own trainer from its
restored best weights, exactly as after one-at-a-time training.

Differences from one-at-a-time training are float reassociation only: batches are padded to a
common size and means taken under a mask, and the stop-row losses that drive early stopping are
computed in the batched model. Before training, the batched stop-row losses of every member are
compared with the member's own evaluation; a model the batch cannot reproduce (BatchNorm updating
running statistics, dropout, data-dependent control flow, outputs that depend on more than the
parameters) raises `NotBatchable` with the reason, and `train_runs` trains those runs one at a time.
Collectors and weighting methods act on one run and always use the one-at-a-time path.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from taskrel.errors import TaskrelError
from taskrel.train.config import TrainConfig
from taskrel.train.trainer import (
    BaseTrainer,
    EarlyStopping,
    SharedInputTrainer,
    Trainer,
    TrainResult,
    epoch_logs,
    torch_threads,
)

log = logging.getLogger("taskrel")

#: relative tolerance of the batched stop-row losses against each member's own evaluation
AGREEMENT = 1e-4


class NotBatchable(TaskrelError):
    """These runs cannot be trained as one batched model; the message says why."""


def layout(trainer: BaseTrainer) -> tuple:
    """What must agree for two trainers to share a batch: trainer kind, model tree, parameters, losses."""
    params = tuple((n, tuple(p.shape), p.dtype) for n, p in trainer.model.named_parameters())
    buffers = tuple((n, tuple(b.shape), b.dtype) for n, b in trainer.model.named_buffers())
    if isinstance(trainer, SharedInputTrainer):
        losses = tuple(s if isinstance(s, str) else id(s) for s in (trainer.loss_specs[t] for t in trainer.tasks))
    else:
        losses = (id(getattr(trainer, "loss_fn", None)),)
    usable = not trainer.callbacks and trainer.weighting is None
    return (type(trainer), repr(trainer.model), params, buffers, losses, trainer.config, str(trainer.device), usable)


def train_runs(
    make_trainer: Callable[[int], BaseTrainer], count: int, max_batch: int | None = None
) -> list[TrainResult | Exception]:
    """Train runs 0 … count−1 (`make_trainer(i)` builds run i's trainer), batching those that can share a batch.

    Returns each run's result, or the exception that ended it (a failed run fails alone). Runs that
    cannot be batched are trained one at a time after one log line saying why. `max_batch` caps the
    members of one batch (None: no cap; 1: every run alone).
    """
    results: list[TrainResult | Exception | None] = [None] * count
    buckets: dict[tuple, list[tuple[int, BaseTrainer]]] = {}
    for i in range(count):
        try:
            trainer = make_trainer(i)
        except Exception as exc:  # the run fails alone, with its message
            results[i] = exc
            continue
        buckets.setdefault(layout(trainer), []).append((i, trainer))
    cap = max(1, max_batch or count)
    for key, members in buckets.items():
        batches = [members[j : j + cap] for j in range(0, len(members), cap)]
        for batch in batches:
            if len(batch) > 1 and key[-1]:
                try:
                    for (i, _), outcome in zip(batch, BatchedTrainer([t for _, t in batch]).fit(), strict=True):
                        results[i] = outcome
                    continue
                except NotBatchable as exc:  # raised before any member drew a batch: the trainers are untouched
                    log.warning("taskrel: training %d runs one at a time: %s", len(batch), exc)
            for i, trainer in batch:
                try:
                    results[i] = trainer.fit()
                except Exception as exc:
                    results[i] = exc
    return results  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
class _Stacked:
    """Optimiser state of the stacked parameters: SGD with momentum or Adam, as torch.optim computes them."""

    def __init__(self, config: TrainConfig, params: dict[str, torch.Tensor]) -> None:
        self.config = config
        self.state: dict[str, dict[str, torch.Tensor]] = {n: {} for n in params}
        self.steps = 0

    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor | None], lr: torch.Tensor) -> None:
        """One update; `lr` holds each member's learning rate (G,)."""
        self.steps += 1
        cfg = self.config
        with torch.no_grad():
            for name, p in params.items():
                g = grads[name]
                if g is None:
                    continue
                rate = lr.view(-1, *([1] * (p.dim() - 1)))
                state = self.state[name]
                if cfg.optimizer == "adam":
                    beta1, beta2, eps = 0.9, 0.999, 1e-8
                    if not state:
                        state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
                    state["m"].lerp_(g, 1 - beta1)
                    state["v"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    step_size = rate / (1 - beta1**self.steps)
                    denom = (state["v"].sqrt() / math.sqrt(1 - beta2**self.steps)).add_(eps)
                    p.sub_(step_size * (state["m"] / denom))
                elif cfg.momentum:
                    if "buf" not in state:
                        state["buf"] = g.clone()
                    else:
                        state["buf"].mul_(cfg.momentum).add_(g)
                    p.sub_(rate * state["buf"])
                else:
                    p.sub_(rate * g)

    def keep(self, index: torch.Tensor) -> None:
        self.state = {n: {k: v.index_select(0, index) for k, v in s.items()} for n, s in self.state.items()}


class _LossOf(nn.Module):
    """`trainer._losses(batch)` as a module, so `functional_call` can swap the model's parameters."""

    def __init__(self, trainer: BaseTrainer) -> None:
        super().__init__()
        self.model = trainer.model
        object.__setattr__(self, "trainer", trainer)  # not a submodule

    def forward(self, *batch: torch.Tensor) -> torch.Tensor:
        return self.trainer._losses(batch, self.model)


class _MultiInputData:
    """Batches of `Trainer` members: one (K, B) block of rows per member from one stacked training tensor."""

    def __init__(self, members: Sequence[Trainer]) -> None:
        self.device = members[0].device
        self.base = np.cumsum([0, *[len(m.train_x) for m in members[:-1]]])
        self.x = torch.cat([m.train_x for m in members])
        self.y = torch.cat([m.train_y for m in members])
        self.stop = self._stack([[m._eval["stop"][k] for k in range(len(m.tasks))] for m in members])

    def _stack(self, blocks: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> tuple[torch.Tensor, ...]:
        g, k = len(blocks), len(blocks[0])
        v = max(len(y) for member in blocks for _, y in member)
        d = blocks[0][0][0].shape[1:]
        x = torch.zeros(g, k, v, *d, dtype=blocks[0][0][0].dtype, device=self.device)
        y = torch.zeros(g, k, v, dtype=blocks[0][0][1].dtype, device=self.device)
        mask = torch.zeros(g, k, v, dtype=y.dtype, device=self.device)
        for i, member in enumerate(blocks):
            for j, (bx, by) in enumerate(member):
                x[i, j, : len(by)], y[i, j, : len(by)], mask[i, j, : len(by)] = bx, by, 1
        return x, y, mask

    def train_batch(self, rows: Sequence[np.ndarray], positions: Sequence[int]) -> tuple[tuple, tuple]:
        """The step's batch of the members in the stack (their `rows`; `positions`: their places among all members)."""
        width = max(r.shape[1] for r in rows)
        index = np.zeros((len(rows), rows[0].shape[0], width), dtype=np.int64)
        mask = np.zeros(index.shape, dtype=np.float32)
        for i, (r, pos) in enumerate(zip(rows, positions, strict=True)):
            index[i, :, : r.shape[1]] = r + self.base[pos]
            mask[i, :, : r.shape[1]] = 1
        flat = torch.from_numpy(index).to(self.device).reshape(-1)
        x = self.x.index_select(0, flat).view(*index.shape, *self.x.shape[1:])
        y = self.y.index_select(0, flat).view(index.shape)
        return (x, y, torch.from_numpy(mask).to(device=self.device, dtype=y.dtype)), (0, 0, 0)

    def stop_batches(self, index: torch.Tensor) -> Iterator[tuple[tuple, tuple]]:
        yield tuple(t.index_select(0, index) for t in self.stop), (0, 0, 0)

    @staticmethod
    def padded(batch: tuple, extra: int, fill: float) -> tuple:
        """`batch` with `extra` masked-out rows of value `fill` appended to every block."""
        x, y, mask = batch
        filler = torch.full((*x.shape[:2], extra, *x.shape[3:]), fill, dtype=x.dtype, device=x.device)
        return (torch.cat([x, filler], 2),
                torch.cat([y, y[:, :, :1].expand(-1, -1, extra)], 2),
                torch.cat([mask, torch.zeros_like(mask[:, :, :1]).expand(-1, -1, extra)], 2))  # fmt: skip

    def keep(self, index: torch.Tensor) -> None:
        self.stop = tuple(t.index_select(0, index) for t in self.stop)


class _SharedInputData:
    """Batches of `SharedInputTrainer` members: one input batch (shared when the rows agree), targets per member."""

    def __init__(self, members: Sequence[SharedInputTrainer]) -> None:
        self.device = members[0].device
        self.eval_batch = members[0].eval_batch
        self.x = members[0].data["train"][0]
        self.y = torch.stack([m.data["train"][1] for m in members])  # (G, N, K)
        self.mask = self._mask([m.data["train"][2] for m in members], self.y)
        self.stop_x = members[0].data["stop"][0]
        self.stop_y = torch.stack([m.data["stop"][1] for m in members])
        self.stop_mask = self._mask([m.data["stop"][2] for m in members], self.stop_y)

    @staticmethod
    def _mask(masks: list[torch.Tensor | None], y: torch.Tensor) -> torch.Tensor:
        if masks[0] is None:  # every row labelled: (G, N, K) ones, whatever the shape of a target
            return torch.ones(y.shape[:3], dtype=y.dtype, device=y.device)
        return torch.stack(masks).to(y.dtype)

    def train_batch(self, rows: Sequence[np.ndarray], positions: Sequence[int]) -> tuple[tuple, tuple]:
        width = max(len(r) for r in rows)
        index = np.zeros((len(rows), width), dtype=np.int64)
        pad = np.zeros(index.shape, dtype=np.float32)
        for i, r in enumerate(rows):
            index[i, : len(r)], pad[i, : len(r)] = r, 1
        members = torch.arange(len(rows), device=self.device)[:, None]  # targets are kept in stack order
        rows_t = torch.from_numpy(index).to(self.device)
        y = self.y[members, rows_t]
        mask = self.mask[members, rows_t] * torch.from_numpy(pad).to(device=self.device, dtype=y.dtype)[..., None]
        if all(len(r) == width and np.array_equal(r, rows[0]) for r in rows):
            return (self.x[rows_t[0]], y, mask), (None, 0, 0)
        return (self.x[rows_t], y, mask), (0, 0, 0)

    def stop_batches(self, index: torch.Tensor) -> Iterator[tuple[tuple, tuple]]:
        for start in range(0, len(self.stop_x), self.eval_batch):
            part = slice(start, start + self.eval_batch)
            y, mask = self.stop_y.index_select(0, index)[:, part], self.stop_mask.index_select(0, index)[:, part]
            yield (self.stop_x[part], y, mask), (None, 0, 0)

    @staticmethod
    def padded(batch: tuple, extra: int, fill: float) -> tuple:
        """`batch` with `extra` masked-out input rows of value `fill` appended."""
        x, y, mask = batch
        return (torch.cat([x, torch.full((extra, *x.shape[1:]), fill, dtype=x.dtype, device=x.device)]),
                torch.cat([y, y[:, :1].expand(-1, extra, *y.shape[2:])], 1),
                torch.cat([mask, torch.zeros_like(mask[:, :1]).expand(-1, extra, -1)], 1))  # fmt: skip

    def keep(self, index: torch.Tensor) -> None:
        self.y, self.mask = self.y.index_select(0, index), self.mask.index_select(0, index)
        self.stop_y, self.stop_mask = self.stop_y.index_select(0, index), self.stop_mask.index_select(0, index)


@dataclass
class _Member:
    """One run's progress in the batch."""

    trainer: BaseTrainer
    position: int  # index into the caller's list
    stopping: EarlyStopping
    rows: Iterator[np.ndarray]
    next_rows: np.ndarray
    epoch: int = 0
    step: int = 0
    count: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    failure: Exception | None = None


class BatchedTrainer:
    """Train `trainers` (same `layout`, no collectors or weighting) as one batched model; see the module docstring."""

    def __init__(self, trainers: Sequence[BaseTrainer]) -> None:
        keys = {layout(t) for t in trainers}
        if len(keys) != 1 or not next(iter(keys))[-1]:
            raise NotBatchable("the runs differ in model layout, losses or configuration, or use collectors")
        self.trainers = list(trainers)
        self.template = trainers[0]
        self.config = self.template.config
        self.device = self.template.device
        kind = type(self.template)
        self.data = _MultiInputData(trainers) if kind is Trainer else _SharedInputData(trainers)
        self._loss_module = _LossOf(self.template)

    def fit(self) -> list[TrainResult | Exception]:
        """Each member's `TrainResult`, or the exception that ended it, in the order of `trainers`."""
        with torch_threads(self.template.threads):
            return self._fit()

    # -- the batched model ----------------------------------------------------------------------
    def _losses(self, params: dict, buffers: dict, batch: tuple, dims: tuple) -> torch.Tensor:
        """Per-member per-task losses (G, K) of `batch` under the stacked `params`."""

        def one(p: dict, b: dict, *data: torch.Tensor) -> torch.Tensor:
            return functional_call(self._loss_module, (p, b), data)

        return vmap(one, in_dims=(0, 0, *dims))(params, buffers, *batch)

    def _stop_losses(self, params: dict, buffers: dict, index: torch.Tensor) -> torch.Tensor:
        """Mean losses (G', K) on the stop rows of the members at `index`."""
        sub = ({k: v.index_select(0, index) for k, v in params.items()},
               {k: v.index_select(0, index) for k, v in buffers.items()})  # fmt: skip
        total, counts = None, None
        self.template.model.eval()  # as the trainers evaluate
        try:
            with torch.no_grad():
                for batch, dims in self.data.stop_batches(index):
                    means = self._losses(*sub, batch, dims)
                    weight = batch[2].sum(dim=-1) if isinstance(self.template, Trainer) else batch[2].sum(dim=1)
                    total = means * weight if total is None else total + means * weight
                    counts = weight if counts is None else counts + weight
        finally:
            self.template.model.train()
        return total / counts.clamp(min=1.0)

    def _probe(self, params: dict, buffers: dict) -> None:
        """Check that the batched model reproduces every member and that padding leaves its losses alone.

        Three checks, before any member draws a batch: the model runs under `vmap` with gradients; its
        stop-row losses (evaluation mode) equal each member's own evaluation; and in training mode,
        appending masked-out rows to a batch changes no loss (a model whose output depends on other
        rows of its batch, such as BatchNorm, would train on the padding).
        """
        everyone = torch.arange(len(self.trainers), device=self.device)
        batch, dims = next(self.data.stop_batches(everyone))
        scratch = {k: v.clone() for k, v in buffers.items()}  # training mode may update buffers
        try:
            batched = self._stop_losses(params, buffers, everyone)
            losses = self._losses(params, scratch, batch, dims)
            grads = torch.autograd.grad(losses.sum(), list(params.values()), allow_unused=True)
            with torch.no_grad():
                plain = self._losses(params, {k: v.clone() for k, v in buffers.items()}, batch, dims)
                padded = self._losses(params, scratch, self.data.padded(batch, 7, 1e3), dims)
        except Exception as exc:  # any failure of vmap or functional_call means: not batchable
            raise NotBatchable(
                f"{type(self.template.model).__name__} cannot be batched ({type(exc).__name__}: {exc})"
            ) from None
        if all(g is None for g in grads):
            raise NotBatchable("no gradient reaches the stacked parameters")
        gap = ((padded - plain).abs() / plain.abs().clamp(min=1.0)).nan_to_num(0.0)
        if float(gap.max()) > AGREEMENT:
            raise NotBatchable(
                f"{type(self.template.model).__name__} cannot be batched: in training mode its losses depend on "
                "other rows of the batch (e.g. BatchNorm), so the rows that pad members' batches to one size would "
                "change them"
            )
        for i, trainer in enumerate(self.trainers):
            own = trainer.evaluate("stop")[0]
            for k, task in enumerate(trainer.tasks):
                a, b = float(batched[i, k]), own[task]
                if math.isfinite(b) and abs(a - b) > AGREEMENT * max(1.0, abs(b)):
                    raise NotBatchable(
                        f"the batched model gives run {'|'.join(trainer.tasks)} (seed {trainer.seed}) a stop loss of "
                        f"{a:.6g} for task {task!r} where the model itself gives {b:.6g}"
                    )

    # -- the loop -------------------------------------------------------------------------------
    def _fit(self) -> list[TrainResult | Exception]:
        names = [n for n, _ in self.template.model.named_parameters()]
        buffer_names = [n for n, _ in self.template.model.named_buffers()]
        params = {
            f"model.{n}": torch.stack([dict(t.model.named_parameters())[n].detach() for t in self.trainers])
            for n in names
        }
        buffers = {
            f"model.{n}": torch.stack([dict(t.model.named_buffers())[n].detach() for t in self.trainers])
            for n in buffer_names
        }
        for p in params.values():
            p.requires_grad_(True)
        self._probe(params, buffers)
        optimizer = _Stacked(self.config, params)
        best = {k: v.detach().clone() for k, v in params.items()}
        best_buffers = {k: v.clone() for k, v in buffers.items()}
        outcomes: list[TrainResult | Exception | None] = [None] * len(self.trainers)
        active: list[_Member] = []
        for i, trainer in enumerate(self.trainers):
            rows = trainer.epoch_rows()
            active.append(_Member(trainer, i, EarlyStopping(self.config, trainer.monitor), rows, next(rows)))
        k = len(self.template.tasks)
        sums = torch.zeros(len(active), k, device=self.device)
        while active:
            started = time.perf_counter()
            batch, dims = self.data.train_batch([m.next_rows for m in active], [m.position for m in active])
            lr = torch.tensor([self.config.lr_at(m.epoch) for m in active], device=self.device)
            losses = self._losses(params, buffers, batch, dims)
            grads = torch.autograd.grad(losses.sum(), list(params.values()), allow_unused=True)
            optimizer.step(params, dict(zip(params, grads, strict=True)), lr)
            sums += losses.detach()
            ended = []
            for j, m in enumerate(active):
                m.step += 1
                m.count += 1
                following = next(m.rows, None)
                if following is None:
                    ended.append(j)
                else:
                    m.next_rows = following
            finished: list[int] = []
            if ended:
                index = torch.tensor(ended, device=self.device)
                val = self._stop_losses(params, buffers, index).tolist()
                means = (sums.index_select(0, index) / torch.tensor([[active[j].count] for j in ended],
                                                                      device=self.device)).tolist()  # fmt: skip
                for j, stop_loss, mean_train in zip(ended, val, means, strict=True):
                    if self._epoch_end(active[j], j, stop_loss, mean_train, params, best, buffers, best_buffers):
                        finished.append(j)
                    sums[j] = 0
            share = (time.perf_counter() - started) / len(active)
            for m in active:
                m.seconds += share
            if finished:
                for j in finished:
                    m = active[j]
                    outcomes[m.position] = self._finish(m, j, best, best_buffers)
                keep = [j for j in range(len(active)) if j not in set(finished)]
                index = torch.tensor(keep, dtype=torch.long, device=self.device)
                active = [active[j] for j in keep]
                params = {n: v.detach().index_select(0, index).requires_grad_(True) for n, v in params.items()}
                buffers = {n: v.index_select(0, index) for n, v in buffers.items()}
                best = {n: v.index_select(0, index) for n, v in best.items()}
                best_buffers = {n: v.index_select(0, index) for n, v in best_buffers.items()}
                sums = sums.index_select(0, index)
                optimizer.keep(index)
                self.data.keep(index)
        return outcomes  # type: ignore[return-value]

    def _epoch_end(self, m: _Member, j: int, stop_loss, mean_train, params, best, buffers, best_buffers) -> bool:
        """Book the epoch that member `m` (stack position `j`) ended; True when the member is done."""
        tasks = m.trainer.tasks
        try:
            logs = epoch_logs(tasks, mean_train, dict(zip(tasks, stop_loss, strict=True)), m.epoch, m.step,
                              self.config)  # fmt: skip
        except Exception as exc:
            m.failure = exc
            return True
        m.history.append(logs)
        m.count = 0
        verdict = m.stopping.update(logs["val_loss"], m.epoch, m.step)
        if verdict == "improved":
            with torch.no_grad():
                for n in best:
                    best[n][j] = params[n][j]
                for n in best_buffers:
                    best_buffers[n][j] = buffers[n][j]
        elif verdict == "stop":
            return True
        m.epoch += 1
        if not m.stopping.another_epoch(m.epoch, m.step):
            return True
        m.rows = m.trainer.epoch_rows()
        m.next_rows = next(m.rows)
        return False

    def _finish(self, m: _Member, j: int, best: dict, best_buffers: dict) -> TrainResult | Exception:
        """The member's result from its restored best weights, computed by its own trainer."""
        if m.failure is not None:
            return m.failure
        started = time.perf_counter()
        try:
            m.stopping.check(m.trainer.tasks)
            with torch.no_grad():
                for n, p in m.trainer.model.named_parameters():
                    p.copy_(best[f"model.{n}"][j])
                for n, b in m.trainer.model.named_buffers():
                    b.copy_(best_buffers[f"model.{n}"][j])
            return m.trainer.result(
                m.history, m.step, m.stopping.best_epoch, m.seconds + time.perf_counter() - started
            )
        except Exception as exc:
            return exc
