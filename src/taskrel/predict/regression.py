"""Small regression pieces the predictors share: a ridge path, spline and ridge grid searches
with folds over *groups* (rows of one group never sit on both sides of a split)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import SplineTransformer

#: The ETAP paper's grid (§B.2 and the released code).
SPLINE_DEGREES = (2, 3, 4, 5, 6)
SPLINE_ALPHAS = (0.001, 0.002, 0.003, 0.004, 0.005, *np.round(np.arange(0.01, 0.105, 0.01), 3),
                 *np.round(np.arange(0.2, 1.05, 0.1), 1))  # fmt: skip
RESIDUAL_ALPHAS = tuple(np.logspace(-6, 2, 20))


def ridge_path(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Ridge solutions for every alpha at once (unpenalised intercept): coef (A, p), intercept (A,)."""
    x_mean, y_mean = x.mean(axis=0), y.mean()
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    s = s[s > s[0] * 1e-12] if s.size and s[0] > 0 else s[:0]  # directions without variance get no weight
    u, vt = u[:, : s.size], vt[: s.size]
    shrink = s[None, :] / (s[None, :] ** 2 + np.asarray(alphas, float)[:, None])
    coef = (shrink * (u.T @ (y - y_mean))[None, :]) @ vt
    return coef, y_mean - coef @ x_mean


def group_folds(groups: np.ndarray, max_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group-aware K-fold splits (leave-one-group-out when there are few groups)."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        return []
    splitter = GroupKFold(n_splits=min(max_splits, n_groups))
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def spline(degree: int, n_knots: int) -> SplineTransformer:
    """B-spline basis with uniform knots over the training range, constant beyond it (as ETAP)."""
    return SplineTransformer(degree=degree, n_knots=n_knots, include_bias=True, extrapolation="constant")


def knot_grid(n_rows: int) -> range:
    """Numbers of knots searched: 2 … ⌊√rows⌋ + 2 (the paper bounds knots by the training size)."""
    return range(2, int(np.sqrt(n_rows)) + 3)


def fit_spline_ridge(z: np.ndarray, y: np.ndarray, groups: np.ndarray, max_splits: int = 5) -> dict:
    """Choose degree, knots and alpha by group-aware cross-validation; refit on all rows.

    The one-standard-error rule picks the setting: among those whose cross-validated MSE is within
    one standard error (over folds) of the best, the one with the fewest basis functions, then the
    largest alpha. With few training groups the plain minimum often lands on many knots and almost
    no penalty, a curve that fits the noise of the folds and swings far off on new groups.
    Returns the fitted basis, coefficients and intercept, the chosen setting and the out-of-fold
    predictions of that setting (NaN where a row was never held out).
    """
    folds = group_folds(groups, max_splits)
    settings = []  # (fold MSEs, n_basis, degree, n_knots, alpha index, oof)
    for degree in SPLINE_DEGREES:
        for n_knots in knot_grid(len(z)):
            fold_mse = np.zeros((len(folds), len(SPLINE_ALPHAS)))
            oof = np.full((len(z), len(SPLINE_ALPHAS)), np.nan)
            for f, (train, test) in enumerate(folds):
                basis = spline(degree, n_knots).fit(z[train, None])
                coef, intercept = ridge_path(basis.transform(z[train, None]), y[train], SPLINE_ALPHAS)
                oof[test] = basis.transform(z[test, None]) @ coef.T + intercept
                fold_mse[f] = ((oof[test] - y[test, None]) ** 2).mean(axis=0)
            for a in range(len(SPLINE_ALPHAS)):
                settings.append((fold_mse[:, a], n_knots + degree - 1, degree, n_knots, a, oof[:, a]))
    eligible = range(len(settings))  # a single group: no validation possible, the simplest curve wins
    if folds:
        means = np.array([m.mean() for m, *_ in settings])
        best = int(np.argmin(means))
        spread = settings[best][0]
        threshold = means[best] + (spread.std(ddof=1) / np.sqrt(len(spread)) if len(spread) > 1 else 0.0)
        eligible = [i for i in eligible if means[i] <= threshold + 1e-15]
    chosen = min(eligible, key=lambda i: (settings[i][1], -SPLINE_ALPHAS[settings[i][4]]))  # fewest basis, most penalty
    _, _, degree, n_knots, a, oof = settings[chosen]
    alpha = SPLINE_ALPHAS[a]
    held = ~np.isnan(oof)
    error = float(((oof[held] - y[held]) ** 2).sum()) if held.any() else float("inf")
    basis = spline(degree, n_knots).fit(z[:, None])
    coef, intercept = ridge_path(basis.transform(z[:, None]), y, [alpha])
    return {"basis": basis, "coef": coef[0], "intercept": float(intercept[0]), "degree": degree,
            "n_knots": n_knots, "alpha": alpha, "oof": oof, "cv_error": error}  # fmt: skip


def fit_affine(z: np.ndarray, y: np.ndarray, groups: np.ndarray, max_splits: int = 5) -> dict:
    """Least-squares line y ≈ slope·z + intercept, with its group-aware out-of-fold predictions and error."""
    oof = np.full(len(z), np.nan)
    for train, test in group_folds(groups, max_splits):
        coef, intercept = ridge_path(z[train, None], y[train], [0.0])
        oof[test] = coef[0, 0] * z[test] + intercept[0]
    coef, intercept = ridge_path(z[:, None], y, [0.0])
    held = ~np.isnan(oof)
    error = float(((oof[held] - y[held]) ** 2).sum()) if held.any() else float("inf")
    return {"slope": float(coef[0, 0]), "intercept": float(intercept[0]), "oof": oof, "cv_error": error}


def fit_ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: Sequence[float] = RESIDUAL_ALPHAS) -> dict:
    """Ridge with alpha chosen by group-aware CV (intercept only when fewer than 3 groups)."""
    if len(np.unique(groups)) < 3:
        return {"coef": np.zeros(x.shape[1]), "intercept": float(y.mean()), "alpha": float("inf")}
    errors = np.zeros(len(alphas))
    for train, test in group_folds(groups, max_splits=len(np.unique(groups))):
        coef, intercept = ridge_path(x[train], y[train], alphas)
        errors += ((x[test] @ coef.T + intercept - y[test, None]) ** 2).sum(axis=0)
    alpha = alphas[int(np.argmin(errors))]
    coef, intercept = ridge_path(x, y, [alpha])
    return {"coef": coef[0], "intercept": float(intercept[0]), "alpha": float(alpha)}
