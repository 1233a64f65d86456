"""The per-iteration updates, written once as functions on arrays and used by every engine.

Layout: the leading axis of a state is the algorithm (`ALGORITHMS`), the last axis the model
coordinate M, and the one before it the agent rows. The vectorised simulator applies these
functions to states (A, R, K, M) (R Monte-Carlo runs) with combination matrices (A, R, K, K); an
agent process applies the very same functions to its own row (A, 1, M), its neighbourhood's
adapted rows (A, n, M) and its rows of the combination matrices (A, 1, n) (own index first).

Every algorithm is adapt-then-combine (ATC):

* adapt:   ``ψ_k = w_k - μ ∇̂J_k(w_k)``           (one stochastic gradient step on local data)
* combine: ``w_k = Σ_l C_kl ψ_l``                    with
  - non-cooperative:             ``C = I``
  - consensus (ATC diffusion):   ``C`` = Metropolis weights (doubly stochastic)
  - Laplacian-regularised:       ``C = I - μ'η L`` with the true L (oracle) or the learned L̂.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taskrel.errors import ConfigError, NonFiniteError

#: The algorithms every engine runs side by side on the same samples (leading state axis).
ALGORITHMS = ("noncoop", "consensus", "learned", "true")
LEARNED = ALGORITHMS.index("learned")


def gradient(loss: str, w: np.ndarray, u: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Instantaneous gradient of the loss at ``w`` (..., M) for one sample ``u`` (..., M), ``d`` (...).

    ``squared``: J = ½ (d - uᵀw)², gradient ``-u (d - uᵀw)``; ``logistic`` (d ∈ {0, 1}):
    J = log(1 + e^{uᵀw}) - d uᵀw, gradient ``u (σ(uᵀw) - d)``.
    """
    z = np.sum(u * w, axis=-1)
    if loss == "squared":
        return -u * (d - z)[..., None]
    if loss == "logistic":
        return u * (0.5 * (1.0 + np.tanh(0.5 * z)) - d)[..., None]
    raise ConfigError(f"unknown loss {loss!r}; use 'squared' or 'logistic'")


def adapt(w: np.ndarray, u: np.ndarray, d: np.ndarray, steps: np.ndarray, loss: str) -> np.ndarray:
    """``ψ = w - μ ∇̂J(w)``; `steps` broadcasts against ``w`` (e.g. (A, 1, 1, 1) per algorithm)."""
    return w - steps * gradient(loss, w, u, d)


