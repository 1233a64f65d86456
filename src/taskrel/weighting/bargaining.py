"""The (asymmetric) Nash bargaining solution of a task Gram matrix, by damped Newton in float64.

Given the Gram matrix G = J Jᵀ of K task gradients (row k of J = task k's gradient on the shared
parameters) and preferences p > 0, the bargaining weights α > 0 solve

    G α = p / α        (element-wise),

which is the stationarity condition of the strictly convex potential
f(α) = ½ αᵀGα − Σ p_i log α_i. Its Hessian G + diag(p/α²) is positive definite, so Newton's method
with a line search that keeps α > 0 converges fast (a handful of iterations) and the same Hessian
gives dα/dp = (G + diag(p/α²))⁻¹ diag(1/α) by one linear solve. Uniform preferences (p = 1) give
Nash-MTL; scaling p by c scales α by √c.

The minimiser exists unless the gradients are Pareto-stationary (a nonnegative combination of
them vanishes); near that point α blows up. The *amplification* Σ G_ii α_i² / Σ p_i measures it
(1 for orthogonal gradients). Above `max_amplification` the problem is either regularised
(G + D/max_amplification with D = diag(G), with a `NearStationaryWarning`) or rejected
(`SolverError`), as chosen by `on_near_stationary`; a non-finite, non-symmetric or indefinite
matrix, or a task with a zero gradient, is always rejected.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from taskrel.errors import ConfigError, NonFiniteError, ShapeError, SolverError

NEAR_STATIONARY_ACTIONS = ("regularise", "raise")


class NearStationaryWarning(UserWarning):
    """The task gradients were nearly Pareto-stationary; the Gram matrix was regularised."""


@dataclass(frozen=True)
class BargainingSolution:
    """α solving Gα = p/α for the Gram matrix `gram` actually used (regularised if `ridge` > 0).

    `residual` is max_i |α_i (Gα)_i / p_i − 1| for that matrix; `ridge` is the δ of G + δ·diag(G)
    (0 when no regularisation was needed).
    """

    alpha: np.ndarray
    preferences: np.ndarray
    gram: np.ndarray
    iterations: int
    residual: float
    amplification: float
    ridge: float

    def alpha_jacobian(self) -> np.ndarray:
        """dα/dp as a (K, K) matrix: entry [i, j] = ∂α_i / ∂p_j."""
        hessian = self.gram + np.diag(self.preferences / self.alpha**2)
        return _solve_spd(hessian, np.diag(1.0 / self.alpha))


def solve_bargaining(
    gram: np.ndarray,
    preferences: np.ndarray | None = None,
    *,
    init: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 100,
    max_amplification: float = 1e6,
    on_near_stationary: str = "regularise",
    names: list[str] | None = None,
) -> BargainingSolution:
    """Solve G α = p / α for α > 0 (G: (K, K) Gram matrix of task gradients; p defaults to ones).

    `init` warm-starts Newton (e.g. the previous step's α); it is used only when its potential is
    lower than the diagonal start α_i = √(p_i / G_ii). Stops when the relative residual is below
    `tol` or no further progress is possible in float64; raises `SolverError` if the residual is
    still above 1e-6 (and above the float64 rounding level of the evaluation) after `max_iter`
    iterations. `names` label tasks in error messages.
    """
    if on_near_stationary not in NEAR_STATIONARY_ACTIONS:
        raise ConfigError(f"on_near_stationary must be one of {NEAR_STATIONARY_ACTIONS}, got {on_near_stationary!r}")
    g = _checked_gram(gram, names)
    k = len(g)
    p = np.ones(k) if preferences is None else positive_vector(preferences, k, "preferences")
    start = positive_vector(init, k, "initial weights")
    alpha, iterations, amplification = _newton(g, p, start, tol, max_iter, max_amplification)
    ridge = 0.0
    if amplification > max_amplification:
        message = (
            f"task gradients are nearly Pareto-stationary (a nonnegative combination nearly vanishes): "
            f"the bargaining weights grow beyond {max_amplification:g}× their orthogonal-gradient size"
        )
        if on_near_stationary == "raise":
            raise SolverError(message)
        warnings.warn(f"{message}; solving with G + diag(G)/{max_amplification:g}", NearStationaryWarning, stacklevel=2)
        ridge = 1.0 / max_amplification
        g = g + ridge * np.diag(np.diag(g))
        alpha, more, amplification = _newton(g, p, start, tol, max_iter, np.inf)
        iterations += more
    residual = relative_residual(g, alpha, p)
    if not (residual <= 1e-6 or residual <= 100 * rounding_level(g, alpha, p)):
        raise SolverError(f"bargaining solver did not converge in {max_iter} iterations (residual {residual:.2e})")
    return BargainingSolution(alpha, p, g, iterations, residual, amplification, ridge)


def relative_residual(gram: np.ndarray, alpha: np.ndarray, preferences: np.ndarray) -> float:
    """max_i |α_i (Gα)_i / p_i − 1|: zero exactly at the bargaining solution, scale-free."""
    return float(np.max(np.abs(alpha * (gram @ alpha) / preferences - 1.0)))


def rounding_level(gram: np.ndarray, alpha: np.ndarray, preferences: np.ndarray) -> float:
    """The relative residual that float64 rounding alone can cause when evaluating α_i (Gα)_i."""
    return float(np.finfo(np.float64).eps * np.max(alpha * (np.abs(gram) @ alpha) / preferences))


def _newton(
    g: np.ndarray, p: np.ndarray, init: np.ndarray | None, tol: float, max_iter: int, max_amplification: float
) -> tuple[np.ndarray, int, float]:
    """Damped Newton on f(α) = ½αᵀGα − Σ p log α; returns (α, iterations, amplification).

    f / min(p) is self-concordant, so once the Newton decrement λ² is below min(p)/10 full steps
    stay positive and converge quadratically; before that, a backtracking line search on f keeps
    α > 0. The loop ends at residual ≤ `tol`, when rounding stops the residual from improving, or
    when the amplification exceeds `max_amplification`; the iterate of smallest residual is kept.
    """
    diag = np.diag(g)
    total = p.sum()
    on_diagonal = np.diag_indices(len(g))

    def potential(a: np.ndarray) -> float:
        return 0.5 * a @ g @ a - p @ np.log(a)

    alpha = np.sqrt(p / diag)
    if init is not None and potential(init) < potential(alpha):
        alpha = init.copy()
    residual = relative_residual(g, alpha, p)
    best, best_residual = alpha, residual
    stalls = 0
    iteration = 0
    while iteration < max_iter and residual > tol and stalls < 3:
        iteration += 1
        gradient = g @ alpha - p / alpha
        hessian = g.copy()
        hessian[on_diagonal] += p / alpha**2
        step = -_solve_spd(hessian, gradient)
        decrease = -(gradient @ step)
        quadratic_phase = decrease < 0.1 * p.min()
        if quadratic_phase:
            candidate = alpha + step
        else:
            shrinking = step < 0
            t = min(1.0, 0.99 * float(np.min(-alpha[shrinking] / step[shrinking]))) if shrinking.any() else 1.0
            value = potential(alpha)
            while True:
                candidate = alpha + t * step
                if potential(candidate) <= value - 0.25 * t * decrease or t < 1e-12:
                    break
                t *= 0.5
        if not (candidate > 0).all():
            break
        alpha = candidate
        new_residual = relative_residual(g, alpha, p)
        stalls = stalls + 1 if quadratic_phase and new_residual > 0.5 * residual else 0
        residual = new_residual
        if residual < best_residual:
            best, best_residual = alpha, residual
        if diag @ alpha**2 / total > max_amplification:
            return alpha, iteration, float(diag @ alpha**2 / total)
    return best, iteration, float(diag @ best**2 / total)


def _solve_spd(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a symmetric positive-definite system after symmetric diagonal (Jacobi) scaling."""
    scale = 1.0 / np.sqrt(np.diag(matrix))
    scaled = matrix * scale[:, None] * scale[None, :]
    rhs_scaled = rhs * (scale[:, None] if rhs.ndim == 2 else scale)
    solution = np.linalg.solve(scaled, rhs_scaled)
    return solution * (scale[:, None] if rhs.ndim == 2 else scale)


def _label(names: list[str] | None, k: int) -> str:
    return repr(names[k]) if names is not None else f"#{k}"


def _checked_gram(gram: np.ndarray, names: list[str] | None) -> np.ndarray:
    g = np.asarray(gram, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise ShapeError(f"Gram matrix must be square (K, K) with K ≥ 1, got shape {g.shape}")
    if names is not None and len(names) != len(g):
        raise ShapeError(f"{len(names)} task names for a {len(g)}×{len(g)} Gram matrix")
    if not np.isfinite(g).all():
        i, j = np.argwhere(~np.isfinite(g))[0]
        raise NonFiniteError(
            f"Gram matrix entry [{i}, {j}] (tasks {_label(names, i)}, {_label(names, j)}) is {g[i, j]}"
        )
    diag = np.diag(g)
    scale = np.sqrt(np.outer(np.abs(diag), np.abs(diag)))
    if np.any(np.abs(g - g.T) > 1e-9 * scale + 1e-300):
        i, j = np.argwhere(np.abs(g - g.T) > 1e-9 * scale + 1e-300)[0]
        raise ShapeError(f"Gram matrix is not symmetric: entries [{i}, {j}] and [{j}, {i}] differ")
    zero = diag <= 1e-300 * max(float(np.max(np.abs(diag))), 1e-300)
    if zero.any():
        k = int(np.flatnonzero(zero)[0])
        raise SolverError(
            f"task {_label(names, k)} has a zero gradient on the shared parameters (Gram diagonal {diag[k]}): "
            f"its loss does not depend on them, so it cannot bargain"
        )
    if np.any(np.abs(g) > scale * (1 + 1e-6)):
        i, j = np.argwhere(np.abs(g) > scale * (1 + 1e-6))[0]
        raise ShapeError(f"not a Gram matrix: |G[{i}, {j}]| exceeds √(G[{i}, {i}] G[{j}, {j}]) (Cauchy–Schwarz fails)")
    g = 0.5 * (g + g.T)
    correlation = g / np.sqrt(np.outer(diag, diag))
    smallest = float(np.linalg.eigvalsh(correlation)[0])
    if smallest < -1e-8 * len(g):
        raise ShapeError(f"not a Gram matrix: it is indefinite (smallest eigenvalue of its correlation {smallest:.2e})")
    return g


def positive_vector(values: np.ndarray | None, k: int, what: str) -> np.ndarray | None:
    """`values` as a float64 vector of K finite positive numbers (None passes through)."""
    if values is None:
        return None
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (k,):
        raise ShapeError(f"{what} must have shape ({k},), got {v.shape}")
    if not np.isfinite(v).all() or not (v > 0).all():
        raise ConfigError(f"{what} must be finite and positive, got {v.tolist()}")
    return v
