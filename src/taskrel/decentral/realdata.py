"""Decentralised learning on real multi-task data: one agent per task, data never leaves its agent.

Each agent runs SGD on samples drawn from its own training split (`streams.SampleStream`) with the
update functions of `taskrel.decentral.algorithms`; the algorithms are non-cooperative SGD,
consensus (ATC with Metropolis weights on the communication graph) and learned-graph diffusion
(non-cooperative until ``switch``, then ``I - μη L̂`` with L̂ learned from the agents' models).

Real models are not zero-mean, so by default the learned graph is used through its combinatorial
part only (``laplacian_part="combinatorial"``: ``L̂ ← D(Â) - Â`` with ``Â = max(-offdiag L̂, 0)``),
which pulls related agents together without shrinking every model toward 0. With `normalise`, L̂ is
scaled to ``λ_max(L̂) = 1`` (the scale of an ML precision follows the models' scale), so ``η`` is a
dimensionless coupling and the diffusion is stable for ``μη < 2``. The estimator is the
CGL-constrained ML on the communication graph's support (``estimator="global"``) or the
decentralised neighbourhood estimator with sign projection (``"neighbourhood"``).

Models are affine: a constant feature 1 is appended to x. Reported models are averages of the
iterates over the last `average` fraction of iterations (the same for every algorithm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from taskrel.decentral import algorithms as alg
from taskrel.decentral.estimators import block_trace_covariance, laplacian_ml, neighbourhood_estimate
from taskrel.decentral.graphs import metropolis_weights, require_connected
from taskrel.decentral.streams import SampleStream, agent_generator, chunk_sizes
from taskrel.errors import ConfigError, NonFiniteError

REAL_ALGORITHMS = ("noncoop", "consensus", "learned")


@dataclass(frozen=True)
class RealConfig:
    """Step size `mu`, coupling `eta`, `iters` SGD steps per agent, learned graph after `switch`."""

    mu: float = 0.02
    eta: float = 1.0
    iters: int = 4000
    switch: int | None = None
    estimator: str = "global"
    laplacian_part: str = "combinatorial"
    shrinkage: float = 0.0
    normalise: bool = True
    average: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.mu > 0 and self.eta > 0 and self.iters >= 2):
            raise ConfigError(f"need mu > 0, eta > 0, iters ≥ 2; got {self.mu}, {self.eta}, {self.iters}")
        if self.estimator not in ("global", "neighbourhood"):
            raise ConfigError(f"estimator must be 'global' or 'neighbourhood', got {self.estimator!r}")
        if self.laplacian_part not in ("combinatorial", "generalised"):
            raise ConfigError(f"laplacian_part must be 'combinatorial' or 'generalised', got {self.laplacian_part!r}")
        if not 0 < self.average <= 1:
            raise ConfigError(f"average must be in (0, 1], got {self.average}")


@dataclass
class RealResult:
    models: dict[str, np.ndarray]  # algorithm → (K, d + 1) averaged models
    learned_laplacian: np.ndarray  # (K, K) as used (after taking the requested part)


def with_bias(x: np.ndarray) -> np.ndarray:
    """Append the constant feature 1 (affine models)."""
    x = np.asarray(x, np.float64)
    return np.hstack([x, np.ones((x.shape[0], 1))])


def learn_graph(models: np.ndarray, adjacency: np.ndarray, config: RealConfig) -> np.ndarray:
    """L̂ from the agents' models (K, M) on the communication graph's support."""
    if config.estimator == "global":
        kind = "cgl" if config.laplacian_part == "combinatorial" else "ggl"
        cov = block_trace_covariance(models)
        lap = laplacian_ml(cov, kind, support=adjacency, shrinkage=config.shrinkage).laplacian
    else:
        lap = neighbourhood_estimate(models, adjacency, config.shrinkage, project_sign=True)
    if config.laplacian_part == "combinatorial":
        a = np.clip(-(lap - np.diag(np.diag(lap))), 0.0, None)
        lap = np.diag(a.sum(axis=1)) - a
    if config.normalise:
        lap = lap / np.linalg.eigvalsh(lap).max()
    return lap


def run_real(
    train: list[tuple[np.ndarray, np.ndarray]], adjacency: np.ndarray, loss: str, config: RealConfig,
    etas: Sequence[float] | None = None,
) -> RealResult:
    """Run the algorithms on per-agent training sets ``[(x_k, y_k)]`` (x without the bias column).

    With `etas`, the learned-graph algorithm runs once per coupling, side by side on the same samples
    (models ``"learned@<eta>"``), so η can be chosen on validation data; otherwise with ``config.eta``.
    """
    k = len(train)
    a = np.asarray(adjacency, float)
    if a.shape != (k, k):
        raise ConfigError(f"adjacency must be ({k}, {k}) for {k} agents, got {a.shape}")
    require_connected(a)
    streams = [
        SampleStream(with_bias(x), y, loss, agent_generator(config.seed, 0, j)) for j, (x, y) in enumerate(train)
    ]
    m = streams[0].x.shape[1]
    switch = config.iters // 2 if config.switch is None else config.switch
    eye = np.eye(k)
    etas = [config.eta] if etas is None else [float(e) for e in etas]
    names = ["noncoop", "consensus", *(["learned"] if len(etas) == 1 and etas[0] == config.eta else
                                       [f"learned@{e:g}" for e in etas])]  # fmt: skip
    weights = np.stack([eye, metropolis_weights(a), *[eye] * len(etas)])
    state = np.zeros((len(names), k, m))
    total = np.zeros_like(state)
    tail_start = config.iters - max(1, round(config.average * config.iters))
    lap = np.zeros((k, k))
    learned = 2  # first learned-graph slot; all slots share Phase I, hence the same L̂
    i = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for n in chunk_sizes(config.iters):
            chunks = [s.next_chunk(n) for s in streams]
            u = np.stack([c[0] for c in chunks])
            d = np.stack([c[1] for c in chunks])
            for t in range(n):
                i += 1
                if i == switch + 1:
                    lap = learn_graph(state[learned], a, config)
                    for j, eta in enumerate(etas):
                        alg.check_stability(lap, config.mu, eta)
                        weights[learned + j] = alg.laplacian_combination(lap, eye, config.mu, eta)
                psi = alg.adapt(state, u[:, t], d[:, t], config.mu, loss)
                state = alg.combine(weights, psi)
                if i > tail_start:
                    total += state
            if not np.isfinite(state).all():
                raise NonFiniteError(f"SGD diverged by iteration {i}; lower mu")
    average = total / (config.iters - tail_start)
    return RealResult({name: average[j] for j, name in enumerate(names)}, lap)


def predict(models: np.ndarray, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Scores ``x_k w_k`` per agent (linear predictions, or logits for the logistic loss)."""
    return [with_bias(x) @ w for x, w in zip(xs, models, strict=True)]
