"""The simulated world of a GMRF experiment: configuration, graph, true Laplacian and true models."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from taskrel.decentral.algorithms import Schedule, check_step_size
from taskrel.decentral.graphs import (
    TOPOLOGIES,
    draw_models,
    laplacian,
    make_graph,
    metropolis_weights,
    read_graph,
)
from taskrel.decentral.streams import model_generator
from taskrel.errors import ConfigError


@dataclass(frozen=True)
class GMRFConfig:
    """Everything that defines a run; the same config gives the same numbers in every engine.

    Step sizes are dimensionless (``mu`` for Phase I / non-cooperative LMS, ``mu_coop`` for the
    cooperative phase, default ``mu``); ``eta`` is the coupling strength of the Laplacian
    regulariser; ``switch`` (default ``iters // 2``) is the last non-cooperative iteration of the
    learned-graph algorithm; ``update_every`` re-estimates L̂ periodically (multi-phase).
    ``sigma_u`` / ``sigma_v`` are standard deviations of the regressors and of the noise.
    ``graph`` names a CSV file holding the (K, K) weight matrix to use instead of a `topology`.
    """

    agents: int = 10
    dim: int = 50
    mu: float = 0.01
    eta: float = 0.1
    iters: int = 4000
    runs: int = 1
    seed: int = 0
    mu_coop: float | None = None
    switch: int | None = None
    update_every: int | None = None
    topology: str = "random"
    average_degree: float = 3.2
    weights: tuple[float, ...] = (1.0, 5.0)
    self_loops: float = 1.0
    sigma_u: float = 1.0
    sigma_v: float = 4.0
    shrinkage: float = 0.0
    project_sign: bool = False
    graph: str | None = None

    def __post_init__(self) -> None:
        if int(self.agents) != self.agents or self.agents < 2:
            raise ConfigError(f"need at least 2 agents, got K={self.agents}")
        if int(self.dim) != self.dim or self.dim < 1:
            raise ConfigError(f"model dimension M must be ≥ 1, got M={self.dim}")
        for name in ("mu", "eta", "sigma_u"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be > 0, got {name}={value}")
        if not (np.isfinite(self.sigma_v) and self.sigma_v >= 0):
            raise ConfigError(f"sigma_v must be ≥ 0, got {self.sigma_v}")
        if self.runs < 1:
            raise ConfigError(f"runs must be ≥ 1, got {self.runs}")
        if self.topology not in TOPOLOGIES:
            raise ConfigError(f"unknown topology {self.topology!r}; use one of {TOPOLOGIES}")
        if self.self_loops < 0:
            raise ConfigError(f"self_loops (V) must be ≥ 0, got {self.self_loops}")
        sched = self.schedule  # validates iters / switch / steps
        trace = self.dim * self.sigma_u**2
        text = f"M·σ_u² = {self.dim}·{self.sigma_u:g}²"
        for name, step in (("μ", sched.mu), ("μ'", sched.mu_coop)):
            check_step_size(step, trace, name=name, trace_text=text)

    @property
    def schedule(self) -> Schedule:
        switch = self.iters // 2 if self.switch is None else self.switch
        mu_coop = self.mu if self.mu_coop is None else self.mu_coop
        return Schedule(int(self.iters), int(switch), float(self.mu), float(mu_coop), self.update_every)

    def replace(self, **changes) -> GMRFConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["weights"] = list(self.weights)
        return out


@dataclass(frozen=True)
class World:
    """The graph shared by all runs and the true models of one run (simulation only)."""

    adjacency: np.ndarray  # (K, K) weights; also the communication graph
    laplacian: np.ndarray  # (K, K) true L = D - A + V
    metropolis: np.ndarray  # (K, K) consensus weights
    models: np.ndarray  # (K, M) true models W° of this run


def graph_of(config: GMRFConfig) -> np.ndarray:
    """The configuration's task graph (fixed across runs); `ConfigError` if it is disconnected."""
    if config.graph is not None:
        return read_graph(config.graph, config.agents)
    return make_graph(
        config.topology, config.agents, average_degree=config.average_degree, weights=config.weights, seed=config.seed
    )


def build_world(config: GMRFConfig, run: int, adjacency: np.ndarray | None = None) -> World:
    """Graph, true Laplacian and run `run`'s true models ``W° ~ N(0, L⁻¹ ⊗ I_M)``."""
    a = graph_of(config) if adjacency is None else adjacency
    lap = laplacian(a, config.self_loops if config.self_loops > 0 else None)
    models = draw_models(lap, config.dim, model_generator(config.seed, run))
    return World(a, lap, metropolis_weights(a), models)
