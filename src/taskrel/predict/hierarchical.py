"""A hierarchical Bayesian model of per-task gains, with a predictive standard deviation per entry.

For a group G and member task t (gain(G → t) = (L_STL(t) − L_G(t)) / L_STL(t), positive = G helps t):

    gain(G → t) = μ + b_t + Σ_{u ∈ G∖{t}} (s_u + w_{t,u}) + c · z(G → t) + d · log|G| + ε

with independent Gaussian priors b_t ~ N(0, σ_b²) (per-target offset, ``"offset"``), s_u ~ N(0, σ_s²)
(effect of having u in the group, shared by every target, ``"shared"``), w_{t,u} ~ N(0, σ_w²)
(target-specific deviation from it, ``"specific"``; with the shared term the effect of u on t is
shrunk toward s_u), c ~ N(0, σ_c²) (slope on the standardised group affinity z(G → t), the mean
of A[u, t] over the other members u, ``"affinity"``), d ~ N(0, σ_d²) (slope on the standardised
log group size, ``"size"``), μ ~ N(0, σ_μ²) and noise ε ~ N(0, σ_ε²).
Integrating the coefficients out gives a Gaussian process whose kernel is the sum of one block per
term; the variances are set by maximising the marginal likelihood of the training gains (type-II
maximum likelihood; a weak N(0, 2²) prior on each log variance, in units of the gains' variance,
keeps the optimum finite with very few groups). Predictions are the posterior means; `predict(...,
return_std=True)` adds the predictive standard deviation of a *measured* gain (posterior variance
plus noise); `sample` draws the noise-free gains jointly by pathwise conditioning (a prior draw of
the coefficients, corrected by the kernel-weighted residual at the training rows). All arithmetic
in float64; fitting is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.linalg import cho_factor, cho_solve, lapack, solve_triangular
from scipy.optimize import minimize

from taskrel.errors import ConfigError, ModelError
from taskrel.predict.base import GainPredictor, group_affinity, membership, one_blas_thread

TERMS = ("offset", "shared", "specific", "affinity", "size")
LOG_VARIANCE_BOUNDS = (-12.0, 4.0)
PRIOR_SCALE = 2.0
JITTER = 1e-9


class HierarchicalPredictor(GainPredictor):
    """Gaussian-process form of the hierarchical linear model above; ``terms`` picks its blocks."""

    needs_affinity = False
    has_std = True
    can_sample = True

    def __init__(self, terms: Sequence[str] = ("offset", "specific")) -> None:
        self.terms = terms
        self._check_params()

    def _check_params(self) -> None:
        terms = self.terms
        valid = isinstance(terms, Sequence) and not isinstance(terms, str) and terms
        if not valid or any(t not in TERMS for t in terms) or len(set(terms)) != len(terms):
            raise ConfigError(f"terms must be distinct names among {TERMS}, got {self.terms!r}")

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        terms = tuple(self.terms)
        if "affinity" in terms and self.affinity_ is None:
            raise ConfigError("the 'affinity' term needs an affinity matrix")
        self.terms_ = terms
        z = self._affinity_feature(train)
        self.z_mean_, self.z_scale_ = float(z.mean()), float(z.std()) or 1.0
        size = _log_size(train)
        self.size_mean_, self.size_scale_ = float(size.mean()), float(size.std()) or 1.0
        y = train["gain"].to_numpy(float)
        self.y_mean_, self.y_scale_ = float(y.mean()), float(y.std()) or 1.0
        target = (y - self.y_mean_) / self.y_scale_
        self.train_features_ = self._features(train)
        blocks = self._blocks(self.train_features_, self.train_features_)
        self.log_variances_ = _maximise_evidence(blocks, target)
        covariance = _combine(blocks, self.log_variances_) + (np.exp(self.log_variances_[-1]) + JITTER) * np.eye(len(y))
        self.factor_ = cho_factor(covariance, lower=True)
        self.weights_ = cho_solve(self.factor_, target)
        self.target_ = target
        self.train_rows_ = train[["group", "task", "gain"]].reset_index(drop=True)

    def _affinity_feature(self, rows: pd.DataFrame) -> np.ndarray:
        return group_affinity(self.affinity_, rows) if "affinity" in self.terms_ else np.zeros(len(rows))

    def _features(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(target one-hot, multi-hot of the *other* members, standardised affinity and log-size features) per row."""
        target = membership([[t] for t in rows["task"]], self.tasks_)
        others = membership(list(rows["members"]), self.tasks_) - target
        z = (self._affinity_feature(rows) - self.z_mean_) / self.z_scale_
        size = (_log_size(rows) - self.size_mean_) / self.size_scale_
        return target, others, z, size

    def _blocks(self, a: tuple, b: tuple, diagonal: bool = False) -> list[np.ndarray]:
        """Kernel block of every term between the rows of `a` and `b`, then the constant (mean) block.

        With ``diagonal=True`` (`a` and `b` of equal length) only the diagonal of each block, as vectors.
        """
        product = (lambda x, y: (x * y).sum(axis=1)) if diagonal else (lambda x, y: x @ y.T)
        same_target = product(a[0], b[0])
        shared = product(a[1], b[1])
        block = {"offset": same_target, "shared": shared, "specific": same_target * shared,
                 "affinity": a[2] * b[2] if diagonal else np.outer(a[2], b[2]),
                 "size": a[3] * b[3] if diagonal else np.outer(a[3], b[3])}  # fmt: skip
        return [block[t] for t in self.terms_] + [np.ones_like(same_target)]

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Posterior means K(x, X)·K⁻¹y, each block applied in weight space (no rows × training-rows matrix)."""
        target, others, z, size = self._features(rows)
        train_target, train_others, train_z, train_size = self.train_features_
        w = self.weights_
        by_target = train_target.T @ (train_others * w[:, None])  # [t, u]: Σ of w over training rows of target t with u
        term = {"offset": lambda: target @ (train_target.T @ w), "shared": lambda: others @ (train_others.T @ w),
                "specific": lambda: (others * (target @ by_target)).sum(axis=1),
                "affinity": lambda: z * (train_z @ w), "size": lambda: size * (train_size @ w)}  # fmt: skip
        variances = np.exp(self.log_variances_)
        mean = sum(v * term[name]() for name, v in zip(self.terms_, variances, strict=False))
        mean = mean + variances[len(self.terms_)] * w.sum()  # the constant (mean) block
        return self.y_mean_ + self.y_scale_ * mean

    def _predict_with_std(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        features = self._features(rows)
        cross = _combine(self._blocks(features, self.train_features_), self.log_variances_)
        prior = _combine(self._blocks(features, features, diagonal=True), self.log_variances_)
        projected = solve_triangular(self.factor_[0], cross.T, lower=True)
        variance = np.maximum(prior - (projected**2).sum(axis=0), 0.0) + np.exp(self.log_variances_[-1])
        return self.y_mean_ + self.y_scale_ * (cross @ self.weights_), self.y_scale_ * np.sqrt(variance)

    def _sample(self, rows: pd.DataFrame, rng: np.random.Generator, draws: int) -> np.ndarray:
        """Joint posterior draws (rows × draws) of the noise-free gain: f_post = f + K(x, X) K⁻¹ (y − f(X) − ε)."""
        scale = dict(zip([*self.terms_, "mean", "noise"], np.sqrt(np.exp(self.log_variances_)), strict=True))
        k = len(self.tasks_)
        coefficients = {"offset": rng.standard_normal((k, draws)), "shared": rng.standard_normal((k, draws)),
                        "specific": rng.standard_normal((k, k, draws)), "affinity": rng.standard_normal(draws),
                        "size": rng.standard_normal(draws), "mean": rng.standard_normal(draws)}  # fmt: skip
        coefficients = {name: scale[name] * value for name, value in coefficients.items() if name in scale}

        def prior_draw(features: tuple) -> np.ndarray:
            target, others, z, size = features
            value = {"offset": lambda c: target @ c, "shared": lambda c: others @ c,
                     "specific": lambda c: _per_target(target, others, c),
                     "affinity": lambda c: np.outer(z, c), "size": lambda c: np.outer(size, c),
                     "mean": lambda c: np.broadcast_to(c, (len(z), draws))}  # fmt: skip
            return sum(value[name](c) for name, c in coefficients.items())

        noise = np.sqrt(np.exp(self.log_variances_[-1]) + JITTER) * rng.standard_normal((len(self.target_), draws))
        residual = self.target_[:, None] - prior_draw(self.train_features_) - noise
        features = self._features(rows)
        cross = _combine(self._blocks(features, self.train_features_), self.log_variances_)
        return self.y_mean_ + self.y_scale_ * (prior_draw(features) + cross @ cho_solve(self.factor_, residual))

    @one_blas_thread
    def leave_group_out(self) -> pd.DataFrame:
        """Leave-one-group-out predictions of the training rows: group, task, gain, predicted, predicted_std.

        The fitted variances are kept, and the posterior given all other groups is read in closed
        form off the inverse training covariance K: held-out mean y_B − (K⁻¹)_BB⁻¹ (K⁻¹y)_B,
        covariance (K⁻¹)_BB⁻¹ (that of a measured gain, noise included).
        """
        inverse = _inverse(self.factor_)
        groups = self.train_rows_["group"].to_numpy()
        mean, std = np.empty(len(groups)), np.empty(len(groups))
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            held = np.linalg.inv(inverse[np.ix_(rows, rows)])
            mean[rows] = self.target_[rows] - held @ self.weights_[rows]
            std[rows] = np.sqrt(np.diag(held))
        return self.train_rows_.assign(predicted=self.y_mean_ + self.y_scale_ * mean, predicted_std=self.y_scale_ * std)

    def variances(self) -> dict[str, float]:
        """Fitted prior variance of every term (and ``"mean"``, ``"noise"``), in squared gain units."""
        names = [*self.terms_, "mean", "noise"]
        return {n: float(np.exp(v)) * self.y_scale_**2 for n, v in zip(names, self.log_variances_, strict=True)}


def _per_target(target: np.ndarray, others: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """Σ_u others[n, u]·c[t_n, u, :] with t_n the target of row n (one product per target task)."""
    out = np.zeros((len(target), coefficients.shape[-1]))
    index = target.argmax(axis=1)
    for t in np.unique(index):
        rows = index == t
        out[rows] = others[rows] @ coefficients[t]
    return out


def _log_size(rows: pd.DataFrame) -> np.ndarray:
    return np.log(rows["members"].map(len).to_numpy(float))


def _combine(blocks: list[np.ndarray], log_variances: np.ndarray) -> np.ndarray:
    return sum(np.exp(v) * k for v, k in zip(log_variances[:-1], blocks, strict=True))


def _inverse(factor: tuple[np.ndarray, bool]) -> np.ndarray:
    """K⁻¹ from `cho_factor`'s lower Cholesky factor of K (LAPACK potri: a third of solving K X = I)."""
    lower, _ = factor
    inverse, info = lapack.dpotri(lower, lower=True)
    if info:
        raise ModelError(f"hierarchical gain model: the covariance could not be inverted (LAPACK info {info})")
    inverse = np.tril(inverse)
    return inverse + np.tril(inverse, -1).T


