"""Task weighting inside the user's flow: a problem whose every run is trained with a weighting method.

`WeightingSpec` names a method (`taskrel.weighting.METHODS`; ``nash-mtl`` is accepted for ``nash_mtl``)
and, for auxiliary learning, the *main* task: early stopping and the restored best weights then watch
the main task's validation loss alone, AuxiNash learns its preferences from the main task's loss on
fresh training batches, and GCS keeps the auxiliaries whose gradient agrees with the main task's.

`WeightedProblem(problem, spec)` is a `Problem` like any other, so `train`, `sweep` and the pipeline run
it unchanged. Its fingerprint is the problem's plus ``"weighting": spec.to_dict()``, so a run store
holds weighted or unweighted runs, never both. Conventions:

* a group of one task has nothing to weight: it is trained as the problem trains it (the STL baseline
  its gains are measured against); with a main task, every larger group must contain it;
* a `TorchProblem` whose `train` is not overridden is trained by its trainer, one run at a time (the
  batched engine trains unweighted runs only); AuxiNash's meta batches (`WeightingSpec.meta`) are drawn
  by their own generator (``numpy.random.default_rng([seed, 2])``), so the training batches are those
  of the unweighted run;
* any other problem receives the method as ``train(group, seed, weighting=method)`` and its loop calls
  ``method.backward(losses, shared_parameters)`` in place of ``sum(losses).backward()``. For AuxiNash
  with learned preferences the loop also sets ``method.meta_loss`` to a zero-argument callable returning
  the main task's loss on a fresh training batch (`needs_meta_loss` says when); a loop that does not is
  stopped with a `ConfigError` at the first preference update rather than silently keeping p fixed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from taskrel.choices import META_DATA
from taskrel.choices import TASK_WEIGHTINGS as WEIGHTINGS
from taskrel.errors import ConfigError, UnknownTaskError
from taskrel.groups import ordered
from taskrel.problems.protocol import GroupResult, Problem, check_fingerprint
from taskrel.problems.registry import load_problem, problem_spec
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train.batches import BatchPlan
from taskrel.train.callbacks import Callback, StepContext
from taskrel.train.loop import BaseTrainer
from taskrel.train.multi_input import Trainer
from taskrel.train.single_input import SharedInputTrainer
from taskrel.weighting import make_method
from taskrel.weighting.auxinash import AuxiNash
from taskrel.weighting.methods import GCS, PCGrad, WeightingMethod

#: The names `WeightingSpec` accepts, as the command line spells them.
#: Methods that need to know the main task.
NEEDS_MAIN = ("auxinash", "gcs")
#: The second key of the generator that draws AuxiNash's meta batches: ``default_rng([seed, META_STREAM])``.
META_STREAM = 2


@dataclass(frozen=True)
class WeightingSpec:
    """A weighting method by name, the main task of auxiliary learning (or None) and the method's options.

    `method`: one of `WEIGHTINGS` (``nash_mtl`` and ``nash-mtl`` are the same). `options` go to the
    method's constructor (e.g. ``{"meta_lr": 0.05}`` for AuxiNash); they must be JSON values, since they
    are part of the runs' identity. `meta`: where AuxiNash's meta loss (the main task's loss whose
    hypergradient moves the preferences) takes its batches: ``"train"`` (the reference's default: fresh
    training batches) or ``"val"`` (batches of the validation rows that early stopping watches, never
    the reported ones): with few main-task labels the training rows are fit early and their loss stops
    carrying a signal.
    """

    method: str
    main: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    meta: str = "train"

    def __post_init__(self) -> None:
        name = str(self.method).replace("_", "-")
        if name not in WEIGHTINGS:
            raise ConfigError(f"unknown weighting {self.method!r}; use one of {', '.join(WEIGHTINGS)}")
        if self.meta not in META_DATA:
            raise ConfigError(f"unknown meta data {self.meta!r}; use one of {', '.join(META_DATA)}")
        if name in NEEDS_MAIN and self.main is None:
            raise ConfigError(f"weighting {name!r} needs the main task (--main TASK): it weights auxiliaries for it")
        object.__setattr__(self, "method", name)
        object.__setattr__(self, "options", dict(self.options))

    def to_dict(self) -> dict:
        """The spec as the fingerprint records it (`meta` only where it matters: AuxiNash)."""
        spec = {"method": self.method, "main": self.main, "options": dict(sorted(self.options.items()))}
        return {**spec, "meta": self.meta} if self.method == "auxinash" else spec

    def build(
        self, group: Sequence[str], seed: int, meta_loss: Callable[[], torch.Tensor] | None = None
    ) -> WeightingMethod:
        """The method for one run of `group` (task order) with `seed`; `meta_loss` feeds AuxiNash's preferences."""
        options = dict(self.options)
        if self.method == "auxinash":
            return AuxiNash(group, meta_loss=meta_loss, **options)
        if self.method == "gcs":
            return GCS(group, main=self.main, **options)
        if self.method == "pcgrad":
            return PCGrad(group, seed=seed, **options)
        return make_method(self.method.replace("-", "_"), group, **options)


