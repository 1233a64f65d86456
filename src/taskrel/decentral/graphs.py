"""Task graphs and the GMRF prior on the agents' true models.

Conventions
-----------
* A graph on K agents is a symmetric, non-negative **weight matrix** ``A`` (K, K) with zero
  diagonal; ``A[k, l] > 0`` means agents k and l are neighbours (they can talk) and are related
  with strength ``A[k, l]``.
* Its **generalised Laplacian** (GGL) is ``L = D - A + V`` with ``D = diag(A 1)`` and
  ``V = diag(v) >= 0`` (self-loops); with ``v = 0`` it is the **combinatorial** Laplacian (CGL),
  whose null space contains the all-ones vector.
* Models are stacked as rows: ``W`` has shape (K, M), row k is agent k's model ``w_k``. The prior
  is ``W° ~ N(0, L⁻¹ ⊗ I_M)``: every column of ``W°`` is an independent draw of a K-variate
  Gaussian with precision ``L`` (for a CGL, covariance ``L⁺``, the pseudo-inverse).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from taskrel.errors import ConfigError, NonFiniteError, ShapeError

TOPOLOGIES = ("random", "erdos_renyi", "regular", "hub")


def _check_agents(num_agents: int) -> None:
    if int(num_agents) != num_agents or num_agents < 2:
        raise ConfigError(f"a task graph needs at least 2 agents, got K={num_agents}")


def check_weights(adjacency: np.ndarray, name: str = "adjacency") -> np.ndarray:
    """Validate a weight matrix (square, finite, symmetric, non-negative, zero diagonal); float64 copy."""
    a = np.array(adjacency, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ShapeError(f"{name} must be a square (K, K) matrix, got shape {a.shape}")
    _check_agents(a.shape[0])
    if not np.isfinite(a).all():
        i, j = np.argwhere(~np.isfinite(a))[0]
        raise NonFiniteError(f"{name}[{i}, {j}] is {a[i, j]}")
    if not np.allclose(a, a.T, atol=1e-12, rtol=0):
        raise ConfigError(f"{name} must be symmetric (undirected graph)")
    if (a < 0).any():
        i, j = np.argwhere(a < 0)[0]
        raise ConfigError(f"{name}[{i}, {j}] = {a[i, j]} is negative; edge weights must be ≥ 0")
    if np.any(np.diag(a) != 0):
        raise ConfigError(f"{name} must have a zero diagonal (self-loops go into V, not A)")
    return a


def _reachable(adjacency: np.ndarray) -> np.ndarray:
    """Boolean mask of the agents reachable from agent 0 (breadth-first search on ``adjacency != 0``)."""
    support = np.asarray(adjacency) != 0
    seen = np.zeros(support.shape[0], bool)
    seen[0] = True
    frontier = [0]
    while frontier:
        nxt = np.flatnonzero(support[frontier].any(axis=0) & ~seen)
        seen[nxt] = True
        frontier = list(nxt)
    return seen


def is_connected(adjacency: np.ndarray) -> bool:
    """True when the graph with edges ``adjacency != 0`` is connected."""
    return bool(_reachable(adjacency).all())


def require_connected(adjacency: np.ndarray) -> None:
    """Raise `ConfigError` naming the unreachable agents when the graph is disconnected."""
    seen = _reachable(adjacency)
    if not seen.all():
        lost = np.flatnonzero(~seen).tolist()
        raise ConfigError(f"the task graph is disconnected: agents {lost} cannot be reached from agent 0")


def neighbours(adjacency: np.ndarray, k: int) -> list[int]:
    """Agent k's neighbours (sorted, k excluded)."""
    return np.flatnonzero(np.asarray(adjacency)[k] != 0).tolist()


def neighbourhood(adjacency: np.ndarray, k: int) -> list[int]:
    """``N_k``: agent k first, then its neighbours in increasing order (the local index convention)."""
    return [k, *neighbours(adjacency, k)]


def _weights_on(support: np.ndarray, weights: Sequence[float] | float, rng: np.random.Generator) -> np.ndarray:
    """Put weights drawn uniformly from the set `weights` (or one constant) on a boolean support."""
    upper = np.triu(support, 1)
    values = np.asarray(weights, dtype=np.float64).ravel()
    if values.size == 0 or (values <= 0).any() or not np.isfinite(values).all():
        raise ConfigError(f"edge weights must be positive and finite, got {weights}")
    a = np.zeros(support.shape)
    a[upper] = rng.choice(values, size=int(upper.sum()))
    return a + a.T


