"""What every gain predictor shares: input checking and the (group, task) row layout.

A predictor follows scikit-learn's conventions: constructor arguments are stored as given
(`sklearn.base.clone` works), `fit(affinity, gains)` validates its inputs and learns, and
`predict(groups)` returns one row per (group, member task) with the predicted gain
(gain(G → t) = (L_STL(t) − L_G(t)) / L_STL(t), positive = the group helps t); predictors with
``has_std`` add a ``gain_std`` column with ``predict(groups, return_std=True)``, and those with
``can_sample`` give joint posterior draws of the gains with ``sample(groups, draws, seed)``.
`gains` is a `GainTable` (its seed means are used) or a frame with columns group, task, gain.
Hyperparameters are checked when the predictor is built and again at `fit` (after `set_params`):
a value out of range raises `ConfigError` naming the argument and its valid range.
A `fit` that raises leaves the estimator unfitted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from taskrel.affinity.matrix import AffinityMatrix
from taskrel.arguments import integer
from taskrel.errors import ConfigError, DataError, NonFiniteError
from taskrel.gains import GainTable
from taskrel.groups import Group, group_name, make_group, ordered, parse_group

#: Rows predicted per call of a predictor's `_predict` (predictions of rows are independent).
PREDICT_CHUNK = 8192


def gain_frame(gains: GainTable | pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Mean measured gain per (group, task) as a frame with a parsed `members` column."""
    frame = gains.mean() if isinstance(gains, GainTable) else pd.DataFrame(gains)
    missing = [c for c in ("group", "task", "gain") if c not in frame.columns]
    if missing:
        raise DataError(f"measured gains lack column(s) {missing}")
    frame = frame.groupby(["group", "task"], sort=False, as_index=False)["gain"].mean()
    values = frame["gain"].to_numpy(float)
    if not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0, 0])
        raise NonFiniteError(
            f"measured gain of task {frame['task'][row]!r} in group {frame['group'][row]!r} is not finite"
        )
    members = [parse_group(g, tasks, "measured gains") for g in frame["group"]]
    for group, task in zip(members, frame["task"], strict=True):
        if task not in group:
            raise DataError(f"measured gain for task {task!r} in group {group_name(group, tasks)!r}: not a member")
    frame["members"] = members
    return frame


def as_groups(groups: Iterable[Group | str], tasks: Sequence[str]) -> list[Group]:
    return [parse_group(g, tasks) if isinstance(g, str) else make_group(g, tasks) for g in groups]


def member_rows(groups: Sequence[Group], tasks: Sequence[str]) -> pd.DataFrame:
    """One row per (group, member task), members in task order."""
    rows = [(group_name(g, tasks), t, g) for g in groups for t in ordered(g, tasks)]
    return pd.DataFrame(rows, columns=["group", "task", "members"])


def membership(groups: Sequence[Group], tasks: Sequence[str]) -> np.ndarray:
    """Multi-hot membership matrix (groups × tasks)."""
    index = {t: i for i, t in enumerate(tasks)}
    out = np.zeros((len(groups), len(tasks)))
    for r, g in enumerate(groups):
        out[r, [index[t] for t in g]] = 1.0
    return out


def group_affinity(affinity: AffinityMatrix, rows: pd.DataFrame) -> np.ndarray:
    """ETAP's group feature z(G → t): mean affinity onto t from the other members (0 for singletons)."""
    return np.array([affinity.incoming(g, t) for g, t in zip(rows["members"], rows["task"], strict=True)])


def one_blas_thread(method: Callable) -> Callable:
    """Run `method` with BLAS limited to one thread.

    Predictors factor and multiply matrices of at most a few thousand rows, where one thread is as
    fast as several; beside torch's threads or a sweep's training workers, several BLAS threads
    oversubscribe the cores and the same Cholesky factorisation runs an order of magnitude slower.
    """

    @functools.wraps(method)
    def limited(*args, **kwargs):
        with threadpool_limits(1, user_api="blas"):
            return method(*args, **kwargs)

    return limited


