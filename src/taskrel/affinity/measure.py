"""Measure task affinity on any problem: one all-task training run with a collector watching it."""

from __future__ import annotations

from taskrel.affinity.collector import AffinityCollector
from taskrel.affinity.etap import EtapAffinity
from taskrel.affinity.lookahead import TagAffinity
from taskrel.affinity.matrix import AffinityMatrix
from taskrel.affinity.transfer_gain import PtgTransferGain
from taskrel.choices import AFFINITY_METHODS as METHODS
from taskrel.errors import ConfigError
from taskrel.problems.protocol import GroupResult, Problem, check_result
from taskrel.problems.registry import load_problem
from taskrel.problems.torch_problem import TorchProblem

#: The collectors by name (`taskrel.choices.AFFINITY_COLLECTORS`).
COLLECTORS = {"etap": EtapAffinity, "tag": TagAffinity, "ptg": PtgTransferGain}


def make_collector(
    method: str,
    every: int = 1,
    momentum: bool = False,
    normalize: bool = True,
    reference: str = "doubled",
    weighting: str | None = None,
    sample: float = 1.0,
) -> AffinityCollector | None:
    """A collector by method name (``none`` → no collector); `weighting` None keeps the collector's default."""
    if method == "none":
        return None
    if method == "etap":
        return COLLECTORS["etap"](every, momentum=momentum, normalize=normalize, weighting=weighting)
    if method == "ptg":
        return COLLECTORS["ptg"](every, reference=reference, weighting=weighting, sample=sample)
    if method == "tag":
        return COLLECTORS["tag"](every, weighting=weighting, sample=sample)
    raise ConfigError(f"unknown affinity method {method!r}; use one of {METHODS}")


def measure_affinity(
    problem: Problem | str,
    method: str,
    *,
    epochs: int | None = None,
    every: int = 1,
    seed: int = 0,
    weighting: str | None = None,
    **options,
) -> tuple[AffinityMatrix | None, GroupResult]:
    """Train all tasks of `problem` once with the collector; returns (A[source, target] or None, result).

    `weighting` aggregates the collected steps (see `taskrel.affinity.collector`; None: the collector's
    default); `options` go to `make_collector` (momentum, normalize, reference, sample). With `epochs`
    (a `TorchProblem` only), exactly that many epochs are trained without early stopping, as for
    overhead measurements; otherwise the problem's own protocol decides.
    """
    problem = load_problem(problem)
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"epochs must be ≥ 1, got {epochs}")
        if not isinstance(problem, TorchProblem):
            raise ConfigError("epochs= needs a TorchProblem; a user's own loop decides its own length")
        problem = problem.with_config(max_epochs=epochs, patience=epochs + 1, max_steps=10**9)
    collector = make_collector(method, every, weighting=weighting, **options)
    tasks = list(problem.tasks)
    result = problem.train(tasks, seed, callbacks=[collector] if collector else [])
    check_result(result, tasks, f"train(all tasks, seed={seed})")
    return (collector.matrix() if collector else None), result
