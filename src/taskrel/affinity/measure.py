"""Measure task affinity on any problem: one all-task training run with a collector watching it."""

from __future__ import annotations

from taskrel.affinity import COLLECTORS
from taskrel.affinity.collector import AffinityCollector
from taskrel.affinity.matrix import AffinityMatrix
from taskrel.errors import ConfigError
from taskrel.problem import GroupResult, Problem, check_result, load_problem
from taskrel.torch_problem import TorchProblem

METHODS = (*COLLECTORS, "none")


def make_collector(
    method: str, every: int = 1, momentum: bool = False, normalize: bool = True, reference: str = "doubled"
) -> AffinityCollector | None:
    """A collector by method name (``none`` → no collector)."""
    if method == "none":
        return None
    if method == "etap":
        return COLLECTORS["etap"](every=every, momentum=momentum, normalize=normalize)
    if method == "ptg":
        return COLLECTORS["ptg"](every=every, reference=reference)
    if method == "tag":
        return COLLECTORS["tag"](every=every)
    raise ConfigError(f"unknown affinity method {method!r}; use one of {METHODS}")


def measure_affinity(
    problem: Problem | str,
    method: str,
    *,
    epochs: int | None = None,
    every: int = 1,
    seed: int = 0,
    weighting: str = "steps",
    **options,
) -> tuple[AffinityMatrix | None, GroupResult]:
    """Train all tasks of `problem` once with the collector; returns (A[source, target] or None, result).

    `weighting` aggregates the collected steps (see `taskrel.affinity.collector`). With `epochs`
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
    collector = make_collector(method, every, **options)
    tasks = list(problem.tasks)
    result = problem.train(tasks, seed, callbacks=[collector] if collector else [])
    check_result(result, tasks, f"train(all tasks, seed={seed})")
    return (collector.matrix(weighting) if collector else None), result