class GainPredictor(BaseEstimator):
    """Base class: subclasses implement `_fit(rows)` and `_predict(rows) -> gains` on member rows."""

    needs_affinity = True
    #: True when the method also needs the measured gain of every pair inside a predicted group.
    needs_pairs = False
    #: True when `predict(..., return_std=True)` gives a predictive standard deviation.
    has_std = False
    #: True when `sample(groups, draws, seed)` gives joint draws of the gains from the posterior.
    can_sample = False

    @one_blas_thread
    def fit(self, affinity: AffinityMatrix | None, gains: GainTable | pd.DataFrame) -> GainPredictor:
        self._unfit()
        try:
            self._check_params()
            if self.needs_affinity and affinity is None:
                raise ConfigError(f"{type(self).__name__} needs an affinity matrix")
            tasks = list(affinity.tasks) if affinity is not None else _tasks_of(gains)
            frame = gain_frame(gains, tasks)
            train = frame[frame["members"].map(len) >= 2].reset_index(drop=True)
            if train.empty:
                raise DataError("no measured gains of groups with two or more tasks to learn from")
            self.tasks_ = tuple(tasks)
            self.affinity_ = affinity
            self.n_groups_ = int(train["group"].nunique())
            self._fit(train, frame)
        except BaseException:
            self._unfit()
            raise
        return self

    def _unfit(self) -> None:
        """Drop every fitted attribute (scikit-learn's trailing-underscore convention)."""
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("_")]:
            delattr(self, name)

    @one_blas_thread
    def predict(self, groups: Iterable[Group | str], return_std: bool = False) -> pd.DataFrame:
        """Predicted gain per (group, member task); singletons are predicted 0 (STL itself).

        With ``return_std=True`` (only for predictors with ``has_std``) a ``gain_std`` column holds
        the predictive standard deviation of the measured gain (0 for singletons).
        """
        if not hasattr(self, "tasks_"):
            raise ConfigError(f"{type(self).__name__} is not fitted yet: call fit(affinity, gains) first")
        if return_std and not self.has_std:
            raise ConfigError(f"{type(self).__name__} gives no predictive standard deviation")
        rows = member_rows(as_groups(groups, self.tasks_), self.tasks_)
        rows["gain"] = 0.0
        if return_std:
            rows["gain_std"] = 0.0
        multi = np.flatnonzero((rows["members"].map(len) >= 2).to_numpy())
        for start in range(0, len(multi), PREDICT_CHUNK):  # rows are independent: chunks bound the memory
            part = multi[start : start + PREDICT_CHUNK]
            chosen = rows.iloc[part].reset_index(drop=True)
            if return_std:
                mean, std = self._predict_with_std(chosen)
                rows.iloc[part, rows.columns.get_loc("gain")] = mean
                rows.iloc[part, rows.columns.get_loc("gain_std")] = std
            else:
                rows.iloc[part, rows.columns.get_loc("gain")] = self._predict(chosen)
        return rows.drop(columns="members")

    @one_blas_thread
    def sample(self, groups: Iterable[Group | str], draws: int = 1, seed: int | None = None) -> pd.DataFrame:
        """`draws` joint posterior draws of the noise-free gain of every (group, member task).

        Long layout: columns group, task, draw (0 … draws − 1), gain; singletons are 0 in every draw.
        The draws are joint across rows (one draw is one plausible gain function), so they can be
        pushed through a decision such as the selection program (Thompson sampling).
        """
        if not hasattr(self, "tasks_"):
            raise ConfigError(f"{type(self).__name__} is not fitted yet: call fit(affinity, gains) first")
        if not self.can_sample:
            raise ConfigError(f"{type(self).__name__} gives no posterior draws")
        draws = integer("draws", draws, 1)
        rows = member_rows(as_groups(groups, self.tasks_), self.tasks_)
        values = np.zeros((len(rows), draws))
        multi = (rows["members"].map(len) >= 2).to_numpy()
        if multi.any():
            values[multi] = self._sample(rows[multi].reset_index(drop=True), np.random.default_rng(seed), draws)
        return pd.DataFrame({
            "group": np.repeat(rows["group"].to_numpy(), draws), "task": np.repeat(rows["task"].to_numpy(), draws),
            "draw": np.tile(np.arange(draws), len(rows)), "gain": values.ravel(),
        })  # fmt: skip

    def _sample(self, rows: pd.DataFrame, rng: np.random.Generator, draws: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _check_params(self) -> None:
        """Raise `ConfigError` for a hyperparameter out of range (subclasses with hyperparameters override it)."""

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_with_std(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


def _tasks_of(gains: GainTable | pd.DataFrame) -> list[str]:
    if isinstance(gains, GainTable):
        return list(gains.tasks)
    return list(dict.fromkeys(t for g in pd.DataFrame(gains)["group"] for t in str(g).split("|")))