def random_graph(
    num_agents: int,
    *,
    edges: int | None = None,
    max_degree: int | None = None,
    weights: Sequence[float] | float = (1.0, 5.0),
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """A connected random graph: a random spanning tree plus random extra edges, degrees capped.

    Default `edges` is about 1.6 K; returns the weight matrix ``A`` (K, K).
    """
    _check_agents(num_agents)
    rng = np.random.default_rng(seed)
    k = int(num_agents)
    max_degree = k - 1 if max_degree is None else int(max_degree)
    if max_degree < 2 and k > 2:
        raise ConfigError(f"max_degree must be ≥ 2 for a connected graph on {k} agents, got {max_degree}")
    edges = max(k - 1, round(1.6 * k)) if edges is None else int(edges)
    edges = min(edges, k * (k - 1) // 2)
    if edges < k - 1:
        raise ConfigError(f"a connected graph on {k} agents needs ≥ {k - 1} edges, got {edges}")
    support = np.zeros((k, k), bool)
    order = rng.permutation(k)
    for i in range(1, k):  # random tree respecting the degree cap
        deg = support.sum(axis=1)
        choices = [j for j in order[:i] if deg[j] < max_degree]
        j = rng.choice(choices)
        support[order[i], j] = support[j, order[i]] = True
    candidates = [(i, j) for i in range(k) for j in range(i + 1, k) if not support[i, j]]
    for idx in rng.permutation(len(candidates)):
        if support.sum() // 2 >= edges:
            break
        i, j = candidates[idx]
        deg = support.sum(axis=1)
        if deg[i] < max_degree and deg[j] < max_degree:
            support[i, j] = support[j, i] = True
    return _weights_on(support, weights, rng)


def erdos_renyi(
    num_agents: int, p: float, *, edges: int | None = None, weights: Sequence[float] | float = 1.0,
    seed: int | np.random.Generator = 0, max_tries: int = 1000,
) -> np.ndarray:
    """Erdős–Rényi G(K, p), or G(K, m) with exactly `edges` edges, redrawn until connected."""
    _check_agents(num_agents)
    if not 0 < p <= 1:
        raise ConfigError(f"edge probability p must be in (0, 1], got {p}")
    rng = np.random.default_rng(seed)
    k = int(num_agents)
    iu = np.triu_indices(k, 1)
    if edges is not None and not k - 1 <= edges <= iu[0].size:
        raise ConfigError(f"a connected graph on {k} agents has between {k - 1} and {iu[0].size} edges, got {edges}")
    for _ in range(max_tries):
        if edges is None:
            upper = np.triu(rng.random((k, k)) < p, 1)
        else:
            upper = np.zeros((k, k), bool)
            pick = rng.choice(iu[0].size, size=int(edges), replace=False)
            upper[iu[0][pick], iu[1][pick]] = True
        support = upper | upper.T
        if is_connected(support):
            return _weights_on(support, weights, rng)
    raise ConfigError(f"G({k}, {p}) was disconnected in {max_tries} draws; raise p")


def regular_graph(
    num_agents: int, degree: int, *, weights: Sequence[float] | float = 1.0, seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """A connected random ``degree``-regular graph (ring lattice with random relabelling).

    Each agent is joined to its ``degree // 2`` nearest agents on each side of a ring (``degree``
    even), or additionally to the opposite agent (``degree`` odd, K even).
    """
    _check_agents(num_agents)
    k, d = int(num_agents), int(degree)
    if not 2 <= d < k or (d % 2 and k % 2):
        raise ConfigError(f"no {d}-regular ring lattice on {k} agents (need 2 ≤ d < K, d·K even)")
    rng = np.random.default_rng(seed)
    support = np.zeros((k, k), bool)
    for i in range(k):
        for s in range(1, d // 2 + 1):
            support[i, (i + s) % k] = support[(i + s) % k, i] = True
        if d % 2:
            support[i, (i + k // 2) % k] = support[(i + k // 2) % k, i] = True
    perm = rng.permutation(k)
    support = support[np.ix_(perm, perm)]
    return _weights_on(support, weights, rng)


def hub_graph(
    num_agents: int, average_degree: float, *, hubs: int = 1, weights: Sequence[float] | float = 1.0,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """A hub-dominated graph: `hubs` agents joined to everyone, the rest a sparse random remainder.

    Extra edges among non-hub agents are added at random until the average degree reaches
    `average_degree` (rounded to a whole number of edges).
    """
    _check_agents(num_agents)
    k = int(num_agents)
    rng = np.random.default_rng(seed)
    target = round(average_degree * k / 2)
    hub_edges = hubs * (k - hubs) + hubs * (hubs - 1) // 2
    if not 1 <= hubs < k or target < hub_edges:
        raise ConfigError(
            f"average degree {average_degree} is too low for {hubs} hub(s) on {k} agents "
            f"(hubs alone give {2 * hub_edges / k:.2f})"
        )
    support = np.zeros((k, k), bool)
    support[:hubs, :] = support[:, :hubs] = True
    np.fill_diagonal(support, False)
    rest = [(i, j) for i in range(hubs, k) for j in range(i + 1, k)]
    for idx in rng.permutation(len(rest))[: max(0, target - hub_edges)]:
        i, j = rest[idx]
        support[i, j] = support[j, i] = True
    perm = rng.permutation(k)
    return _weights_on(support[np.ix_(perm, perm)], weights, rng)


def make_graph(
    topology: str, num_agents: int, *, average_degree: float = 3.2, weights: Sequence[float] | float = (1.0, 5.0),
    seed: int = 0,
) -> np.ndarray:
    """One of `TOPOLOGIES` by name, with (about) the given average degree; weight matrix (K, K)."""
    k = int(num_agents)
    _check_agents(k)
    if topology == "random":
        return random_graph(k, edges=round(average_degree * k / 2), weights=weights, seed=seed)
    if topology == "erdos_renyi":
        edges = round(average_degree * k / 2)
        return erdos_renyi(k, min(1.0, average_degree / (k - 1)), edges=edges, weights=weights, seed=seed)
    if topology == "regular":
        return regular_graph(k, round(average_degree), weights=weights, seed=seed)
    if topology == "hub":
        return hub_graph(k, average_degree, weights=weights, seed=seed)
    raise ConfigError(f"unknown topology {topology!r}; use one of {TOPOLOGIES}")


def laplacian(adjacency: np.ndarray, self_loops: np.ndarray | float | None = 1.0) -> np.ndarray:
    """``L = D - A + V``: GGL with ``V = diag(self_loops)``; CGL with ``self_loops=None`` or 0."""
    a = check_weights(adjacency)
    lap = np.diag(a.sum(axis=1)) - a
    if self_loops is not None:
        v = np.broadcast_to(np.asarray(self_loops, dtype=np.float64), (a.shape[0],))
        if (v < 0).any() or not np.isfinite(v).all():
            raise ConfigError(f"self-loop weights V must be finite and ≥ 0, got {v}")
        lap = lap + np.diag(v)
    return lap


def metropolis_weights(adjacency: np.ndarray) -> np.ndarray:
    """Metropolis–Hastings combination matrix (symmetric, doubly stochastic) on the graph's support."""
    support = np.asarray(adjacency) != 0
    deg = support.sum(axis=1)
    c = np.where(support, 1.0 / (1.0 + np.maximum(deg[:, None], deg[None, :])), 0.0)
    np.fill_diagonal(c, 1.0 - c.sum(axis=1))
    return c


def draw_models(lap: np.ndarray, dim: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """True models ``W° ~ N(0, L⁻¹ ⊗ I_M)`` (pseudo-inverse for a singular CGL); shape (K, M)."""
    if int(dim) != dim or dim < 1:
        raise ConfigError(f"model dimension M must be ≥ 1, got {dim}")
    lap = np.asarray(lap, dtype=np.float64)
    rng = np.random.default_rng(seed)
    evals, evecs = np.linalg.eigh(lap)
    if evals.min() < -1e-9 * max(1.0, evals.max()):
        raise ConfigError(f"L must be positive semi-definite, smallest eigenvalue {evals.min():.3g}")
    scale = np.where(evals > 1e-10 * evals.max(), 1.0 / np.sqrt(np.clip(evals, 1e-300, None)), 0.0)
    z = rng.standard_normal((lap.shape[0], int(dim)))
    return evecs @ (scale[:, None] * z)
