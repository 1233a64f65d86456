"""In-process engine: many Monte-Carlo runs of all algorithms at once, on the same samples.

`simulate` holds the states of every algorithm, run and agent in one array (A, R, K, M) and
applies the update functions of `taskrel.decentral.algorithms` to it; with ``vectorised=False``
it instead steps one `Agent` at a time (the code each process runs in the distributed engine),
which is the per-agent reference for equality and throughput.

Metrics: network MSD ``(1/K) Σ_k ‖w_k,i - w_k°‖²`` against the TRUE models, per iteration,
reported in dB as ``10 log10`` of the mean over runs; Laplacian error ``‖L̂ - L‖₂²`` of the first
estimate (at the switch), for the neighbourhood estimator the algorithm uses and, for reference,
for the global GGL-constrained ML estimator on the same iterates and support.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from taskrel.decentral import algorithms as alg
from taskrel.decentral.agent import SHARED, Agent
from taskrel.decentral.estimators import (
    block_trace_covariance,
    laplacian_ml,
    neighbourhood_estimate,
    spectral_error,
)
from taskrel.decentral.streams import LinearStream, agent_generator, chunk_sizes
from taskrel.decentral.world import GMRFConfig, World, build_world, graph_of
from taskrel.errors import NonFiniteError


@dataclass
class SimulationResult:
    """Per-run curves and estimates; `summary()` is the stable JSON of ``taskrel gmrf simulate``."""

    config: GMRFConfig
    msd: np.ndarray  # (R, A, N) network MSD per run, algorithm, iteration (linear)
    laplacian_error: np.ndarray  # (R,) neighbourhood estimator at the switch
    laplacian_error_global: np.ndarray  # (R,) global constrained ML at the switch
    learned_laplacian: np.ndarray  # (R, K, K) last L̂
    final_models: np.ndarray  # (A, R, K, M)
    true_models: np.ndarray  # (R, K, M)
    adjacency: np.ndarray
    laplacian: np.ndarray

    def msd_db(self) -> np.ndarray:
        """(A, N) network MSD in dB, mean over runs."""
        return 10 * np.log10(self.msd.mean(axis=0))

    def steady_state_db(self, fraction: float = 0.1) -> dict[str, float]:
        """MSD in dB averaged over the last `fraction` of iterations and over runs."""
        n = self.msd.shape[-1]
        tail = self.msd[:, :, n - max(1, round(fraction * n)):]
        return {name: float(10 * np.log10(tail[:, a].mean())) for a, name in enumerate(alg.ALGORITHMS)}

    def summary(self) -> dict:
        return {
            "laplacian_error": float(self.laplacian_error.mean()),
            "laplacian_error_global": float(self.laplacian_error_global.mean()),
            "msd_db": self.steady_state_db(),
        }


def global_ml_error(models: np.ndarray, world: World) -> float:
    """``‖L̂ - L‖₂²`` of the global GGL-constrained ML estimate from models (K, M) on the graph's support."""
    fit = laplacian_ml(block_trace_covariance(models), "ggl", support=world.adjacency)
    return spectral_error(fit.laplacian, world.laplacian)


def simulate(
    config: GMRFConfig, *, vectorised: bool = True, progress: bool = False, reference: bool = True
) -> SimulationResult:
    """Run every algorithm of `ALGORITHMS` for `config.runs` Monte-Carlo runs (see module doc).

    ``reference=False`` skips the global ML fit made only for `laplacian_error_global` (NaN then),
    which dominates the cost at large K.
    """
    sched = config.schedule
    adjacency = graph_of(config)
    worlds = [build_world(config, r, adjacency) for r in range(config.runs)]
    alg.check_stability(worlds[0].laplacian, sched.mu_coop, config.eta, what="L (true)")
    runner = (_Vectorised if vectorised else _PerAgent)(config, worlds, reference)
    start = 0
    bar = tqdm(total=sched.iters, disable=not progress, desc="gmrf", unit="it")
    for n in chunk_sizes(sched.iters):
        runner.begin_chunk(n)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below, once
            for t in range(n):
                i = start + t + 1
                if sched.estimate_before(i):
                    runner.estimate(i)
                runner.step(i)
        start += n
        runner.check_finite(start)
        bar.update(n)
    bar.close()
    return runner.result()


