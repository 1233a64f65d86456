"""The total-gain predictor of Ayman, Mukhopadhyay, Laszka (2023, arXiv 2310.16241), on measured pairs.

It predicts one number per group, the group's *total* gain, from group features built on the
measured gains of every pair inside the group: the number of tasks and the mean, variance and
standard deviation over the group's pairs of the pair's total gain (the mean of its two members'
gains). A small feed-forward network (two sigmoid layers of 20 and 10 units, Adam, learning rate
0.005, as the released code's Chemical setting) is fit to the training groups' total gains (the
mean gain of their members). Every member of a predicted group gets the group's predicted total,
so the method is meant to be compared on group totals (the ETAP paper's Table 5).

Departures from the original, each forced by the inputs every predictor here shares: the total is
the unweighted mean of member gains (the original weights tasks by their single-task loss); the
task-level features of the original (dataset size, label variance, within-task distances) are not
available from a gain table and are left out; the output layer is linear (gains can be negative).
Like HOA it needs every pair inside a predicted group measured (``needs_pairs``).
"""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from taskrel.arguments import integer, real
from taskrel.errors import ConfigError, DataError
from taskrel.groups import Group, group_name
from taskrel.predict.base import GainPredictor


class AymanPredictor(GainPredictor):
    """Group total gain from pair-gain statistics with a small neural network (see the module docstring)."""

    needs_affinity = False
    needs_pairs = True

    def __init__(
        self, hidden: tuple[int, ...] = (20, 10), lr: float = 0.005, epochs: int = 1000, seed: int = 0
    ) -> None:
        self.hidden = hidden
        self.lr = lr
        self.epochs = epochs
        self.seed = seed
        self._check_params()

    def _check_params(self) -> None:
        if not isinstance(self.hidden, tuple | list) or not self.hidden:
            raise ConfigError(f"hidden must be a non-empty tuple of layer sizes (integers ≥ 1), got {self.hidden!r}")
        for k, size in enumerate(self.hidden):
            integer(f"hidden[{k}]", size, 1)
        real("lr", self.lr, 0.0, open_minimum=True)
        integer("epochs", self.epochs, 1)
        integer("seed", self.seed, 0, 2**32 - 1)  # scikit-learn's random_state range

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        pairs = measured[measured["members"].map(len) == 2]
        self.pair_total_ = pairs.groupby("group")["gain"].mean().to_dict()
        totals = train.groupby("group", sort=False).agg(members=("members", "first"), gain=("gain", "mean"))
        features = np.array([self._features(g) for g in totals["members"]])
        self.network_ = make_pipeline(
            StandardScaler(),
            MLPRegressor(hidden_layer_sizes=tuple(int(h) for h in self.hidden), activation="logistic",
                         learning_rate_init=float(self.lr), max_iter=int(self.epochs), random_state=int(self.seed)),
        )  # fmt: skip
        with warnings.catch_warnings():  # a fixed epoch budget, as the original; not reaching tol is expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.network_.fit(features, totals["gain"].to_numpy(float))

    def _features(self, group: Group) -> list[float]:
        values = []
        for a, b in combinations(sorted(group, key=self.tasks_.index), 2):
            name = group_name({a, b}, self.tasks_)
            if name not in self.pair_total_:
                raise DataError(f"the total-gain predictor needs the measured gains of pair {name!r}")
            values.append(self.pair_total_[name])
        return [len(group), float(np.mean(values)), float(np.var(values)), float(np.std(values))]

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        groups = rows.drop_duplicates("group").set_index("group")["members"]
        total = dict(zip(groups.index, self.network_.predict(np.array([self._features(g) for g in groups])),
                         strict=True))  # fmt: skip
        return rows["group"].map(total).to_numpy(float)
