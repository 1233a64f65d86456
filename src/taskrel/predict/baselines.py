"""Baseline gain predictors users compare against.

* `TagPredictor` — TAG: the group affinity feature itself (mean affinity onto t from the other
  members), unscaled, no training groups used. Only its correlation is meaningful.
* `HoaPredictor` — Standley's higher-order approximation from measured pairs:
  ĝ(G → t) = mean over u ∈ G∖{t} of the measured gain of t in the pair {t, u}. It needs every
  pair inside G measured (n(n−1)/2 extra trainings).
* `SurrogatePredictor` — Li et al.'s linear surrogate: per task t, a ridge on the group's
  multi-hot membership fit to the measured gains of the training groups containing t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from taskrel.errors import DataError
from taskrel.groups import group_name
from taskrel.predict.base import GainPredictor, group_affinity, membership
from taskrel.predict.regression import fit_ridge


class TagPredictor(GainPredictor):
    """TAG's prediction: the mean incoming affinity from the other group members."""

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        pass

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        return group_affinity(self.affinity_, rows)


class HoaPredictor(GainPredictor):
    """Higher-order approximation from measured pair gains (uses every measured pair in `gains`)."""

    needs_affinity = False

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
                self.models_[task] = fit_ridge(u[rows], y[rows], groups[rows])

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        u = membership(list(rows["members"]), self.tasks_)
        out = np.zeros(len(rows))
        for k, task in enumerate(rows["task"]):
            model = self.models_.get(task)
            if model is not None:
                out[k] = u[k] @ model["coef"] + model["intercept"]
        return out
