"""`TorchProblem`: a `Problem` for users' PyTorch models and data, trained by taskrel's own loop.

Most users write no training loop: they give their data (single-input `SingleInputDataset` or
multi-input `MultiTaskDataset`), a ``model_factory(group, seed) -> nn.Module`` with one head per
task (a `taskrel.models.MultiTaskModel`, or a module returning ``{task: predictions}`` with a
`shared_parameters()` method), a loss per task and a `TrainConfig`. The built-in datasets are
`TorchProblem`s with the default MLP. `torch.manual_seed(seed)` is set before `model_factory`
is called, so a factory that draws its initial weights from torch's generator is seeded too.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from taskrel.data.dataset import MultiTaskDataset
from taskrel.data.single import SingleInputDataset
from taskrel.errors import ConfigError
from taskrel.groups import ordered
from taskrel.models import mlp_model
from taskrel.models.multitask import MultiTaskModel, mlp_trunk
from taskrel.problems.protocol import attempt, check_task_names
from taskrel.train.batched import train_runs
from taskrel.train.callbacks import Callback
from taskrel.train.config import TrainConfig
from taskrel.train.loop import BaseTrainer, TrainResult, members, resolve_device
from taskrel.train.multi_input import Trainer
from taskrel.train.single_input import RowLoss, SharedInputTrainer

ModelFactory = Callable[[tuple[str, ...], int], nn.Module]


class TorchProblem:
    """A problem trained by taskrel's loop (see the module docstring).

    `loss`: for single-input data, one spec for every task or ``{task: spec}``: "mse", "bce"
    (logits), "ce" (class logits), a callable (predictions, targets) -> per-row losses (n,), or
    "auto" (BCE for 0/1 targets, else MSE); multi-input data uses its kind's loss. `device`:
    "cpu", "cuda", "auto" (CUDA when available). `threads`: torch's intra-op threads during
    training (1: fastest for small models, identical numbers on any machine). `weighting`: how every
    run combines its task losses when `train` is given none: an object with ``backward(losses,
    shared_parameters)`` that serves any group (e.g. ``AggregatorWeighting(UPGrad())`` of
    `taskrel.integrations.torchjd`), each run training with a fresh deep copy, or a factory
    ``weighting(group)`` returning one (e.g. ``lambda group: NashMTL(group)``); None sums the losses.
    """

    def __init__(
        self,
        data: SingleInputDataset | MultiTaskDataset,
        model_factory: ModelFactory | None = None,
        *,
        name: str | None = None,
        loss: str | RowLoss | Mapping[str, str | RowLoss] = "auto",
        config: TrainConfig | None = None,
        device: str | torch.device = "cpu",
        threads: int | None = 1,
        weighting: object | Callable[[tuple[str, ...]], object] | None = None,
    ) -> None:
        if not isinstance(data, SingleInputDataset | MultiTaskDataset):
            raise ConfigError(
                f"TorchProblem data must be a SingleInputDataset or a MultiTaskDataset, got {type(data).__name__}"
            )
        if isinstance(data, MultiTaskDataset) and loss != "auto":
            raise ConfigError("multi-input data uses its kind's loss (BCE or MSE); leave loss='auto'")
        self.data = data
        self.name = name or data.name
        self.tasks = list(data.task_names)
        check_task_names(self.tasks, f"TorchProblem {self.name!r}")
        self.model_factory = model_factory
        self.loss = loss
        self.config = config or TrainConfig()
        self.device = resolve_device(device)
        self.threads = threads
        self.weighting = weighting
        self._identity: dict | None = None  # the data and model parts of the fingerprint, computed once

    def fingerprint(self) -> dict:
        """What makes two runs comparable: name, training protocol, data, model and loss.

        ``data`` is a content hash of every split's arrays (computed once per data object); ``model``
        names the factory and hashes its architecture (the module tree with every layer's sizes, and
        parameter and buffer shapes of the model of all tasks) and the source of the factory and of
        every model class outside torch, where Python can read it. A problem with a `weighting` adds it
        (an object's repr, a factory's source).
        """
        if self._identity is None:
            self._identity = {"data": data_digest(self.data), "model": self._model_identity()}
        return {
            "name": self.name,
            "train": self.config.to_dict(),
            **self._identity,
            "loss": _describe(self.loss) if not isinstance(self.loss, Mapping)
            else {t: _describe(v) for t, v in self.loss.items()},
            **({} if self.weighting is None else {"weighting": _describe_weighting(self.weighting)}),
        }  # fmt: skip

    def _model_identity(self) -> dict:
        with torch.random.fork_rng(devices=[]):  # building the model must not move the user's generator
            model = self.make_model(self.tasks, 0)
        tensors = [(n, tuple(t.shape)) for n, t in (*model.named_parameters(), *model.named_buffers())]
        sources = [_source(self.model_factory)] if self.model_factory is not None else []
        sources += sorted({_source(type(m)) for m in model.modules() if not type(m).__module__.startswith("torch.")})
        return {
            "factory": _describe(self.model_factory) if self.model_factory is not None else "mlp",
            "architecture": _digest(repr(model) + repr(tensors)),
            "source": _digest("\n".join(sources)),
        }

    def with_config(self, **changes) -> TorchProblem:
        """The same problem trained with `TrainConfig` fields changed (e.g. ``max_steps=2000``)."""
        config = TrainConfig.from_dict({**self.config.to_dict(), **changes})
        problem = TorchProblem(self.data, self.model_factory, name=self.name, loss=self.loss, config=config,
                               device=self.device, threads=self.threads, weighting=self.weighting)  # fmt: skip
        problem._identity = None if "hidden" in changes else self._identity  # the MLP's width is the model
        return problem

    def make_model(self, group: Sequence[str], seed: int) -> nn.Module:
        """A fresh model for `group` (in task order), seeded by `seed`."""
        group = tuple(ordered(group, self.tasks))
        if self.model_factory is not None:
            torch.manual_seed(seed)
            return self.model_factory(group, seed)
        if isinstance(self.data, MultiTaskDataset):
            return mlp_model(group, self.data.n_features, self.config.hidden, seed=seed)
        return _default_single_input_model(self.data, group, self.config.hidden, seed)

    def trainer(
        self,
        group: Iterable[str],
        seed: int,
        *,
        callbacks: Sequence[Callback] = (),
        weighting: object | None = None,
        monitor: Iterable[str] | None = None,
    ) -> BaseTrainer:
        """The trainer of one run (call `.fit()`); `monitor` as in `BaseTrainer`."""
        group = members(group, self.tasks, self.name)
        if weighting is None and self.weighting is not None:
            weighting = copy.deepcopy(self.weighting) if hasattr(self.weighting, "backward") else self.weighting(group)
        model = self.make_model(group, seed)
        options = dict(seed=seed, callbacks=callbacks, weighting=weighting, threads=self.threads, monitor=monitor,
                       device=self.device)  # fmt: skip
        if isinstance(self.data, MultiTaskDataset):
            return Trainer(self.data, group, self.config, model=model, **options)
        return SharedInputTrainer(self.data, group, model, self.config, loss=self.loss, **options)

    def train(
        self, group: Sequence[str], seed: int, *, callbacks: Sequence[Callback] = (), weighting: object | None = None
    ) -> TrainResult:
        """Train `group` with `seed`; per-task losses of the restored best weights."""
        return self.trainer(group, seed, callbacks=callbacks, weighting=weighting).fit()

    def train_many(
        self, runs: Sequence[tuple[Sequence[str], int]], *, max_batch: int | None = None
    ) -> list[TrainResult | Exception]:
        """Train (group, seed) `runs`, batched where the models allow (`taskrel.train.batched.train_runs`).

        Per run in order: its result, equal to `train(group, seed)`'s up to float reassociation, or the
        exception that ended it. `max_batch` caps the runs of one batched model (1: one at a time). A
        subclass that overrides `train` has every run go through its `train`, one at a time.
        """
        runs = [(list(group), int(seed)) for group, seed in runs]
        if type(self).train is not TorchProblem.train:
            return [attempt(self, group, seed) for group, seed in runs]
        return train_runs(lambda i: self.trainer(*runs[i]), len(runs), max_batch)

    def __repr__(self) -> str:
        return f"TorchProblem({self.name!r}, {len(self.tasks)} tasks)"


def data_digest(data: SingleInputDataset | MultiTaskDataset) -> str:
    """A content hash of a data set: task names and every split's arrays (dtype, shape and bytes)."""
    digest = hashlib.sha256(repr((type(data).__name__, tuple(data.task_names))).encode())
    if isinstance(data, MultiTaskDataset):
        digest.update(repr((data.kind, data.target_scale)).encode())
        arrays = [a for task in data.tasks for part in (task.train, task.val, task.test) for a in (part.x, part.y)]
    else:
        parts = [data.split(which) for which in ("train", "val", "test")]
        arrays = [a for part in parts for a in (part.x, part.y, part.mask) if a is not None]
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _describe_weighting(weighting: object) -> str:
    """A weighting object by its repr, a factory by its source."""
    return repr(weighting) if hasattr(weighting, "backward") else _source(weighting)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _source(value: object) -> str:
    """The source code of a function or class, or its qualified name where Python cannot read it."""
    try:
        return inspect.getsource(value)
    except (OSError, TypeError):
        return _describe(value)


def _describe(value: object) -> str:
    if isinstance(value, str):
        return value
    module = getattr(value, "__module__", "")
    name = getattr(value, "__qualname__", type(value).__qualname__)
    return f"{module}.{name}" if not module.startswith("taskrel_user_problem_") else name


def _default_single_input_model(
    data: SingleInputDataset, tasks: Sequence[str], hidden: Sequence[int], seed: int
) -> MultiTaskModel:
    """An MLP over the flattened input with one linear head per task (outputs shaped like its targets)."""
    width = int(torch.Size(data.input_shape).numel())
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        trunk = nn.Sequential(nn.Flatten(), *mlp_trunk(width, hidden))
        heads = {t: _shaped_head(hidden[-1], data.target_shape) for t in tasks}
    finally:
        torch.random.set_rng_state(generator_state)
    return MultiTaskModel(trunk, heads)


def _shaped_head(width: int, shape: tuple[int, ...]) -> nn.Module:
    size = int(torch.Size(shape).numel())
    if not shape:
        return nn.Linear(width, 1)
    return nn.Sequential(nn.Linear(width, size), nn.Unflatten(-1, shape))
