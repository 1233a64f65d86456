"""Laplacian estimators from the agents' current models (the GMRF precision, up to noise).

Conventions: models are rows of ``W`` (K, M); the statistic is the uncentred block-trace
covariance ``Σ̂ = W Wᵀ / M`` (K, K): each of the M coordinates counts as one sample of the
K-variate GMRF, so the "sample size" for graph learning is the model dimension M. Every estimator
returns a symmetric (K, K) precision estimate ``L̂`` whose off-diagonal entries are ``-â_kl``.

* `laplacian_ml`: global Laplacian-constrained Gaussian maximum likelihood,
  ``min_L tr(Σ̂ L) - log det L`` over GGLs ``L = D - A + V`` (A, V ≥ 0) or CGLs
  (``V = 0``, ``log det(L + 11ᵀ/K)``), optionally on a known support; solved by projected Newton.
* `masked_inverse`: ``Σ̂⁻¹`` kept on the support (the quick baseline).
* `neighbourhood_estimate`: the decentralised estimator — agent k inverts the covariance of its
  neighbourhood, keeps its own row, and each edge is symmetrised with one scalar exchange.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize

from taskrel.decentral.graphs import neighbourhood, require_connected
from taskrel.errors import ConfigError, NonFiniteError, ShapeError, SolverError


def _finite(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise NonFiniteError(f"{name}{list(idx)} is {x[idx]}")
    return x


def block_trace_covariance(models: np.ndarray) -> np.ndarray:
    """``Σ̂ = W Wᵀ / M`` for models (..., K, M) → (..., K, K); uncentred (the prior has mean 0)."""
    w = _finite("models", models)
    if w.ndim < 2:
        raise ShapeError(f"models must be (K, M) (rows are agents), got shape {w.shape}")
    return w @ np.swapaxes(w, -1, -2) / w.shape[-1]


def shrink(cov: np.ndarray, shrinkage: float) -> np.ndarray:
    """Shrink a covariance toward its diagonal: ``(1 - α) Σ + α diag(Σ)``, α in [0, 1)."""
    if not 0 <= shrinkage < 1:
        raise ConfigError(f"shrinkage must be in [0, 1), got {shrinkage}")
    if shrinkage == 0:
        return cov
    return (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))


def spectral_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """``‖L̂ - L‖₂²``: squared spectral norm of the difference (largest |eigenvalue| squared)."""
    diff = np.asarray(estimate, float) - np.asarray(truth, float)
    return float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (diff + diff.T)))) ** 2)


def _support(num_agents: int, support: np.ndarray | None) -> np.ndarray:
    if support is None:
        s = ~np.eye(num_agents, dtype=bool)
    else:
        s = np.asarray(support) != 0
        if s.shape != (num_agents, num_agents):
            raise ShapeError(f"support must be ({num_agents}, {num_agents}), got {s.shape}")
        if not (s == s.T).all():
            raise ConfigError("support must be symmetric")
        s = s.copy()
        np.fill_diagonal(s, False)
    return s


def masked_inverse(cov: np.ndarray, support: np.ndarray | None = None, shrinkage: float = 0.0) -> np.ndarray:
    """``Σ̂⁻¹`` restricted to the support (off-support entries set to 0, diagonal kept)."""
    s = shrink(_finite("cov", cov), shrinkage)
    try:
        inv = scipy.linalg.inv(s)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise SolverError(f"Σ̂ is singular ({exc}); use shrinkage > 0 or more dimensions M ≥ K") from exc
    if not np.isfinite(inv).all() or np.linalg.cond(s) > 1e14:
        raise SolverError(f"Σ̂ is singular (condition {np.linalg.cond(s):.2g}); use shrinkage > 0 or M ≥ K")
    mask = _support(s.shape[0], support) | np.eye(s.shape[0], dtype=bool)
    out = np.where(mask, inv, 0.0)
    return 0.5 * (out + out.T)


# ----------------------------------------------------------------------------------------------
# the decentralised neighbourhood estimator: the per-agent pieces are shared by both engines


def local_laplacian_row(
    local_models: np.ndarray, shrinkage: float = 0.0, project_sign: bool = False
) -> np.ndarray:
    """Agent k's row of ``L̂'`` over its neighbourhood from the models it holds.

    `local_models` is (n, M) with agent k's own model FIRST, then its neighbours' (the order of
    `graphs.neighbourhood`). Returns the first row of ``(W_N W_Nᵀ / M)⁻¹`` (n,), optionally after
    shrinkage toward the diagonal and with positive off-diagonal entries clipped to 0.
    """
    w = _finite("local models", local_models)
    n, m = w.shape
    cov = shrink(w @ w.T / m, shrinkage)
    unit = np.zeros(n)
    unit[0] = 1.0
    try:
        factor = scipy.linalg.cho_factor(cov, lower=True)
    except np.linalg.LinAlgError as exc:
        raise SolverError(
            f"local covariance over {n} agents is singular with M={m} (needs M ≥ {n} or shrinkage > 0)"
        ) from exc
    row = scipy.linalg.cho_solve(factor, unit)
    if np.linalg.cond(cov) > 1e14:
        raise SolverError(f"local covariance over {n} agents is singular with M={m}; use shrinkage > 0")
    if project_sign:
        row[1:] = np.minimum(row[1:], 0.0)
    return row


def symmetrise_edge(own: float, theirs: float) -> float:
    """The one scalar exchange per edge: ``L̂_kl = (L̂'_kl + L̂'_lk) / 2``."""
    return 0.5 * (own + theirs)


def neighbourhood_estimate(
    models: np.ndarray, adjacency: np.ndarray, shrinkage: float = 0.0, project_sign: bool = False
) -> np.ndarray:
    """Decentralised estimate ``L̂`` (K, K) from models (K, M) and the known connectivity."""
    w = _finite("models", models)
    k = w.shape[0]
    if np.shape(adjacency) != (k, k):
        raise ShapeError(f"adjacency must be ({k}, {k}) for {k} agents, got {np.shape(adjacency)}")
    rows = np.zeros((k, k))
    for agent in range(k):
        idx = neighbourhood(adjacency, agent)
        rows[agent, idx] = local_laplacian_row(w[idx], shrinkage, project_sign)
    out = np.zeros((k, k))
    for agent in range(k):
        out[agent, agent] = rows[agent, agent]
        for other in neighbourhood(adjacency, agent)[1:]:
            out[agent, other] = symmetrise_edge(rows[agent, other], rows[other, agent])
    return out


# ----------------------------------------------------------------------------------------------
# global Laplacian-constrained maximum likelihood


@dataclass(frozen=True)
class MLResult:
    """Solution of `laplacian_ml`: the estimate, edge weights, self-loops and solver facts."""

    laplacian: np.ndarray
    weights: np.ndarray  # (K, K) Â, symmetric, ≥ 0
    self_loops: np.ndarray  # (K,) V̂ (zeros for a CGL)
    objective: float
    iterations: int
    projected_gradient: float  # ‖θ - [θ - ∇f]⁺‖_∞ at the solution (KKT residual)


class _Problem:
    """f(θ) = cᵀθ - log det(Σ_p θ_p b_p b_pᵀ + J), θ ≥ 0.

    Variable p is the pair ``(i_p, j_p)``: ``b_p = e_i - e_j`` for an edge, ``b_p = e_i`` for a
    self-loop (``j_p = K`` indexes a zero row appended to every K×K matrix, so both cases share
    the formula ``b_pᵀ X b_q = X[i_p, i_q] - X[i_p, j_q] - X[j_p, i_q] + X[j_p, j_q]``).
    """

    def __init__(self, cov: np.ndarray, pairs: np.ndarray, kind: str) -> None:
        k = cov.shape[0]
        self.k, self.kind = k, kind
        if kind == "ggl":
            pairs = np.vstack([pairs, np.column_stack([np.arange(k), np.full(k, k)])])
        self.i, self.j = pairs[:, 0], pairs[:, 1]
        self.c = self.quad(cov)
        self.shift = np.full((k, k), 1.0 / k) if kind == "cgl" else 0.0

    def _pad(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((self.k + 1, self.k + 1))
        out[: self.k, : self.k] = x
        return out

    def quad(self, x: np.ndarray) -> np.ndarray:
        """``b_pᵀ X b_p`` for every variable p."""
        x = self._pad(x)
        return x[self.i, self.i] + x[self.j, self.j] - 2.0 * x[self.i, self.j]

    def matrix(self, theta: np.ndarray) -> np.ndarray:
        out = np.zeros((self.k + 1, self.k + 1))
        np.add.at(out, (self.i, self.i), theta)
        np.add.at(out, (self.j, self.j), theta)
        np.add.at(out, (self.i, self.j), -theta)
        np.add.at(out, (self.j, self.i), -theta)
        return out[: self.k, : self.k]

    def value(self, theta: np.ndarray) -> tuple[float, np.ndarray | None]:
        """Objective and Cholesky factor (inf, None when the matrix is not positive definite)."""
        try:
            chol = np.linalg.cholesky(self.matrix(theta) + self.shift)
        except np.linalg.LinAlgError:
            return np.inf, None
        return float(self.c @ theta - 2.0 * np.log(np.diag(chol)).sum()), chol

    def derivatives(self, chol: np.ndarray, hessian: bool) -> tuple[np.ndarray, np.ndarray]:
        """Gradient ``c_p - b_pᵀ Σ b_p`` and the Hessian ``(b_pᵀ Σ b_q)²`` (or its diagonal)."""
        sigma = scipy.linalg.cho_solve((chol, True), np.eye(self.k))
        diag = self.quad(sigma)
        grad = self.c - diag
        if not hessian:
            return grad, diag * diag
        x = self._pad(sigma)
        i, j = self.i, self.j
        q = x[np.ix_(i, i)] - x[np.ix_(i, j)] - x[np.ix_(j, i)] + x[np.ix_(j, j)]
        return grad, q * q


def laplacian_ml(
    cov: np.ndarray,
    kind: str = "ggl",
    support: np.ndarray | None = None,
    *,
    shrinkage: float = 0.0,
    tol: float = 1e-8,
    max_iter: int = 5000,
    newton_max: int = 2500,
) -> MLResult:
    """Laplacian-constrained Gaussian ML estimate of the precision from ``Σ̂`` (K, K).

    Minimises ``tr(Σ̂ L) - log det(L [+ 11ᵀ/K])`` over ``L = Σ_e a_e (e_i - e_j)(e_i - e_j)ᵀ
    [+ diag(v)]`` with ``a, v ≥ 0`` and ``a_e = 0`` off the `support` (default: all pairs).
    `kind` is ``"ggl"`` (self-loops v, L positive definite) or ``"cgl"`` (v = 0, L1 = 0; the
    support must be connected). The solver is Bertsekas' projected Newton with an ε-active set
    and Armijo search along the projection arc; with more than `newton_max` variables (the dense
    Hessian would not fit) it is SciPy's L-BFGS-B with the same analytic gradient. Converged when
    the KKT residual ``‖θ - [θ - ∇f]⁺‖_∞ ≤ tol · max(1, max c)`` (L-BFGS-B: 1000× looser);
    otherwise `SolverError`.
    """
    if kind not in ("ggl", "cgl"):
        raise ConfigError(f"kind must be 'ggl' or 'cgl', got {kind!r}")
    s = shrink(_finite("cov", cov), shrinkage)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ShapeError(f"cov must be square (K, K), got {s.shape}")
    if not np.allclose(s, s.T, atol=1e-12 * max(1.0, np.abs(s).max())):
        raise ConfigError("cov must be symmetric")
    k = s.shape[0]
    if k < 2:
        raise ConfigError(f"need at least 2 agents, got K={k}")
    sup = _support(k, support)
    if kind == "cgl":
        require_connected(sup)
    pairs = np.argwhere(np.triu(sup, 1))
    prob = _Problem(s, pairs, kind)
    if (prob.c <= 0).any():
        p = int(np.argmax(prob.c <= 0))
        raise SolverError(f"the ML problem is unbounded: the statistic of variable {p} is {prob.c[p]:.3g} ≤ 0 "
                          "(two agents with identical models, or a zero model); use shrinkage")  # fmt: skip
    # a strictly feasible start: loops 1/Σ̂_kk (GGL), small equal edge weights (CGL)
    theta = np.zeros(prob.c.size)
    if kind == "ggl":
        theta[len(pairs):] = 1.0 / np.diag(s)
    else:
        theta[:] = 1.0 / (k * prob.c.mean())
    value, chol = prob.value(theta)
    if chol is None:
        raise SolverError("could not find a positive-definite starting point")
    scale = max(1.0, float(prob.c.max()))
    if theta.size <= newton_max:
        theta, value, iteration, residual = _projected_newton(prob, theta, value, chol, tol * scale, max_iter)
    else:
        theta, value, iteration, residual = _lbfgsb(prob, theta, tol * scale, max_iter)
    a = np.zeros((k, k))
    a[pairs[:, 0], pairs[:, 1]] = theta[: len(pairs)]
    a = a + a.T
    v = theta[len(pairs):] if kind == "ggl" else np.zeros(k)
    lap = np.diag(a.sum(axis=1)) - a + np.diag(v)
    return MLResult(lap, a, v.copy(), value, iteration, float(residual))


def _kkt_residual(theta: np.ndarray, grad: np.ndarray) -> float:
    return float(np.abs(theta - np.maximum(theta - grad, 0.0)).max())


def _projected_newton(
    prob: _Problem, theta: np.ndarray, value: float, chol: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, float, int, float]:
    """Bertsekas (1982) projected Newton: Newton step on the free variables, ε-active set held at 0."""
    eps0 = 1e-3
    for iteration in range(1, max_iter + 1):
        grad, h = prob.derivatives(chol, hessian=True)
        residual = _kkt_residual(theta, grad)
        if residual <= tol:
            return theta, value, iteration, residual
        active = (theta <= min(eps0, residual)) & (grad > 0)
        free = ~active
        direction = np.zeros_like(theta)
        hf = h[np.ix_(free, free)]
        try:
            direction[free] = -scipy.linalg.solve(hf, grad[free], assume_a="pos")
        except (np.linalg.LinAlgError, ValueError):
            direction[free] = -grad[free] / np.diag(hf)
        direction[active] = -grad[active] / np.diag(h)[active]
        alpha = 1.0
        for _ in range(60):
            trial = np.maximum(theta + alpha * direction, 0.0)
            new_value, new_chol = prob.value(trial)
            if new_chol is not None and new_value <= value + 1e-4 * grad @ (trial - theta):
                break
            alpha *= 0.5
        else:
            if residual <= 1e2 * tol:  # at the floating-point floor: no representable decrease left
                return theta, value, iteration, residual
            raise SolverError(f"line search failed at iteration {iteration} (KKT residual {residual:.3g})")
        theta, value, chol = trial, new_value, new_chol
    raise SolverError(
        f"laplacian_ml did not converge in {max_iter} iterations (KKT residual {residual:.3g} > {tol:.3g})"
    )


def _lbfgsb(prob: _Problem, theta: np.ndarray, tol: float, max_iter: int) -> tuple[np.ndarray, float, int, float]:
    """Bound-constrained L-BFGS-B for problems too large for a dense Hessian; infeasible points get f = +inf-like."""

    def fun(t: np.ndarray) -> tuple[float, np.ndarray]:
        value, chol = prob.value(t)
        if chol is None:
            return 1e300, np.zeros_like(t)
        return value, prob.derivatives(chol, hessian=False)[0]

    result = scipy.optimize.minimize(
        fun, theta, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * theta.size,
        options={"maxiter": max_iter, "gtol": tol, "ftol": 0.0, "maxcor": 30},
    )  # fmt: skip
    value, chol = prob.value(result.x)
    if chol is None:
        raise SolverError(f"L-BFGS-B ended at a non positive-definite point ({result.message})")
    residual = _kkt_residual(result.x, prob.derivatives(chol, hessian=False)[0])
    if residual > 1e3 * tol:
        raise SolverError(f"L-BFGS-B did not converge: KKT residual {residual:.3g} ({result.message})")
    return result.x, value, int(result.nit), residual
