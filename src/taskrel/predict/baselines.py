"""Baseline gain predictors users compare against.

* `TagPredictor` — TAG: the group affinity feature itself (mean affinity onto t from the other
  members), unscaled, no training groups used. Only its correlation is meaningful.
* `HoaPredictor` — Standley's higher-order approximation from measured pairs:
  ĝ(G → t) = mean over u ∈ G∖{t} of the measured gain of t in the pair {t, u}. It needs every
  pair inside G measured (n(n−1)/2 extra trainings).
* `SurrogatePredictor` — Li et al.'s linear surrogate: per task t, a ridge on the group's
  multi-hot membership fit to the measured gains of the training groups containing t.
* `KernelSurrogatePredictor` — the kernel surrogate (Zhang, Duan, Zhang, ICLR 2026): per task t,
  kernel ridge regression on the multi-hot membership of the training groups containing t with an
  RBF kernel k(G, H) = exp(−γ·|G △ H|) (|G △ H| = squared distance of the membership vectors) and an
  unpenalised intercept; γ and the ridge penalty by leave-one-group-out cross-validation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from taskrel.arguments import real
from taskrel.errors import ConfigError, DataError
from taskrel.groups import group_name
from taskrel.predict.base import GainPredictor, group_affinity, membership
from taskrel.predict.regression import fit_ridge, group_folds

KERNEL_GAMMAS = (0.01, 0.03, 0.1, 0.3, 1.0)
KERNEL_ALPHAS = tuple(np.logspace(-4, 2, 13))


class TagPredictor(GainPredictor):
    """TAG's prediction: the mean incoming affinity from the other group members."""

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        pass

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        return group_affinity(self.affinity_, rows)


class HoaPredictor(GainPredictor):
    """Higher-order approximation from measured pair gains (uses every measured pair in `gains`)."""

    needs_affinity = False
    needs_pairs = True

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        pairs = measured[measured["members"].map(len) == 2]
        self.pair_gain_ = {(g, t): v for g, t, v in zip(pairs["members"], pairs["task"], pairs["gain"], strict=True)}

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        out = np.empty(len(rows))
        for k, (group, task) in enumerate(zip(rows["members"], rows["task"], strict=True)):
            values = []
            for other in group - {task}:
                key = (frozenset({task, other}), task)
                if key not in self.pair_gain_:
                    raise DataError(f"HOA needs the measured gain of pair {group_name(key[0], self.tasks_)!r}")
                values.append(self.pair_gain_[key])
            out[k] = np.mean(values)
        return out


class SurrogatePredictor(GainPredictor):
    """Per-task ridge on group membership (Li et al.'s linear surrogate), alpha by group CV."""

    needs_affinity = False

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        u = membership(list(train["members"]), self.tasks_)
        y = train["gain"].to_numpy(float)
        groups = train["group"].to_numpy()
        self.models_ = {}
        for task in self.tasks_:
            rows = (train["task"] == task).to_numpy()
            if rows.any():
                self.models_[task] = self._fit_task(u[rows], y[rows], groups[rows])

    def _fit_task(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
        return fit_ridge(x, y, groups)

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        u = membership(list(rows["members"]), self.tasks_)
        out = np.zeros(len(rows))
        for k, task in enumerate(rows["task"]):
            model = self.models_.get(task)
            if model is not None:
                out[k] = self._predict_task(model, u[k])
        return out

    def _predict_task(self, model: dict, u: np.ndarray) -> float:
        return float(u @ model["coef"] + model["intercept"])


class KernelSurrogatePredictor(SurrogatePredictor):
    """Per-task kernel ridge on group membership with an RBF kernel; γ and alpha by leave-one-group-out CV."""

    def __init__(self, gammas: tuple[float, ...] = KERNEL_GAMMAS, alphas: tuple[float, ...] = KERNEL_ALPHAS) -> None:
        self.gammas = gammas
        self.alphas = alphas
        self._check_params()

    def _check_params(self) -> None:
        for name in ("gammas", "alphas"):
            values = getattr(self, name)
            if isinstance(values, str) or np.ndim(values) != 1 or len(values) == 0:
                raise ConfigError(f"{name} must be a non-empty sequence of numbers > 0, got {values!r}")
            for k, value in enumerate(values):
                real(f"{name}[{k}]", value, 0.0, open_minimum=True)

    def _fit_task(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
        return _kernel_ridge(x, y, groups, self.gammas, self.alphas)

    def _predict_task(self, model: dict, u: np.ndarray) -> float:
        distance = ((model["x"] - u) ** 2).sum(axis=1)
        return float(np.exp(-model["gamma"] * distance) @ model["dual"] + model["intercept"])


def _kernel_ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray, gammas, alphas) -> dict:
    """RBF kernel ridge with intercept = mean of y; (γ, alpha) by group CV (intercept only below 3 groups)."""
    distance = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=-1)
    if len(np.unique(groups)) < 3:
        return {"x": x, "dual": np.zeros(len(y)), "intercept": float(y.mean()), "gamma": 0.0, "alpha": np.inf}
    folds = group_folds(groups, max_splits=len(np.unique(groups)))
    errors = np.zeros((len(gammas), len(alphas)))
    for g, gamma in enumerate(gammas):
        kernel = np.exp(-gamma * distance)
        for train, test in folds:
            centre = y[train].mean()
            for a, alpha in enumerate(alphas):
                dual = np.linalg.solve(kernel[np.ix_(train, train)] + alpha * np.eye(len(train)), y[train] - centre)
                errors[g, a] += ((kernel[np.ix_(test, train)] @ dual + centre - y[test]) ** 2).sum()
    g, a = np.unravel_index(int(np.argmin(errors)), errors.shape)
    kernel = np.exp(-gammas[g] * distance)
    dual = np.linalg.solve(kernel + alphas[a] * np.eye(len(y)), y - y.mean())
    return {"x": x, "dual": dual, "intercept": float(y.mean()), "gamma": float(gammas[g]), "alpha": float(alphas[a])}