def needs_meta_loss(method: object) -> bool:
    """Whether a user's loop must set ``method.meta_loss`` (AuxiNash learning preferences without one)."""
    return isinstance(method, AuxiNash) and isinstance(method.meta_loss, MissingMetaLoss)


class MissingMetaLoss:
    """AuxiNash's meta loss until a user's loop provides one: calling it raises `ConfigError`."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def __call__(self) -> torch.Tensor:
        raise ConfigError(
            f"problem {self.problem!r} trains AuxiNash with learned preferences, but its training loop did not set "
            "weighting.meta_loss (a callable returning the main task's loss on a fresh training batch; "
            "see docs/auxiliary.md)"
        )


class PreferenceHistory(Callback):
    """Records AuxiNash's preferences (normalised to sum 1, in the method's task order) after every update.

    `steps[i]` is the training step after which `preferences[i]` holds; the first entry is the initial p.
    """

    def __init__(self, method: AuxiNash) -> None:
        self.method = method
        self.steps: list[int] = []
        self.preferences: list[list[float]] = []

    def _record(self) -> None:
        if not self.steps or self.steps[-1] != self.method.step:
            p = self.method.preferences
            self.steps.append(self.method.step)
            self.preferences.append((p / p.sum()).tolist())

    def on_train_begin(self, logs: dict) -> None:
        self._record()

    def on_step(self, ctx: StepContext) -> None:
        if self.method.step % self.method.hypergrad_every == 0:
            self._record()

    def on_train_end(self) -> None:
        self._record()


class UpdateHistory(Callback):
    """Records, every `every` steps, a method's coefficients c and its tasks' gradient norms ‖g_i‖ on the
    shared parameters (methods that compute per-task gradients).

    ``steps[i]`` is the method's step count when ``coefficients[i]`` and ``gradient_norms[i]`` were read;
    `shares` gives each task's part c_i‖g_i‖ / Σ_j c_j‖g_j‖ of the shared update's magnitude.
    """

    def __init__(self, method: WeightingMethod, every: int = 25) -> None:
        self.method, self.every = method, int(every)
        self.steps: list[int] = []
        self.coefficients: list[list[float]] = []
        self.gradient_norms: list[list[float]] = []

    def on_step(self, ctx: StepContext) -> None:
        method = self.method
        if method.step % self.every == 0 and method.weights is not None and method.gradient_norms is not None:
            self.steps.append(method.step)
            self.coefficients.append(method.weights.tolist())
            self.gradient_norms.append(method.gradient_norms.tolist())

    def shares(self) -> np.ndarray:
        """(records, K) shares of the update's magnitude, each row summing to 1."""
        parts = np.abs(np.asarray(self.coefficients)) * np.asarray(self.gradient_norms)
        return parts / np.maximum(parts.sum(axis=1, keepdims=True), 1e-300)


@dataclass
class WeightedRun:
    """One run: its result, the method that weighted it (None for a group of one), AuxiNash's
    preference history (None for other methods), the coefficients and gradient norms over training
    (`UpdateHistory`; None for methods without per-task gradients); `seconds_per_step` is the run's
    training time per step."""

    result: GroupResult
    method: WeightingMethod | None
    history: PreferenceHistory | None
    seconds_per_step: float
    updates: UpdateHistory | None = None

    @property
    def final_preferences(self) -> dict[str, float] | None:
        """AuxiNash's last preferences by task (summing to 1), or None for other methods."""
        if not isinstance(self.method, AuxiNash):
            return None
        p = self.method.preferences
        return dict(zip(self.method.tasks, (p / p.sum()).tolist(), strict=True))


def train_weighted(
    problem: Problem, group: Sequence[str], seed: int, spec: WeightingSpec, *, callbacks: Sequence[Callback] = ()
) -> WeightedRun:
    """Train `group` of `problem` with `seed` under `spec` (see the module docstring)."""
    tasks = list(problem.tasks)
    group = ordered(group, tasks)
    started = time.perf_counter()
    if len(group) == 1:
        result = problem.train(group, seed, callbacks=callbacks)
        return WeightedRun(result, None, None, _per_step(result, started))
    if spec.main is not None and spec.main not in group:
        raise ConfigError(f"group {'|'.join(group)} lacks the main task {spec.main!r} of its weighting")
    trainer: BaseTrainer | None = None
    own_trainer = _trains_itself(problem)
    if own_trainer:
        main = group.index(spec.main) if spec.main is not None else None

        def meta_loss() -> torch.Tensor:
            if spec.meta == "val":
                return held_out_loss(trainer, main, held_out)
            return trainer._losses(next(batches), tasks=(main,))[0]

        method = spec.build(group, seed, meta_loss if main is not None else None)
    else:
        if spec.meta != "train":
            raise ConfigError(f"meta={spec.meta!r} needs a TorchProblem; a user's loop provides its own meta loss")
        method = spec.build(group, seed, MissingMetaLoss(str(check_fingerprint(problem).get("name", "problem"))))
    history = PreferenceHistory(method) if isinstance(method, AuxiNash) else None
    updates = UpdateHistory(method) if method.needs_gradients else None
    hooks = [*callbacks, *[h for h in (history, updates) if h is not None]]
    if own_trainer:
        trainer = problem.trainer(group, seed, callbacks=hooks, weighting=method,
                                  monitor=None if spec.main is None else [spec.main])  # fmt: skip
        batches = training_batches(trainer, META_STREAM)
        held_out = np.random.default_rng([seed, META_STREAM])
        result = trainer.fit()
    else:
        result = problem.train(group, seed, callbacks=hooks, weighting=method)
    return WeightedRun(result, method, history, _per_step(result, started), updates)