class _Vectorised:
    def __init__(self, config: GMRFConfig, worlds: list[World], reference: bool = True) -> None:
        self.config, self.worlds, self.sched, self.reference = config, worlds, config.schedule, reference
        r, k, m, a = config.runs, config.agents, config.dim, len(alg.ALGORITHMS)
        eye = np.eye(k)
        self.weights = np.empty((a, r, k, k))
        self.weights[alg.ALGORITHMS.index("noncoop")] = eye
        self.weights[alg.ALGORITHMS.index("consensus")] = worlds[0].metropolis
        self.weights[alg.LEARNED] = eye
        self.weights[alg.ALGORITHMS.index("true")] = np.stack(
            [alg.laplacian_combination(w.laplacian, eye, self.sched.mu_coop, config.eta) for w in worlds]
        )
        self.streams = [
            [LinearStream(w.models[j], config.sigma_u, config.sigma_v, agent_generator(config.seed, run, j))
             for j in range(k)]
            for run, w in enumerate(worlds)
        ]  # fmt: skip
        self.true = np.stack([w.models for w in worlds])
        self.state = np.zeros((a, r, k, m))
        self.msd = np.zeros((r, a, self.sched.iters))
        self.errors: list[float] = []
        self.errors_global: list[float] = []
        self.learned = np.zeros((r, k, k))

    def begin_chunk(self, n: int) -> None:
        chunks = [[s.next_chunk(n) for s in row] for row in self.streams]
        self.u = np.stack([np.stack([c[0] for c in row]) for row in chunks])  # (R, K, n, M)
        self.d = np.stack([np.stack([c[1] for c in row]) for row in chunks])  # (R, K, n)
        self.t = 0

    def step(self, i: int) -> None:
        steps = self.sched.steps(i)[:, None, None, None]
        psi = alg.adapt(self.state, self.u[:, :, self.t], self.d[:, :, self.t], steps, "squared")
        self.t += 1
        self.state = alg.combine(self.weights, psi)
        err = self.state - self.true
        self.msd[:, :, i - 1] = np.einsum("arkm,arkm->ra", err, err) / self.config.agents

    def estimate(self, i: int) -> None:
        first = not self.errors
        eye = np.eye(self.config.agents)
        for r, world in enumerate(self.worlds):
            models = self.state[alg.LEARNED, r]
            lap = neighbourhood_estimate(models, world.adjacency, self.config.shrinkage, self.config.project_sign)
            alg.check_stability(lap, self.sched.mu_coop, self.config.eta)
            self.weights[alg.LEARNED, r] = alg.laplacian_combination(lap, eye, self.sched.mu_coop, self.config.eta)
            self.learned[r] = lap
            if first:
                self.errors.append(spectral_error(lap, world.laplacian))
                self.errors_global.append(global_ml_error(models, world) if self.reference else np.nan)

    def check_finite(self, i: int) -> None:
        alg.check_finite(self.state, i)

    def result(self) -> SimulationResult:
        w = self.worlds[0]
        return SimulationResult(
            self.config, self.msd, np.array(self.errors), np.array(self.errors_global), self.learned,
            self.state, self.true, w.adjacency, w.laplacian,
        )  # fmt: skip


