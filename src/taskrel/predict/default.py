"""The recommended gain predictor: a stack of nested hierarchical models weighted by held-out error.

`DefaultPredictor` fits `HierarchicalPredictor` with each of a few nested term sets (per-target
offsets; plus target-specific member effects; then either plus the affinity feature or plus a
slope on the log group size, which extrapolates to groups larger than the trained ones) and
predicts the convex combination of their predictions whose leave-one-group-out squared error on
the training groups is lowest (weights on a grid of step ``step`` on the simplex; ties go to the
weight vector found first, which favours the simpler models). The rule uses the training groups
only: nothing about the groups to be predicted enters it. The affinity term is a candidate only
when an affinity matrix is given, so the predictor also works from measured gains alone. With a
single training group nothing can be held out and the first candidate alone is used.

The predictive standard deviation is that of the mixture: √(Σ_k w_k (σ_k² + (μ_k − μ)²)); a
posterior draw picks candidate k with probability w_k and draws from it.
Gains follow gain(G → t) = (L_STL(t) − L_G(t)) / L_STL(t), positive = the group helps t.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from taskrel.arguments import real
from taskrel.errors import ConfigError
from taskrel.predict.base import GainPredictor, one_blas_thread
from taskrel.predict.hierarchical import TERMS, HierarchicalPredictor

CANDIDATES = (("offset",), ("offset", "specific"), ("offset", "specific", "affinity"), ("offset", "specific", "size"))


class DefaultPredictor(GainPredictor):
    """Held-out-error-weighted stack of hierarchical gain models (see the module docstring)."""

    needs_affinity = False
    has_std = True
    can_sample = True

    def __init__(self, candidates: Sequence[Sequence[str]] = CANDIDATES, step: float = 0.05) -> None:
        self.candidates = candidates
        self.step = step
        self._check_params()

    def _check_params(self) -> None:
        candidates = self.candidates
        if isinstance(candidates, str) or not isinstance(candidates, Sequence) or not candidates:
            raise ConfigError(f"candidates must be a non-empty list of term sets from {TERMS}, got {candidates!r}")
        for terms in candidates:
            if isinstance(terms, str) or not isinstance(terms, Sequence) or not terms or set(terms) - set(TERMS):
                raise ConfigError(f"candidates must be non-empty term sets from {TERMS}, got {candidates!r}")
        step = real("step", self.step, 0.0, 1.0, open_minimum=True)
        if abs(1 / step - round(1 / step)) > 1e-9:
            raise ConfigError(f"step must be 1/k for a whole number k ≥ 1, got {self.step!r}")

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        candidates = [tuple(c) for c in self.candidates]
        usable = [c for c in candidates if self.affinity_ is not None or "affinity" not in c]
        if not usable:
            raise ConfigError("every candidate needs the affinity term, but no affinity matrix was given")
        frame = train[["group", "task", "gain"]]
        self.models_ = [HierarchicalPredictor(terms=terms).fit(self.affinity_, frame) for terms in usable]
        if self.n_groups_ > 1:
            held = [model.leave_group_out() for model in self.models_]
            self.weights_ = _best_mixture(np.column_stack([h["predicted"] for h in held]),
                                          held[0]["gain"].to_numpy(float), round(1 / self.step))  # fmt: skip
        else:
            self.weights_ = np.eye(len(self.models_))[0]

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        return np.column_stack([model._predict(rows) for model in self.models_]) @ self.weights_

    def _predict_with_std(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        parts = [model._predict_with_std(rows) for model in self.models_]
        means = np.column_stack([m for m, _ in parts])
        stds = np.column_stack([s for _, s in parts])
        mean = means @ self.weights_
        return mean, np.sqrt((stds**2 + (means - mean[:, None]) ** 2) @ self.weights_)

    def _sample(self, rows: pd.DataFrame, rng: np.random.Generator, draws: int) -> np.ndarray:
        component = rng.choice(len(self.models_), size=draws, p=self.weights_ / self.weights_.sum())
        out = np.empty((len(rows), draws))
        for k, model in enumerate(self.models_):
            columns = np.flatnonzero(component == k)
            if len(columns):
                out[:, columns] = model._sample(rows, rng, len(columns))
        return out

    @one_blas_thread
    def leave_group_out(self) -> pd.DataFrame:
        """Leave-one-group-out predictions of the training rows: group, task, gain, predicted.

        Each component's closed form (`HierarchicalPredictor.leave_group_out`, fitted variances kept),
        mixed by the fitted weights; those weights were chosen on these same predictions.
        """
        held = [model.leave_group_out() for model in self.models_]
        mixed = np.column_stack([h["predicted"].to_numpy() for h in held]) @ self.weights_
        return held[0][["group", "task", "gain"]].assign(predicted=mixed)

    def mixture(self) -> dict[str, float]:
        """Weight of every candidate model, keyed by its terms joined with ``+``."""
        return {"+".join(m.terms_): float(w) for m, w in zip(self.models_, self.weights_, strict=True)}


def _best_mixture(predictions: np.ndarray, measured: np.ndarray, steps: int) -> np.ndarray:
    """Weights on the simplex grid {k/steps} minimising the mean squared error of predictions @ w."""
    best_error, best = np.inf, None
    k = predictions.shape[1]
    for head in itertools.product(range(steps + 1), repeat=k - 1):
        if sum(head) > steps:
            continue
        weights = np.array([steps - sum(head), *head], float) / steps  # all on the first, simplest, first
        error = float(np.mean((predictions @ weights - measured) ** 2))
        if error < best_error - 1e-15:
            best_error, best = error, weights
    return best
