"""Per-agent data streams: each agent draws its samples from its own generator.

An agent's stream depends only on ``(seed, run, agent)`` and on the chunk sizes it is asked for,
so the vectorised simulator (which holds every agent's stream) and the multi-process engine
(where agent k holds only stream k) see exactly the same samples.

Convention: a chunk is ``(u, d)`` with regressors ``u`` (n, M) and targets ``d`` (n,), n
consecutive iterations of one agent.
"""

from __future__ import annotations

import numpy as np

from taskrel.errors import ConfigError, ShapeError

#: Samples drawn per call; both engines use this chunking, which fixes the random stream.
CHUNK = 256

LOSSES = ("squared", "logistic")


def agent_generator(seed: int, run: int, agent: int) -> np.random.Generator:
    """The generator of agent `agent`'s data in Monte-Carlo run `run` (independent of every other)."""
    return np.random.default_rng([int(seed), 2, int(run), int(agent)])


def model_generator(seed: int, run: int) -> np.random.Generator:
    """The generator of the true models of run `run` (shared knowledge of the simulated world)."""
    return np.random.default_rng([int(seed), 1, int(run)])


def chunk_sizes(iters: int, chunk: int = CHUNK) -> list[int]:
    """How `iters` iterations are cut into chunks (the same in every engine)."""
    return [min(chunk, iters - start) for start in range(0, iters, chunk)]


class LinearStream:
    """Streaming linear regression ``d(i) = u_iᵀ w° + v(i)``, ``u ~ N(0, σ_u² I_M)``, ``v ~ N(0, σ_v²)``."""

    loss = "squared"

    def __init__(self, model: np.ndarray, sigma_u: float, sigma_v: float, rng: np.random.Generator) -> None:
        self.model = np.asarray(model, dtype=np.float64)
        if self.model.ndim != 1:
            raise ShapeError(f"an agent's true model must be a vector (M,), got shape {self.model.shape}")
        if sigma_u <= 0 or sigma_v < 0:
            raise ConfigError(f"need σ_u > 0 and σ_v ≥ 0, got σ_u={sigma_u}, σ_v={sigma_v}")
        self.sigma_u, self.sigma_v, self.rng = float(sigma_u), float(sigma_v), rng

    def next_chunk(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        u = self.sigma_u * self.rng.standard_normal((n, self.model.size))
        v = self.sigma_v * self.rng.standard_normal(n)
        return u, u @ self.model + v


class SampleStream:
    """Samples drawn uniformly with replacement from one agent's own training set (x (n, M), y (n,))."""

    def __init__(self, x: np.ndarray, y: np.ndarray, loss: str, rng: np.random.Generator) -> None:
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.x, self.y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if self.x.ndim != 2 or self.y.shape != (self.x.shape[0],) or self.x.shape[0] == 0:
            raise ShapeError(f"need x (n, M) and y (n,) with n ≥ 1, got {self.x.shape} and {self.y.shape}")
        self.loss, self.rng = loss, rng

    def next_chunk(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rng.integers(0, self.x.shape[0], size=n)
        return self.x[idx], self.y[idx]