class _PerAgent:
    """K `Agent` objects per run, stepped one at a time with in-memory neighbour exchange."""

    def __init__(self, config: GMRFConfig, worlds: list[World], reference: bool = True) -> None:
        self.config, self.worlds, self.reference = config, worlds, reference
        self.agents = [[Agent(k, config, w, r) for k in range(config.agents)] for r, w in enumerate(worlds)]
        self.errors: list[float] = []
        self.errors_global: list[float] = []

    def begin_chunk(self, n: int) -> None:
        for row in self.agents:
            for agent in row:
                agent.begin_chunk(n)

    def step(self, i: int) -> None:
        for row in self.agents:
            psis = [agent.adapt(i) for agent in row]
            for agent in row:
                psi_nbhd = np.zeros((psis[0].shape[0], len(agent.nbhd), self.config.dim))
                psi_nbhd[:, 0] = psis[agent.k][:, 0]
                for j, other in enumerate(agent.nbhd[1:], start=1):
                    psi_nbhd[SHARED, j] = psis[other][SHARED, 0]
                agent.combine(i, psi_nbhd)

    def estimate(self, i: int) -> None:
        first = not self.errors
        for row, world in zip(self.agents, self.worlds, strict=True):
            models = [agent.learned_model() for agent in row]
            rows = [agent.estimate_row(np.stack([models[j] for j in agent.nbhd])) for agent in row]
            for agent in row:
                theirs = np.zeros(len(agent.nbhd))
                for j, other in enumerate(agent.nbhd[1:], start=1):
                    theirs[j] = rows[other][row[other].nbhd.index(agent.k)]
                agent.set_learned_row(rows[agent.k], theirs)
            if first:
                lap = _assemble(row)
                self.errors.append(spectral_error(lap, world.laplacian))
                self.errors_global.append(global_ml_error(np.stack(models), world) if self.reference else np.nan)

    def check_finite(self, i: int) -> None:
        for row in self.agents:
            for agent in row:
                agent.check_finite(i)

    def result(self) -> SimulationResult:
        msd = np.stack([np.mean([np.stack(a.squared_error) for a in row], axis=0).T for row in self.agents])
        state = np.stack([np.stack([a.state[:, 0] for a in row], axis=1) for row in self.agents], axis=1)
        w = self.worlds[0]
        return SimulationResult(
            self.config, msd, np.array(self.errors), np.array(self.errors_global),
            np.stack([_assemble(row) for row in self.agents]), state,
            np.stack([x.models for x in self.worlds]), w.adjacency, w.laplacian,
        )  # fmt: skip


def _assemble(agents: list[Agent]) -> np.ndarray:
    """L̂ (K, K) from the agents' symmetrised rows (reporting only; no agent ever holds it)."""
    k = len(agents)
    lap = np.zeros((k, k))
    for agent in agents:
        lap[agent.k, agent.nbhd] = agent.learned_row
    return lap


def phase_one_models(config: GMRFConfig, iters: int | None = None) -> tuple[np.ndarray, list[World]]:
    """Only Phase I: non-cooperative LMS of every run and agent for `iters` (default ``config.switch``).

    Uses the same streams and update function as `simulate` (so the models equal `simulate`'s
    learned-graph iterates at the switch); returns models (R, K, M) and the runs' worlds. Cheaper
    when only the graph-learning error is studied.
    """
    n_iters = config.schedule.switch if iters is None else int(iters)
    adjacency = graph_of(config)
    worlds = [build_world(config, r, adjacency) for r in range(config.runs)]
    streams = [
        [LinearStream(w.models[j], config.sigma_u, config.sigma_v, agent_generator(config.seed, r, j))
         for j in range(config.agents)]
        for r, w in enumerate(worlds)
    ]  # fmt: skip
    state = np.zeros((config.runs, config.agents, config.dim))
    with np.errstate(over="ignore", invalid="ignore"):
        for n in chunk_sizes(n_iters):
            chunks = [[s.next_chunk(n) for s in row] for row in streams]
            u = np.stack([np.stack([c[0] for c in row]) for row in chunks])
            d = np.stack([np.stack([c[1] for c in row]) for row in chunks])
            for t in range(n):
                state = alg.adapt(state, u[:, :, t], d[:, :, t], config.mu, "squared")
    if not np.isfinite(state).all():
        raise NonFiniteError(f"non-cooperative LMS diverged within {n_iters} iterations (lower μ)")
    return state, worlds