def _evidence(blocks: list[np.ndarray], target: np.ndarray, theta: np.ndarray) -> tuple[float, np.ndarray]:
    """Penalised negative log marginal likelihood at log variances `theta` (blocks, then noise), and its gradient.

    ∂/∂θ_k of ½ yᵀK⁻¹y + ½ log|K| is ½ e^θ_k tr((K⁻¹ − ααᵀ) B_k), α = K⁻¹y, with B_k the block of θ_k
    (the identity for the noise); the prior adds θ_k / PRIOR_SCALE². (inf, 0) where K is not positive definite.
    """
    eye = np.eye(len(target))
    covariance = _combine(blocks, theta) + (np.exp(theta[-1]) + JITTER) * eye
    try:
        factor = cho_factor(covariance, lower=True)
    except np.linalg.LinAlgError:
        return np.inf, np.zeros_like(theta)
    alpha = cho_solve(factor, target)
    fit = 0.5 * target @ alpha + np.log(np.diag(factor[0])).sum()
    inner = _inverse(factor) - np.outer(alpha, alpha)
    traces = [float((inner * block).sum()) for block in blocks] + [float(np.trace(inner))]
    gradient = 0.5 * np.exp(theta) * np.array(traces) + theta / PRIOR_SCALE**2
    return float(fit + 0.5 * (theta**2).sum() / PRIOR_SCALE**2), gradient


def _maximise_evidence(blocks: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    """Log variances (one per block, then the noise) maximising the penalised marginal likelihood."""

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        return _evidence(blocks, target, theta)

    best = None
    for start in (-1.0, -3.0):
        result = minimize(objective, np.full(len(blocks) + 1, start), method="L-BFGS-B", jac=True,
                          bounds=[LOG_VARIANCE_BOUNDS] * (len(blocks) + 1))  # fmt: skip
        if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
            best = result
    if best is None:
        raise ModelError("hierarchical gain model: no variance setting gives a positive-definite covariance")
    return best.x
