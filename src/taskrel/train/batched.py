"""Train many runs of one problem at once, as one batched model (`torch.func.vmap`, or batched matrix
products for the built-in MLP on multi-input data: `taskrel.train.stacked`).

The members are the trainers one-at-a-time training would use (`Trainer` or `SharedInputTrainer`,
built for each (group, seed)), so each member starts from the same weights and draws the same
batches. Runs whose models share a layout (`layout`: for a `MultiTaskModel`, its trunk and head
layout; on single-input data whatever its number of heads) and losses are stacked: each step is one
forward, one backward and one optimiser update for all of them, with per member its own batch,
learning rate, optimiser state, early stopping (`EarlyStopping`, the same rule) and best weights.
On single-input data, narrower members are padded to the widest with heads whose loss is masked
out. A member that stops, reaches its cap or fails leaves the stack and the next run takes its
place; its result is computed by its own trainer from its restored best weights, exactly as after
one-at-a-time training.

Differences from one-at-a-time training are float reassociation only: batches are padded to a
common size and means taken under a mask, and the stop-row losses that drive early stopping are
computed in the batched model (a near-tie between two epochs can therefore fall the other way).
Before training, the engine checks that the model runs under `vmap`, that padding rows change no
loss in training mode, and that the batched stop-row losses of every member equal the member's own
evaluation; a model that fails (dropout, BatchNorm in training mode, data-dependent control flow,
outputs that depend on more than the parameters and buffers) raises `NotBatchable` with the reason,
and `train_runs` trains those runs one at a time. Collectors and weighting methods act on one run
and always use the one-at-a-time path.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from taskrel.errors import TaskrelError
from taskrel.models import MultiTaskModel
from taskrel.train.config import TrainConfig
from taskrel.train.loop import BaseTrainer, EarlyStopping, TrainResult, epoch_logs, torch_threads
from taskrel.train.multi_input import Trainer
from taskrel.train.single_input import SharedInputTrainer
from taskrel.train.stacked import StackedMLPLosses

log = logging.getLogger("taskrel")

#: relative tolerance of the batched stop-row losses against each member's own evaluation
AGREEMENT = 1e-4


class NotBatchable(TaskrelError):
    """These runs cannot be trained as one batched model; the message says why."""


def layout(trainer: BaseTrainer) -> tuple:
    """What must agree for two trainers to share a batch: trainer kind, model layout, losses, protocol.

    A `MultiTaskModel` whose heads all have one layout is described by its trunk and that head layout.
    On single-input data, groups of every size then share a batch, each padded to the widest with
    masked-out heads (the trunk runs once per member whatever its size, so padding costs only heads);
    on multi-input data, where every task brings its own rows through the trunk, padding would cost a
    narrow member as much as the widest, so only groups of one size share a batch. Any other model
    must match exactly (module tree, parameters, buffers).
    """
    model = trainer.model
    heads = _head_layouts(model)
    if heads is not None and len(set(heads)) == 1:
        described = ("heads", repr(model.trunk), _tensors(model.trunk), heads[0])
        if isinstance(trainer, Trainer):  # multi-input: a block of rows per task, so one size per batch
            described = (*described, len(trainer.tasks))
    else:
        described = ("exact", repr(model), _tensors(model))
    if isinstance(trainer, SharedInputTrainer):
        specs = tuple(s if isinstance(s, str) else id(s) for s in (trainer.loss_specs[t] for t in trainer.tasks))
        losses = specs[:1] if len(set(specs)) == 1 else ("per task", specs)
    else:
        losses = (id(getattr(trainer, "loss_fn", None)),)
    if losses[0] == "per task":  # positions carry different losses: only identical task lists line up
        described = (*described, len(trainer.tasks))
    data = id(trainer.dataset) if isinstance(trainer, SharedInputTrainer) else None  # shared inputs: one data set
    usable = not trainer.callbacks and trainer.weighting is None
    return (type(trainer), described, losses, data, trainer.config, str(trainer.device), usable)


def _tensors(module: nn.Module) -> tuple:
    return (tuple((n, tuple(p.shape), p.dtype) for n, p in module.named_parameters()),
            tuple((n, tuple(b.shape), b.dtype) for n, b in module.named_buffers()))  # fmt: skip


def _head_layouts(model: nn.Module) -> list[tuple] | None:
    if not isinstance(model, MultiTaskModel) or set(dict(model.named_children())) != {"trunk", "heads"}:
        return None
    return [(repr(h), _tensors(h)) for h in model.heads]


def train_runs(
    make_trainer: Callable[[int], BaseTrainer], count: int, max_batch: int | None = None
) -> list[TrainResult | Exception]:
    """Train runs 0 … count−1 (`make_trainer(i)` builds run i's trainer), batching those that can share a batch.

    Returns each run's result, or the exception that ended it (a failed run fails alone). Runs that
    cannot be batched are trained one at a time after one log line saying why. `max_batch` caps the
    members training at once (None: no cap; 1: every run alone); a finished member's place goes to
    the next run of its layout, so the batch stays full while long runs finish.
    """
    results: list[TrainResult | Exception | None] = [None] * count
    buckets: dict[tuple, list[tuple[int, int]]] = {}
    for i in range(count):
        try:
            trainer = make_trainer(i)  # built here for its layout only: members are built again when admitted
        except Exception as exc:  # the run fails alone, with its message
            results[i] = exc
            continue
        buckets.setdefault(layout(trainer), []).append((len(trainer.tasks), i))
    capacity = max(1, max_batch or count)
    for key, runs in buckets.items():
        runs.sort()  # by width: members admitted together are padded to similar widths
        order = [i for _, i in runs]
        if len(order) > 1 and capacity > 1 and key[-1]:
            try:
                build = lambda j, order=order: make_trainer(order[j])  # noqa: E731
                engine = BatchedTrainer(build, len(order), capacity, template=len(order) - 1)
                for i, outcome in zip(order, engine.fit(), strict=True):
                    results[i] = outcome
                continue
            except NotBatchable as exc:  # raised before any member drew a batch
                log.warning("taskrel: training %d runs one at a time: %s", len(order), exc)
        for i in order:
            results[i] = _fit_alone(lambda i=i: make_trainer(i))
    return results  # type: ignore[return-value]


@contextmanager
def _evaluation(model: nn.Module) -> Iterator[None]:
    """`model` in evaluation mode inside the block, in training mode after it."""
    model.eval()
    try:
        yield
    finally:
        model.train()


def _fit_alone(make: Callable[[], BaseTrainer]) -> TrainResult | Exception:
    """One run trained one at a time: its result, or the exception that ended it (building included)."""
    try:
        return make().fit()
    except Exception as exc:  # the run fails alone, with its message
        return exc


# ----------------------------------------------------------------------------------------------
class _Optimizer:
    """Per-member optimiser state of stacked parameters: SGD with momentum or Adam, as torch.optim computes them.

    Members join (`add`) and leave (`keep`) at any step; each has its own step count (Adam's bias
    correction). SGD's momentum buffer starts at zero, so its first update is the gradient itself.
    """

    BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.steps: torch.Tensor | None = None  # (G,) float64

    def add(self, params: dict[str, torch.Tensor], count: int) -> None:
        """State for `count` new members, appended after the current ones (as in `params`)."""
        device = next(iter(params.values())).device
        fresh = torch.zeros(count, dtype=torch.float64, device=device)
        self.steps = fresh if self.steps is None else torch.cat([self.steps, fresh])
        names = ("m", "v") if self.config.optimizer == "adam" else ("buf",) if self.config.momentum else ()
        for n, p in params.items():
            zeros = torch.zeros(count, *p.shape[1:], dtype=p.dtype, device=p.device)
            state = self.state.setdefault(n, {})
            for k in names:
                state[k] = zeros.clone() if k not in state else torch.cat([state[k], zeros])

    def keep(self, index: torch.Tensor) -> None:
        self.steps = self.steps.index_select(0, index)
        self.state = {n: {k: v.index_select(0, index) for k, v in s.items()} for n, s in self.state.items()}

    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor | None], lr: torch.Tensor) -> None:
        """One update of every member; `lr` (G,) float64 holds each member's learning rate."""
        cfg = self.config
        self.steps += 1
        with torch.no_grad():
            if cfg.optimizer == "adam":
                step_size = lr / (1 - self.BETA1**self.steps)
                correction = torch.sqrt(1 - self.BETA2**self.steps)
            for name, p in params.items():
                g = grads[name]
                if g is None:
                    continue
                shape = (-1, *([1] * (p.dim() - 1)))
                state = self.state[name]
                if cfg.optimizer == "adam":
                    state["m"].lerp_(g, 1 - self.BETA1)
                    state["v"].mul_(self.BETA2).addcmul_(g, g, value=1 - self.BETA2)
                    denom = (state["v"].sqrt() / correction.to(p.dtype).view(shape)).add_(self.EPS)
                    p.sub_(step_size.to(p.dtype).view(shape) * (state["m"] / denom))
                elif cfg.momentum:
                    state["buf"].mul_(cfg.momentum).add_(g)
                    p.sub_(lr.to(p.dtype).view(shape) * state["buf"])
                else:
                    p.sub_(lr.to(p.dtype).view(shape) * g)


class _LossOf(nn.Module):
    """`trainer._losses(batch)` as a module, so `functional_call` can swap the model's parameters."""

    def __init__(self, trainer: BaseTrainer) -> None:
        super().__init__()
        self.model = trainer.model
        object.__setattr__(self, "trainer", trainer)  # not a submodule

    def forward(self, *batch: torch.Tensor) -> torch.Tensor:
        return self.trainer._losses(batch, self.model)


class _MultiInputData:
    """Batches of `Trainer` members: per member a (width, B) block of its own rows, blocks past its tasks masked out.

    Members' training rows live in segments (the rows of the members admitted together, concatenated),
    so a step gathers with one `index_select` per segment; once more than `MAX_SEGMENTS` hold active
    members, the active members are copied into one.
    """

    MAX_SEGMENTS = 8

    def __init__(self, template: Trainer, width: int) -> None:
        self.device, self.width = template.device, width
        self.segments: dict[int, dict[str, torch.Tensor]] = {}
        self._next = 0

    def add(self, members: Sequence[_Member]) -> None:
        """A segment for `members`: their training rows, and their stop rows padded to (n, width, V)."""
        bases = np.cumsum([0, *[len(m.trainer.train_x) for m in members[:-1]]])
        blocks = [m.trainer._eval["stop"] for m in members]
        v = max(len(by) for member in blocks for _, by in member)
        first = blocks[0][0][0]
        x = torch.zeros(len(blocks), self.width, v, *first.shape[1:], dtype=first.dtype, device=self.device)
        y = torch.zeros(len(blocks), self.width, v, device=self.device)
        mask = torch.zeros(len(blocks), self.width, v, device=self.device)
        for i, member in enumerate(blocks):
            for j, (bx, by) in enumerate(member):
                x[i, j, : len(by)], y[i, j, : len(by)], mask[i, j, : len(by)] = bx, by, 1
        self.segments[self._next] = {
            "x": torch.cat([m.trainer.train_x for m in members]),
            "y": torch.cat([m.trainer.train_y for m in members]),
            "stop_x": x, "stop_y": y, "stop_mask": mask,
        }  # fmt: skip
        for slot, (m, base) in enumerate(zip(members, bases, strict=True)):
            m.place = (self._next, slot, int(base))
        self._next += 1

    def keep(self, active: Sequence[_Member]) -> None:
        """Drop segments no active member uses; merge when too many remain."""
        live = {m.place[0] for m in active}
        self.segments = {k: v for k, v in self.segments.items() if k in live}
        if len(self.segments) > self.MAX_SEGMENTS:
            self.segments.clear()
            self.add(active)

    def _by_segment(self, members: Sequence[_Member]) -> list[tuple[int, np.ndarray]]:
        ids = np.array([m.place[0] for m in members])
        return [(int(k), np.flatnonzero(ids == k)) for k in np.unique(ids)]

    def _assemble(self, parts: list[tuple[np.ndarray, torch.Tensor]], count: int) -> torch.Tensor:
        """Per-segment blocks (positions, tensor) put back in the members' order."""
        if len(parts) == 1:
            return parts[0][1]
        out = parts[0][1].new_empty(count, *parts[0][1].shape[1:])
        for positions, block in parts:
            out.index_copy_(0, torch.from_numpy(positions).to(self.device), block)
        return out

    def train_batch(self, members: Sequence[_Member]) -> tuple[tuple, tuple]:
        """The step's batch of `members` and its `vmap` dims."""
        rows = [m.next_rows for m in members]
        width = max(r.shape[1] for r in rows)
        index = np.zeros((len(rows), self.width, width), dtype=np.int64)
        mask = np.zeros(index.shape, dtype=np.float32)
        for i, (m, r) in enumerate(zip(members, rows, strict=True)):
            k, b = r.shape
            index[i, :k, :b] = r + m.place[2]
            mask[i, :k, :b] = 1
        xs, ys = [], []
        for key, positions in self._by_segment(members):
            segment = self.segments[key]
            flat = torch.from_numpy(index[positions]).to(self.device).reshape(-1)
            shape = (len(positions), self.width, width)
            xs.append((positions, segment["x"].index_select(0, flat).view(*shape, *segment["x"].shape[1:])))
            ys.append((positions, segment["y"].index_select(0, flat).view(shape)))
        x, y = self._assemble(xs, len(rows)), self._assemble(ys, len(rows))
        return (x, y, torch.from_numpy(mask).to(device=self.device, dtype=y.dtype)), (0, 0, 0)

    def stop_batches(self, members: Sequence[_Member]) -> Iterator[tuple[tuple, tuple]]:
        parts: dict[str, list] = {"stop_x": [], "stop_y": [], "stop_mask": []}
        grouped = self._by_segment(members)
        v = max(self.segments[key]["stop_y"].shape[2] for key, _ in grouped)
        for key, positions in grouped:
            segment = self.segments[key]
            slots = torch.tensor([members[i].place[1] for i in positions], device=self.device)
            for name in parts:
                block = segment[name].index_select(0, slots)
                pad = v - block.shape[2]
                if pad:
                    block = F.pad(block, (0, 0) * (block.dim() - 3) + (0, pad))
                parts[name].append((positions, block))
        yield tuple(self._assemble(parts[name], len(members)) for name in parts), (0, 0, 0)

    @staticmethod
    def counts(batch: tuple) -> torch.Tensor:
        """Rows counted per (member, task) of a batch: (G, width)."""
        return batch[2].sum(dim=-1)

    @staticmethod
    def padded(batch: tuple, extra: int, fill: float) -> tuple:
        """`batch` with `extra` masked-out rows of value `fill` appended to every block."""
        x, y, mask = batch
        filler = torch.full((*x.shape[:2], extra, *x.shape[3:]), fill, dtype=x.dtype, device=x.device)
        return (torch.cat([x, filler], 2),
                torch.cat([y, y[:, :, :1].expand(-1, -1, extra)], 2),
                torch.cat([mask, torch.zeros_like(mask[:, :, :1]).expand(-1, -1, extra)], 2))  # fmt: skip


class _SharedInputData:
    """Batches of `SharedInputTrainer` members of one data set: one input batch (shared when the rows agree),
    each member's target columns gathered from the data set's, columns past its tasks masked out."""

    def __init__(self, template: SharedInputTrainer, width: int) -> None:
        self.device, self.width, self.eval_batch = template.device, width, template.eval_batch
        dataset = template.dataset
        k = template.config.stop_rows(len(dataset.val))
        on_device = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        labelled = lambda part, n: torch.ones(n, len(dataset.task_names)) if part.mask is None else part.mask  # noqa: E731
        self.x, self.y = template.data["train"][0], on_device(dataset.train.y)
        self.mask = on_device(np.asarray(labelled(dataset.train, len(dataset.train)), dtype=np.float32))
        self.stop_x, self.stop_y = template.data["stop"][0], on_device(dataset.val.y[:k])
        self.stop_mask = on_device(np.asarray(labelled(dataset.val, len(dataset.val)), dtype=np.float32)[:k])

    def add(self, members: Sequence[_Member]) -> None:
        """Nothing to hold per member: the data set's arrays serve all."""

    def keep(self, active: Sequence[_Member]) -> None:
        """Nothing to drop."""

    def _columns(self, members: Sequence[_Member]) -> tuple[torch.Tensor, torch.Tensor]:
        """(G, width) column indices into the data set's targets, and 1 where the column is the member's."""
        columns = np.zeros((len(members), self.width), dtype=np.int64)
        valid = np.zeros((len(members), self.width), dtype=np.float32)
        for i, m in enumerate(members):
            columns[i, : len(m.trainer.columns)], valid[i, : len(m.trainer.columns)] = m.trainer.columns, 1
        return torch.from_numpy(columns).to(self.device), torch.from_numpy(valid).to(self.device)

    def train_batch(self, members: Sequence[_Member]) -> tuple[tuple, tuple]:
        """The step's batch of `members` and its `vmap` dims (the input shared when every member drew the same rows)."""
        rows = [m.next_rows for m in members]
        width = max(len(r) for r in rows)
        index = np.zeros((len(rows), width), dtype=np.int64)
        pad = np.zeros(index.shape, dtype=np.float32)
        for i, r in enumerate(rows):
            index[i, : len(r)], pad[i, : len(r)] = r, 1
        columns, valid = self._columns(members)
        rows_t = torch.from_numpy(index).to(self.device)
        y = self.y[rows_t[:, :, None], columns[:, None, :]]  # (G, B, width, …)
        mask = self.mask[rows_t[:, :, None], columns[:, None, :]] * valid[:, None, :]
        mask = mask * torch.from_numpy(pad).to(self.device)[..., None]
        if all(len(r) == width and np.array_equal(r, rows[0]) for r in rows):
            return (self.x[rows_t[0]], y, mask.to(y.dtype)), (None, 0, 0)
        return (self.x[rows_t], y, mask.to(y.dtype)), (0, 0, 0)

    def stop_batches(self, members: Sequence[_Member]) -> Iterator[tuple[tuple, tuple]]:
        columns, valid = self._columns(members)
        for start in range(0, len(self.stop_x), self.eval_batch):
            part = slice(start, start + self.eval_batch)
            y = self.stop_y[part][:, columns].movedim(0, 1)  # (G, rows, width, …)
            mask = self.stop_mask[part][:, columns].movedim(0, 1) * valid[:, None, :]
            yield (self.stop_x[part], y, mask.to(y.dtype)), (None, 0, 0)

    @staticmethod
    def counts(batch: tuple) -> torch.Tensor:
        return batch[2].sum(dim=1)

    @staticmethod
    def padded(batch: tuple, extra: int, fill: float) -> tuple:
        """`batch` with `extra` masked-out input rows of value `fill` appended."""
        x, y, mask = batch
        return (torch.cat([x, torch.full((extra, *x.shape[1:]), fill, dtype=x.dtype, device=x.device)]),
                torch.cat([y, y[:, :1].expand(-1, extra, *y.shape[2:])], 1),
                torch.cat([mask, torch.zeros_like(mask[:, :1]).expand(-1, extra, -1)], 1))  # fmt: skip


class _Stack:
    """The active members' stacked state: parameters, buffers, best weights, epoch loss sums, optimiser state."""

    def __init__(self, width: int, device: torch.device, optimizer: _Optimizer) -> None:
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self.best: dict[str, torch.Tensor] = {}
        self.best_buffers: dict[str, torch.Tensor] = {}
        self.sums = torch.zeros(0, width, device=device)
        self.optimizer = optimizer
        self.started = False

    def add(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> None:
        """Append new members (their initial weights are also their best so far)."""
        count = len(next(iter(params.values())))
        join = lambda old, new: {k: torch.cat([old[k], v]) if old else v for k, v in new.items()}  # noqa: E731
        self.best = join(self.best, {k: v.detach().clone() for k, v in params.items()})
        self.best_buffers = join(self.best_buffers, {k: v.clone() for k, v in buffers.items()})
        self.params = {k: v.detach().requires_grad_(True) for k, v in join(self.params, params).items()}
        self.buffers = join(self.buffers, buffers)
        self.sums = torch.cat([self.sums, self.sums.new_zeros(count, self.sums.shape[1])])
        self.optimizer.add(self.params, count)
        self.started = True

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the members at stack positions `index` (in that order)."""
        select = lambda d: {n: v.detach().index_select(0, index) for n, v in d.items()}  # noqa: E731
        self.params = {n: v.requires_grad_(True) for n, v in select(self.params).items()}
        self.buffers, self.best, self.best_buffers = select(self.buffers), select(self.best), select(self.best_buffers)
        self.sums = self.sums.index_select(0, index)
        self.optimizer.keep(index)

    def remember(self, index: torch.Tensor) -> None:
        """The current weights of the members at stack positions `index` are their best so far."""
        with torch.no_grad():
            for n, v in self.params.items():
                self.best[n].index_copy_(0, index, v.index_select(0, index))
            for n, v in self.buffers.items():
                self.best_buffers[n].index_copy_(0, index, v.index_select(0, index))


@dataclass
class _Member:
    """One run's progress in the batch."""

    trainer: BaseTrainer
    position: int  # the run's index among all runs
    stopping: EarlyStopping
    rows: Iterator[np.ndarray] | None = None
    next_rows: np.ndarray | None = None
    epoch: int = 0
    step: int = 0
    count: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    failure: Exception | None = None
    place: tuple[int, int, int] = (0, 0, 0)  # multi-input data: (segment, slot in it, first training row in it)

    def start_epoch(self) -> None:
        self.rows = self.trainer.epoch_rows()
        self.next_rows = next(self.rows)


class BatchedTrainer:
    """Train runs 0 … count−1 (`make_trainer(i)` builds each, all of one `layout`) as one batched model.

    At most `capacity` members train at once; when members finish, the next runs take their places.
    `template` is the index of a run with the most tasks (narrower members are padded to it); its
    trainer is built once more to serve as the template. See the module docstring.
    """

    def __init__(
        self, make_trainer: Callable[[int], BaseTrainer], count: int, capacity: int | None = None, *, template: int
    ) -> None:
        self.make_trainer, self.count = make_trainer, count
        self.capacity = max(1, capacity or count)
        self.template = make_trainer(template)
        self._layout = layout(self.template)
        if not self._layout[-1]:
            raise NotBatchable("runs with collectors or a weighting method train one at a time")
        self.width = len(self.template.tasks)
        self.config = self.template.config
        self.device = self.template.device
        data = _MultiInputData if type(self.template) is Trainer else _SharedInputData
        self.data = data(self.template, self.width)
        self._loss_module = _LossOf(self.template)
        self._direct = StackedMLPLosses.of(self.template)

    @classmethod
    def of(cls, trainers: Sequence[BaseTrainer], capacity: int | None = None) -> BatchedTrainer:
        """The batched trainer of built `trainers` (which must share one `layout`)."""
        if len({layout(t) for t in trainers}) != 1:
            raise NotBatchable("the runs differ in model layout, losses or configuration")
        widest = max(range(len(trainers)), key=lambda i: len(trainers[i].tasks))
        return cls(trainers.__getitem__, len(trainers), capacity, template=widest)

    def fit(self) -> list[TrainResult | Exception]:
        """Each run's `TrainResult`, or the exception that ended it, in run order."""
        with torch_threads(self.template.threads):
            return self._fit()

    # -- the batched model ----------------------------------------------------------------------
    def _losses(self, params: dict, buffers: dict, batch: tuple, dims: tuple) -> torch.Tensor:
        """Per-member per-task losses (G, width) of `batch` under the stacked `params`."""
        if self._direct is not None:
            return self._direct(params, batch)

        def one(p: dict, b: dict, *data: torch.Tensor) -> torch.Tensor:
            return functional_call(self._loss_module, (p, b), data)

        return vmap(one, in_dims=(0, 0, *dims))(params, buffers, *batch)

    def _stop_losses(self, params: dict, buffers: dict, members: Sequence[_Member], index: torch.Tensor
                     ) -> torch.Tensor:  # fmt: skip
        """Mean losses (G', width) on the stop rows of `members`, at stack positions `index`."""
        sub = ({k: v.index_select(0, index) for k, v in params.items()},
               {k: v.index_select(0, index) for k, v in buffers.items()})  # fmt: skip
        total, counts = None, None
        # in evaluation mode, as the trainers evaluate (the direct MLP has no layer that depends on the mode)
        with torch.no_grad(), nullcontext() if self._direct is not None else _evaluation(self.template.model):
            for batch, dims in self.data.stop_batches(members):
                means, weight = self._losses(*sub, batch, dims), self.data.counts(batch)
                total = means * weight if total is None else total + means * weight
                counts = weight if counts is None else counts + weight
        return total / counts.clamp(min=1.0)

    def _stack(self, trainers: Sequence[BaseTrainer], buffers: bool) -> dict[str, torch.Tensor]:
        """The trainers' parameters (or buffers) stacked by name; a head a narrower member lacks is zeros."""
        get = (lambda m: dict(m.named_buffers())) if buffers else (lambda m: dict(m.named_parameters()))
        own = [get(t.model) for t in trainers]
        return {
            f"model.{n}": torch.stack([m[n].detach() if n in m else torch.zeros_like(like) for m in own])
            for n, like in get(self.template.model).items()
        }

    def _probe(self, params: dict, buffers: dict, members: Sequence[_Member]) -> None:
        """Check, before any member draws a batch, that the model batches: it runs under `vmap` with
        gradients, and in training mode rows appended as padding change no loss (a model whose output
        depends on other rows of its batch, such as BatchNorm, would train on the padding)."""
        batch, dims = next(self.data.stop_batches(members))
        scratch = {k: v.clone() for k, v in buffers.items()}  # training mode may update buffers
        try:
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

    @staticmethod
    def _disagreement(batched: torch.Tensor, members: Sequence[_Member]) -> list[str]:
        """Per member, why the batched stop-row losses differ from the member's own evaluation ("" if they agree)."""
        reasons = []
        for i, m in enumerate(members):
            own, reason = m.trainer.evaluate("stop")[0], ""
            for k, task in enumerate(m.trainer.tasks):
                a, b = float(batched[i, k]), own[task]
                if math.isfinite(b) and abs(a - b) > AGREEMENT * max(1.0, abs(b)):
                    run = f"{'|'.join(m.trainer.tasks)} (seed {m.trainer.seed})"
                    reason = (f"the batched model gives run {run} a stop loss of {a:.6g} for task {task!r} where "
                              f"the model itself gives {b:.6g}")  # fmt: skip
                    break
            reasons.append(reason)
        return reasons

    # -- the loop -------------------------------------------------------------------------------
    def _fit(self) -> list[TrainResult | Exception]:
        outcomes: list[TrainResult | Exception | None] = [None] * self.count
        pending = iter(range(self.count))
        stack = _Stack(self.width, self.device, _Optimizer(self.config))
        active: list[_Member] = []
        while True:
            room = self.capacity - len(active)
            joining = self._admit(pending, room, outcomes, probe=not stack.started)
            if joining:
                trainers = [m.trainer for m in joining]
                stack.add(self._stack(trainers, buffers=False), self._stack(trainers, buffers=True))
                for m in joining:
                    m.start_epoch()
                active += joining
            if not active:
                return outcomes  # type: ignore[return-value]
            finished = self._step(stack, active)
            if finished:
                for j in finished:
                    outcomes[active[j].position] = self._finish(active[j], j, stack)
                keep = [j for j in range(len(active)) if j not in set(finished)]
                stack.keep(torch.tensor(keep, dtype=torch.long, device=self.device))
                active = [active[j] for j in keep]
                self.data.keep(active)

    def _admit(self, pending: Iterator[int], room: int, outcomes: list, probe: bool) -> list[_Member]:
        """Up to `room` new members, each checked against its own evaluation; the first ones also probe the model.

        A run that fails to build fails alone; one the batch cannot reproduce trains on its own (one log line).
        On the first admission a failed probe or disagreement raises `NotBatchable`: nothing has trained yet.
        """
        joining: list[_Member] = []
        while len(joining) < room:
            i = next(pending, None)
            if i is None:
                break
            try:
                trainer = self.make_trainer(i)
                if layout(trainer) != self._layout:
                    raise NotBatchable("its model layout, losses or configuration differ from the batch's")
            except Exception as exc:
                outcomes[i] = exc
                continue
            joining.append(_Member(trainer, i, EarlyStopping(self.config, trainer.monitor)))
        if not joining:
            return []
        self.data.add(joining)
        params = self._stack([m.trainer for m in joining], buffers=False)
        buffers = self._stack([m.trainer for m in joining], buffers=True)
        if probe:
            self._probe({k: v.requires_grad_(True) for k, v in params.items()}, buffers, joining)
        index = torch.arange(len(joining), device=self.device)
        reasons = self._disagreement(self._stop_losses(params, buffers, joining, index), joining)
        if probe and any(reasons):
            raise NotBatchable(next(r for r in reasons if r))
        for m, reason in zip(joining, reasons, strict=True):
            if reason:
                log.warning("taskrel: training one run alone: %s", reason)
                outcomes[m.position] = _fit_alone(lambda m=m: m.trainer)
        return [m for m, reason in zip(joining, reasons, strict=True) if not reason]

    def _step(self, stack: _Stack, active: list[_Member]) -> list[int]:
        """One update of every active member and the epoch ends it brings; the stack positions of finished members."""
        started = time.perf_counter()
        batch, dims = self.data.train_batch(active)
        lr = torch.tensor([self.config.lr_at(m.epoch) for m in active], dtype=torch.float64, device=self.device)
        losses = self._losses(stack.params, stack.buffers, batch, dims)
        grads = torch.autograd.grad(losses.sum(), list(stack.params.values()), allow_unused=True)
        stack.optimizer.step(stack.params, dict(zip(stack.params, grads, strict=True)), lr)
        stack.sums += losses.detach()
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
            val = self._stop_losses(stack.params, stack.buffers, [active[j] for j in ended], index).tolist()
            counts = torch.tensor([[active[j].count] for j in ended], device=self.device)
            means = (stack.sums.index_select(0, index) / counts).tolist()
            stack.sums.index_fill_(0, index, 0.0)
            improved = []
            for j, stop_loss, mean_train in zip(ended, val, means, strict=True):
                k = len(active[j].trainer.tasks)  # its own tasks: the columns past them are padding
                better, done = self._epoch_end(active[j], stop_loss[:k], mean_train[:k])
                if better:
                    improved.append(j)
                if done:
                    finished.append(j)
            if improved:  # before any finished member's best weights are read
                stack.remember(torch.tensor(improved, device=self.device))
        share = (time.perf_counter() - started) / len(active)
        for m in active:
            m.seconds += share
        return finished

    def _epoch_end(self, m: _Member, stop_loss: list, mean_train: list) -> tuple[bool, bool]:
        """Book the epoch that member `m` ended: (its current weights are its best so far, it is done)."""
        tasks = m.trainer.tasks
        try:
            logs = epoch_logs(tasks, mean_train, dict(zip(tasks, stop_loss, strict=True)), m.epoch, m.step,
                              self.config)  # fmt: skip
        except Exception as exc:
            m.failure = exc
            return False, True
        m.history.append(logs)
        m.count = 0
        verdict = m.stopping.update(logs["val_loss"], m.epoch, m.step)
        if verdict == "stop":
            return False, True
        m.epoch += 1
        if not m.stopping.another_epoch(m.epoch, m.step):
            return verdict == "improved", True
        m.start_epoch()
        return verdict == "improved", False

    def _finish(self, m: _Member, j: int, stack: _Stack) -> TrainResult | Exception:
        """The member's result from its restored best weights, computed by its own trainer."""
        if m.failure is not None:
            return m.failure
        started = time.perf_counter()
        try:
            m.stopping.check(m.trainer.tasks)
            with torch.no_grad():
                for n, p in m.trainer.model.named_parameters():
                    p.copy_(stack.best[f"model.{n}"][j])
                for n, b in m.trainer.model.named_buffers():
                    b.copy_(stack.best_buffers[f"model.{n}"][j])
            return m.trainer.result(
                m.history, m.step, m.stopping.best_epoch, m.seconds + time.perf_counter() - started
            )
        except Exception as exc:
            return exc
