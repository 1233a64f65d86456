"""One agent: its data stream, its models (one per algorithm) and its rows of the combination matrices.

The multi-process engine runs one `Agent` per process; the simulator's per-agent loop runs K of
them in one process. The agent never sees another agent's data: it only receives adapted models
(``ψ``), current models (for graph learning) and scalars (symmetrisation) from its neighbours.
"""

from __future__ import annotations

import numpy as np

from taskrel.decentral import algorithms as alg
from taskrel.decentral.estimators import local_laplacian_row, symmetrise_edge
from taskrel.decentral.graphs import neighbourhood
from taskrel.decentral.streams import LinearStream, agent_generator
from taskrel.decentral.world import GMRFConfig, World

#: Algorithms whose adapted models are exchanged every iteration (all but the non-cooperative one).
SHARED = slice(1, None)


class Agent:
    """Agent `k` of Monte-Carlo run `run`. States are (A, 1, M); combination rows (A, 1, n), own index first."""

    def __init__(self, k: int, config: GMRFConfig, world: World, run: int = 0) -> None:
        self.k, self.config, self.schedule = k, config, config.schedule
        self.nbhd = neighbourhood(world.adjacency, k)
        self.true_model = world.models[k]
        rng = agent_generator(config.seed, run, k)
        self.stream = LinearStream(world.models[k], config.sigma_u, config.sigma_v, rng)
        n, a, m = len(self.nbhd), len(alg.ALGORITHMS), config.dim
        self.identity_row = np.zeros((1, n))
        self.identity_row[0, 0] = 1.0
        self.weights = np.zeros((a, 1, n))
        self.weights[alg.ALGORITHMS.index("noncoop")] = self.identity_row
        self.weights[alg.ALGORITHMS.index("consensus"), 0] = world.metropolis[k, self.nbhd]
        self.weights[alg.LEARNED] = self.identity_row
        true_rows = world.laplacian[k, self.nbhd][None, :]
        self.weights[alg.ALGORITHMS.index("true")] = alg.laplacian_combination(
            true_rows, self.identity_row, self.schedule.mu_coop, config.eta
        )
        self.state = np.zeros((a, 1, m))
        self.learned_row = np.zeros(n)  # symmetrised row of L̂ over the neighbourhood
        self.squared_error: list[np.ndarray] = []  # per iteration, (A,) ‖w_k - w_k°‖²
        self._u = self._d = None
        self._t = 0

    # data -------------------------------------------------------------------------------------
    def begin_chunk(self, n: int) -> None:
        self._u, self._d = self.stream.next_chunk(n)
        self._t = 0

    # one iteration ----------------------------------------------------------------------------
    def adapt(self, i: int) -> np.ndarray:
        """ψ for iteration `i` (A, 1, M) from the next sample of the current chunk."""
        u, d = self._u[self._t], self._d[self._t]
        self._t += 1
        return alg.adapt(self.state, u, d, self.schedule.steps(i)[:, None, None], "squared")

    def combine(self, i: int, psi_nbhd: np.ndarray) -> None:
        """New models from the adapted models of the neighbourhood (A, n, M), own row first."""
        self.state = alg.combine(self.weights, psi_nbhd)
        err = self.state[:, 0, :] - self.true_model
        self.squared_error.append(np.einsum("am,am->a", err, err))

    def check_finite(self, i: int) -> None:
        alg.check_finite(self.state, i, f"agent {self.k}: ")

    # graph learning ---------------------------------------------------------------------------
    def learned_model(self) -> np.ndarray:
        """The model sent to neighbours for graph learning: the learned-graph algorithm's current w_k (M,)."""
        return self.state[alg.LEARNED, 0].copy()

    def estimate_row(self, models_nbhd: np.ndarray) -> np.ndarray:
        """Own row of L̂' over the neighbourhood from the models (n, M) held, own first."""
        return local_laplacian_row(models_nbhd, self.config.shrinkage, self.config.project_sign)

    def set_learned_row(self, own_row: np.ndarray, theirs: np.ndarray) -> None:
        """Symmetrise with the neighbours' entries ``L̂'_lk`` and switch to ``I - μ'η L̂`` (local stability check)."""
        row = np.empty_like(own_row)
        row[0] = own_row[0]
        for j in range(1, row.size):
            row[j] = symmetrise_edge(own_row[j], theirs[j])
        alg.local_stability_bound(row, self.schedule.mu_coop, self.config.eta, self.k)
        self.learned_row = row
        self.weights[alg.LEARNED] = alg.laplacian_combination(
            row[None, :], self.identity_row, self.schedule.mu_coop, self.config.eta
        )