def _trains_itself(problem: Problem) -> bool:
    """Whether `problem` is a `TorchProblem` trained by taskrel's trainer (its `train` not overridden)."""
    return isinstance(problem, TorchProblem) and type(problem).train is TorchProblem.train


def training_batches(trainer: BaseTrainer, key: int) -> Iterator[object]:
    """An endless stream of `trainer`'s training batches, drawn as its own are but by
    ``default_rng([trainer.seed, key])``: the run's own batch stream is not touched."""
    plan = BatchPlan(trainer.plan.sizes, trainer.plan.batch_size, np.random.default_rng([trainer.seed, key]))
    return itertools.chain.from_iterable(trainer._epoch(plan) for _ in itertools.count())


def held_out_loss(trainer: BaseTrainer, task: int, rng: np.random.Generator) -> torch.Tensor:
    """Task `task`'s mean loss (graph attached) on a random batch of the validation rows early stopping watches.

    The batch has the run's batch size (all the rows when there are fewer), drawn by `rng`.
    """
    name = trainer.tasks[task]
    if isinstance(trainer, Trainer):
        x, y = trainer._eval["stop"][task]
        rows = _draw(len(y), trainer.config.batch_size, rng, trainer.device)
        return trainer.loss_fn(trainer.model(x[rows], name), y[rows])
    if isinstance(trainer, SharedInputTrainer):
        x, y, mask = trainer.data["stop"]
        labelled = torch.arange(len(y), device=trainer.device) if mask is None else mask[:, task].nonzero()[:, 0]
        rows = labelled[_draw(len(labelled), trainer.config.batch_size, rng, trainer.device)]
        return trainer._row_losses(x[rows], y[rows])[task][1].mean()
    raise ConfigError(f"held-out meta batches need one of taskrel's trainers, got {type(trainer).__name__}")


def _draw(n: int, size: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(rng.permutation(n)[:size]).to(device)


def _per_step(result: GroupResult, started: float) -> float:
    seconds = result.seconds or (time.perf_counter() - started)
    return seconds / result.steps if result.steps else float("nan")


class WeightedProblem:
    """`problem` with every run of two or more tasks trained under `spec` (see the module docstring).

    Loaded from a spec itself when `problem` was (`weighted_problem`), so sweep workers rebuild it.
    """

    def __init__(self, problem: Problem | str, spec: WeightingSpec) -> None:
        self.problem = load_problem(problem)
        if spec.meta != "train" and not _trains_itself(self.problem):
            raise ConfigError(f"meta={spec.meta!r} needs a TorchProblem; a user's loop provides its own meta loss")
        self.spec = spec
        self.tasks = list(self.problem.tasks)
        if spec.main is not None and spec.main not in self.tasks:
            raise UnknownTaskError(f"main task {spec.main!r} is not a task of the problem; tasks: {self.tasks}")
        inner = problem_spec(self.problem)
        if inner is not None:
            self.problem_spec = (f"{__name__}:weighted_problem",
                                 {"problem": inner[0], "problem_options": inner[1], **spec.to_dict()})  # fmt: skip

    def fingerprint(self) -> dict:
        """The problem's fingerprint plus ``"weighting"``: the spec's `to_dict()`."""
        return {**check_fingerprint(self.problem), "weighting": self.spec.to_dict()}

    def train(
        self, group: Sequence[str], seed: int, *, callbacks: Sequence[Callback] = (), weighting: object | None = None
    ) -> GroupResult:
        if weighting is not None:
            raise ConfigError(f"this problem is already weighted by {self.spec.method!r}; pass no other weighting")
        return train_weighted(self.problem, group, seed, self.spec, callbacks=callbacks).result

    def __repr__(self) -> str:
        return f"WeightedProblem({self.problem!r}, {self.spec.method!r}, main={self.spec.main!r})"


def weighted_problem(
    problem: str, method: str, main: str | None = None, options: Mapping[str, Any] | None = None,
    problem_options: Mapping[str, Any] | None = None, meta: str = "train",
) -> WeightedProblem:  # fmt: skip
    """A `WeightedProblem` from plain values: what a sweep worker resolves its spec into."""
    spec = WeightingSpec(method, main, options or {}, meta)
    return WeightedProblem(load_problem(problem, **dict(problem_options or {})), spec)
