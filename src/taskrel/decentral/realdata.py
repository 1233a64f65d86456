"""Decentralised learning on real multi-task data: one agent per task, data never leaves its agent.

This module is the in-process (``sim``) engine on real data and holds the per-agent pieces the
process engine (`taskrel.decentral.distributed`, ``dist``) runs row by row, so both engines compute
the same numbers. Each agent runs SGD on samples drawn from its own training split
(`streams.SampleStream`) with the update functions of `taskrel.decentral.algorithms`; the
algorithms are non-cooperative SGD, consensus (ATC with Metropolis weights on the communication
graph) and learned-graph diffusion (non-cooperative until ``switch``, then ``I - μη L̂`` with L̂
learned from the agents' models).

Real models are not zero-mean, so by default the learned graph is used through its combinatorial
part only (``laplacian_part="combinatorial"``: ``L̂ ← D(Â) - Â`` with ``Â = max(-offdiag L̂, 0)``),
which pulls related agents together without shrinking every model toward 0. The scale of an ML
precision follows the models' scale, so L̂ is normalised: ``"lambda_max"`` scales it to
``λ_max(L̂) = 1`` (needs all of L̂: in-process only), ``"gershgorin"`` divides it by
``max_k Σ_l |L̂_kl|`` (a max over agents, which the agents find by max-consensus with their
neighbours), so ``λ_max(L̂) ≤ 1``. Either way ``η`` is a dimensionless coupling and the diffusion
is stable for ``μη < 2``, which is checked before any iteration. The estimator is the
CGL-constrained ML on the communication graph's support (``estimator="global"``, in-process only)
or the decentralised neighbourhood estimator with sign projection (``"neighbourhood"``).

Stability of SGD is checked per agent before any iteration: ``μ·tr(R̂_k) < 2`` with
``tr(R̂_k) = mean ‖x̃‖²`` over agent k's training rows (x̃ with the constant 1; ¼ of it for the
logistic loss, whose curvature is at most ¼).

Models are affine: a constant feature 1 is appended to x. Reported models are averages of the
iterates over the last `average` fraction of iterations (the same for every algorithm). Test
metric per agent on its own test split: MSE (squared loss) or AUC (logistic loss; agents whose
test split has one class only are left out), reported as the mean over agents.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from taskrel.decentral import algorithms as alg
from taskrel.decentral.estimators import (
    block_trace_covariance,
    laplacian_ml,
    local_laplacian_row,
    neighbourhood_estimate,
    symmetrise_edge,
)
from taskrel.decentral.graphs import metropolis_weights, neighbourhood, require_connected
from taskrel.decentral.streams import SampleStream, agent_generator, chunk_sizes
from taskrel.errors import ConfigError, DataError, NonFiniteError

REAL_ALGORITHMS = ("noncoop", "consensus", "learned")
LEARNED = REAL_ALGORITHMS.index("learned")
NORMALISATIONS = ("lambda_max", "gershgorin", "none")
METRICS = {"squared": "test_mse", "logistic": "test_auc"}


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
    normalise: str = "lambda_max"
    average: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.mu > 0 and self.eta > 0 and self.iters >= 2):
            raise ConfigError(f"need mu > 0, eta > 0, iters ≥ 2; got {self.mu}, {self.eta}, {self.iters}")
        if not 1 <= self.switch_at < self.iters:
            raise ConfigError(f"switch must be in [1, iters) = [1, {self.iters}), got {self.switch}")
        if self.estimator not in ("global", "neighbourhood"):
            raise ConfigError(f"estimator must be 'global' or 'neighbourhood', got {self.estimator!r}")
        if self.laplacian_part not in ("combinatorial", "generalised"):
            raise ConfigError(f"laplacian_part must be 'combinatorial' or 'generalised', got {self.laplacian_part!r}")
        if self.normalise not in NORMALISATIONS:
            raise ConfigError(f"normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")
        if not 0 < self.average <= 1:
            raise ConfigError(f"average must be in (0, 1], got {self.average}")
        self.check_diffusion(self.eta)

    @property
    def switch_at(self) -> int:
        """The last non-cooperative iteration of the learned-graph algorithm (default ``iters // 2``)."""
        return self.iters // 2 if self.switch is None else int(self.switch)

    def check_diffusion(self, eta: float) -> None:
        """With a normalised L̂ (``λ_max ≤ 1``) the diffusion bound ``μ·η·λ_max(L̂) < 2`` holds iff ``μη < 2``."""
        if self.normalise != "none" and not self.mu * eta < 2:
            raise ConfigError(
                f"unstable Laplacian diffusion: μ·η = {self.mu:g}·{eta:g} = {self.mu * eta:.4g} ≥ 2, and the "
                f"diffusion needs μ·η·λ_max(L̂) < 2 with L̂ normalised to λ_max ≤ 1; a stable choice is "
                f"η = {1.0 / self.mu:.3g} (= 1/μ)"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RealResult:
    models: dict[str, np.ndarray]  # algorithm → (K, d + 1) averaged models
    learned_laplacian: np.ndarray  # (K, K) as used (after taking the requested part)


def with_bias(x: np.ndarray) -> np.ndarray:
    """Append the constant feature 1 (affine models)."""
    x = np.asarray(x, np.float64)
    return np.hstack([x, np.ones((x.shape[0], 1))])


def check_agent_step(mu: float, x: np.ndarray, loss: str, where: str) -> float:
    """Raise `ConfigError` unless ``μ·tr(R̂) < 2`` for one agent's training inputs `x` (with bias)."""
    factor = 0.25 if loss == "logistic" else 1.0
    trace = factor * float(np.mean(np.einsum("nm,nm->n", x, x)))
    text = f"{'¼·' if factor != 1 else ''}mean ‖x‖² over its {x.shape[0]} training rows (with the constant 1)"
    return alg.check_step_size(mu, trace, name="μ", trace_text=text, where=where)


def combinatorial_row(row: np.ndarray) -> np.ndarray:
    """One agent's row of ``D(Â) - Â`` from its row of L̂ (own entry first): ``Â = max(-offdiag, 0)``."""
    a = np.maximum(-row[1:], 0.0)
    return np.concatenate([[a.sum()], -a])


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
    if config.normalise == "lambda_max":
        lap = lap / np.linalg.eigvalsh(lap).max()
    elif config.normalise == "gershgorin":
        lap = lap / gershgorin_scale(np.abs(lap).sum(axis=1).max())
    return lap


def gershgorin_scale(radius: float) -> float:
    """The divisor of the ``"gershgorin"`` normalisation: ``max_k Σ_l |L̂_kl|`` (1 when L̂ = 0: nothing to scale)."""
    return float(radius) if radius > 0 else 1.0


def run_real(
    train: list[tuple[np.ndarray, np.ndarray]],
    adjacency: np.ndarray,
    loss: str,
    config: RealConfig,
    etas: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> RealResult:
    """Run the algorithms on per-agent training sets ``[(x_k, y_k)]`` (x without the bias column).

    With `etas`, the learned-graph algorithm runs once per coupling, side by side on the same samples
    (models ``"learned@<eta>"``), so η can be chosen on validation data; otherwise with ``config.eta``.
    `names` (one per agent) only label error messages.
    """
    k = len(train)
    a = np.asarray(adjacency, float)
    if a.shape != (k, k):
        raise ConfigError(f"adjacency must be ({k}, {k}) for {k} agents, got {a.shape}")
    require_connected(a)
    streams = [
        SampleStream(with_bias(x), y, loss, agent_generator(config.seed, 0, j)) for j, (x, y) in enumerate(train)
    ]
    dims = {s.x.shape[1] - 1 for s in streams}
    if len(dims) != 1:
        raise DataError(f"the agents' inputs disagree on the number of features: {sorted(dims)}")
    traces = [np.mean(np.einsum("nm,nm->n", s.x, s.x)) for s in streams]
    worst = int(np.argmax(traces))  # its bound is the network's: 1/tr there is stable for every agent
    label = "" if names is None else f" ({names[worst]})"
    check_agent_step(config.mu, streams[worst].x, loss, f"agent {worst}{label}: ")
    m = streams[0].x.shape[1]
    switch = config.switch_at
    eye = np.eye(k)
    etas = [config.eta] if etas is None else [float(e) for e in etas]
    for eta in etas:
        config.check_diffusion(eta)
    algorithms = ["noncoop", "consensus", *(["learned"] if len(etas) == 1 and etas[0] == config.eta else
                                            [f"learned@{e:g}" for e in etas])]  # fmt: skip
    weights = np.stack([eye, metropolis_weights(a), *[eye] * len(etas)])
    state = np.zeros((len(algorithms), k, m))
    total = np.zeros_like(state)
    tail_start = config.iters - max(1, round(config.average * config.iters))
    lap = np.zeros((k, k))
    learned = LEARNED  # first learned-graph slot; all slots share Phase I, hence the same L̂
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
    return RealResult({name: average[j] for j, name in enumerate(algorithms)}, lap)


def predict(models: np.ndarray, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Scores ``x_k w_k`` per agent (linear predictions, or logits for the logistic loss)."""
    return [with_bias(x) @ w for x, w in zip(xs, models, strict=True)]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count ½); NaN when `labels` (0/1) hold one class only."""
    pos = np.asarray(labels) == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def agent_scores(models: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, loss: str) -> np.ndarray:
    """One agent's test metric per algorithm from its models (A, d + 1): MSE or AUC (NaN: undefined)."""
    scores = with_bias(x_test) @ np.asarray(models).T  # (n, A)
    if loss == "squared":
        return np.mean((scores - np.asarray(y_test, float)[:, None]) ** 2, axis=0)
    return np.array([auc(scores[:, a], y_test) for a in range(scores.shape[1])])


def summarise(loss: str, scores: np.ndarray, laplacian: np.ndarray) -> dict:
    """The JSON of ``taskrel gmrf run`` on real data from per-agent scores (K, A) and L̂ (K, K).

    ``{"algorithms": {name: {"test_mse" | "test_auc": mean over agents}}, "laplacian": rows of L̂}``.
    """
    metric = METRICS[loss]
    defined = ~np.isnan(scores).any(axis=1)
    if not defined.any():
        raise DataError("no agent's test split has both classes: the test AUC is undefined everywhere")
    mean = scores[defined].mean(axis=0)
    return {"algorithms": {name: {metric: float(mean[a])} for a, name in enumerate(REAL_ALGORITHMS)},
            "laplacian": np.asarray(laplacian, float).tolist()}  # fmt: skip


def run_source(source, adjacency: np.ndarray, config: RealConfig) -> dict:
    """The in-process (``sim``) engine on a data source (`taskrel.decentral.sources`): the run's summary.

    Loads every agent's data into this one process (the process engine loads one agent per
    process) and returns `summarise`'s JSON for the test splits.
    """
    data = source.load_all()
    result = run_real([(d.x_train, d.y_train) for d in data], adjacency, source.loss, config, names=source.names)
    models = np.stack([result.models[name] for name in REAL_ALGORITHMS], axis=1)  # (K, A, d + 1)
    scores = np.stack([agent_scores(w, d.x_test, d.y_test, source.loss) for w, d in zip(models, data, strict=True)])
    return summarise(source.loss, scores, result.learned_laplacian)


class RealAgent:
    """Agent k of `run_real` holding only its own data: what one process of the ``dist`` engine runs.

    States are (A, 1, M) in `REAL_ALGORITHMS` order, combination rows (A, 1, n) over the
    neighbourhood ``N_k`` (own index first); the updates are `run_real`'s, row by row. Needs the
    decentralised graph learning: ``estimator="neighbourhood"`` with ``normalise="gershgorin"``.
    """

    def __init__(self, k: int, data, loss: str, adjacency: np.ndarray, config: RealConfig) -> None:
        if config.estimator != "neighbourhood" or config.normalise != "gershgorin":
            raise ConfigError(
                "agents in separate processes learn the graph with estimator='neighbourhood' and "
                f"normalise='gershgorin' (no agent holds all models or all of L̂); got {config.estimator!r}, "
                f"{config.normalise!r}"
            )
        self.k, self.data, self.loss, self.config = k, data, loss, config
        self.nbhd = neighbourhood(adjacency, k)
        x = with_bias(data.x_train)
        check_agent_step(config.mu, x, loss, f"agent {k} ({data.name}): ")
        self.stream = SampleStream(x, data.y_train, loss, agent_generator(config.seed, 0, k))
        n, m = len(self.nbhd), x.shape[1]
        self.identity = np.zeros((1, n))
        self.identity[0, 0] = 1.0
        self.weights = np.stack([self.identity, metropolis_weights(adjacency)[k, self.nbhd][None], self.identity])
        self.state = np.zeros((len(REAL_ALGORITHMS), 1, m))
        self.total = np.zeros_like(self.state)
        self.tail_start = config.iters - max(1, round(config.average * config.iters))
        self.row = np.zeros(n)  # this agent's row of L̂ over N_k, as used
        self._u = self._d = None
        self._t = 0

    @property
    def features(self) -> int:
        return self.state.shape[-1] - 1

    def begin_chunk(self, n: int) -> None:
        self._u, self._d = self.stream.next_chunk(n)
        self._t = 0

    def adapt(self) -> np.ndarray:
        """ψ (A, 1, M) from the next sample of the current chunk."""
        u, d = self._u[self._t], self._d[self._t]
        self._t += 1
        return alg.adapt(self.state, u, d, self.config.mu, self.loss)

    def combine(self, i: int, psi_nbhd: np.ndarray) -> None:
        """New models from the neighbourhood's adapted models (A, n, M), own first; tail averaging."""
        self.state = alg.combine(self.weights, psi_nbhd)
        if i > self.tail_start:
            self.total += self.state

    def check_finite(self, i: int) -> None:
        if not np.isfinite(self.state).all():
            raise NonFiniteError(f"agent {self.k} ({self.data.name}): SGD diverged by iteration {i}; lower mu")

    def graph_model(self) -> np.ndarray:
        """The model sent to neighbours for graph learning (the learned-graph algorithm's current w_k)."""
        return self.state[LEARNED, 0].copy()

    def estimate_row(self, models_nbhd: np.ndarray) -> np.ndarray:
        """Own row of L̂' over N_k from the neighbourhood's models (n, M), own first."""
        return local_laplacian_row(models_nbhd, self.config.shrinkage, project_sign=True)

    def set_row(self, own: np.ndarray, theirs: np.ndarray) -> float:
        """Symmetrise with the neighbours' ``L̂'_lk``, take the requested part; returns ``Σ_l |L̂_kl|``."""
        row = np.array([own[0], *(symmetrise_edge(a, b) for a, b in zip(own[1:], theirs[1:], strict=True))])
        self.row = combinatorial_row(row) if self.config.laplacian_part == "combinatorial" else row
        return float(np.abs(self.row).sum())

    def normalise(self, radius: float) -> None:
        """Divide the row by the network's ``max_k Σ_l |L̂_kl|`` and switch to ``I - μη L̂``."""
        self.row = self.row / gershgorin_scale(radius)
        self.weights[LEARNED] = alg.laplacian_combination(self.row[None, :], self.identity, self.config.mu,
                                                          self.config.eta)  # fmt: skip

    def scores(self) -> np.ndarray:
        """Test metric (A,) of the averaged models on this agent's own test split."""
        average = self.total[:, 0] / (self.config.iters - self.tail_start)
        return agent_scores(average, self.data.x_test, self.data.y_test, self.loss)