def combine(weights: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """``w_k = Σ_l C_kl ψ_l``: weights (..., n_out, n_in) times rows (..., n_in, M)."""
    return weights @ psi


def laplacian_combination(lap_rows: np.ndarray, identity_rows: np.ndarray, step: float, eta: float) -> np.ndarray:
    """Rows of ``I - μ'η L``: `lap_rows` are rows of L (or L̂), `identity_rows` the matching rows of I."""
    return identity_rows - step * eta * lap_rows


def check_finite(state: np.ndarray, iteration: int, where: str = "") -> None:
    """Raise `NonFiniteError` naming the algorithms whose models (axis 0 of `state`) are no longer finite."""
    if not np.isfinite(state).all():
        bad = [name for a, name in enumerate(ALGORITHMS) if not np.isfinite(state[a]).all()]
        raise NonFiniteError(f"{where}models of {bad} became non-finite by iteration {iteration} (diverged; lower μ)")


def check_stability(lap: np.ndarray, step: float, eta: float, what: str = "L̂") -> float:
    """Raise `ConfigError` unless ``μ'η λ_max(L) < 2``; returns ``μ'η λ_max``.

    This keeps ``‖I - μ'η L‖ ≤ 1`` for a positive semi-definite L; beyond it the combination
    step amplifies and the diffusion diverges.
    """
    lam = float(np.linalg.eigvalsh(0.5 * (lap + lap.T)).max())
    value = step * eta * lam
    if not value < 2:
        raise ConfigError(
            f"unstable Laplacian diffusion: μ'·η·λ_max({what}) = {step:g}·{eta:g}·{lam:.4g} = {value:.4g} ≥ 2; "
            f"lower the cooperative step μ' or the coupling η (a stable choice: η = {1.0 / (step * lam):.3g})"
        )
    return value


def check_step_size(step: float, trace: float, *, name: str, trace_text: str, where: str = "") -> float:
    """Raise `ConfigError` unless ``step · tr(R) < 2``; returns ``step · tr(R)``.

    ``tr(R)`` is the trace of the (loss-weighted) regressor covariance: ``M σ_u²`` for a synthetic
    LMS stream, ``mean ‖x‖²`` over an agent's training rows for squared loss on real data (¼ of it
    for the logistic loss, whose curvature is at most ¼). Beyond the bound the SGD / LMS recursion
    diverges, and every later stage (graph learning, diffusion) fails for that reason alone. The
    message names the bound and a stable choice, ``1 / tr(R)``.
    """
    value = step * trace
    if not value < 2:
        raise ConfigError(
            f"{where}step size {name} = {step:g} is unstable: SGD/LMS needs {name}·tr(R_u) < 2, and "
            f"tr(R_u) = {trace_text} = {trace:.4g}, so {name}·tr(R_u) = {value:.4g} ≥ 2; a stable choice is "
            f"{name} = {1.0 / trace:.3g} (= 1/tr(R_u)). The cooperative phase also needs μ'·η·λ_max(L) < 2"
        )
    return value


def local_stability_bound(row: np.ndarray, step: float, eta: float, agent: int) -> float:
    """The check one agent can make alone: ``μ'η (|L_kk| + Σ_l |L_kl|) < 2`` (Gershgorin, sufficient).

    If every agent passes, ``μ'η λ_max(L̂) < 2``; `ConfigError` otherwise (names the agent).
    """
    value = step * eta * float(np.abs(row).sum())
    if not value < 2:
        raise ConfigError(
            f"agent {agent}: unstable Laplacian diffusion: μ'·η·(Gershgorin bound on λ_max(L̂)) = {value:.4g} ≥ 2; "
            "lower the cooperative step μ' or the coupling η"
        )
    return value


@dataclass(frozen=True)
class Schedule:
    """When the learned-graph algorithm switches and re-estimates.

    Iterations are numbered 1..iters. Iterations ``1..switch`` are non-cooperative (step ``mu``);
    L̂ is estimated from the iterates after iteration ``switch`` and, with `update_every`, again
    after ``switch + j·update_every`` (multi-phase); later iterations cooperate with step
    ``mu_coop``. The baselines use ``mu`` (non-cooperative) and ``mu_coop`` (consensus, true L)
    throughout.
    """

    iters: int
    switch: int
    mu: float
    mu_coop: float
    update_every: int | None = None

    def __post_init__(self) -> None:
        if self.iters < 1:
            raise ConfigError(f"iters must be ≥ 1, got {self.iters}")
        if not 1 <= self.switch < self.iters:
            raise ConfigError(
                "switch must be in [1, iters): L̂ is learned from Phase-I iterates; "
                f"got {self.switch} with iters={self.iters}"
            )
        if not (self.mu > 0 and np.isfinite(self.mu)):
            raise ConfigError(f"step size μ must be > 0, got {self.mu}")
        if not (self.mu_coop > 0 and np.isfinite(self.mu_coop)):
            raise ConfigError(f"cooperative step size μ' must be > 0, got {self.mu_coop}")
        if self.update_every is not None and self.update_every < 1:
            raise ConfigError(f"update_every must be ≥ 1, got {self.update_every}")

    def estimate_before(self, i: int) -> bool:
        """True when L̂ is (re-)estimated just before iteration `i` (1-based)."""
        done = i - 1
        if done < self.switch:
            return False
        if done == self.switch:
            return True
        return self.update_every is not None and (done - self.switch) % self.update_every == 0

    def steps(self, i: int) -> np.ndarray:
        """Step sizes (A,) of the algorithms at iteration `i`, in `ALGORITHMS` order."""
        learned = self.mu if i <= self.switch else self.mu_coop
        return np.array([self.mu, self.mu_coop, learned, self.mu_coop])
