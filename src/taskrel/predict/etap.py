"""ETAP's ensemble gain predictor (Ayman et al., §3.2): affinity → gain map, then residual ridge.

Stage 1 maps the group affinity feature z(G → t) (mean affinity onto t from the other members,
eq. 7) to a gain with a B-spline basis and ridge regression (``mapping="spline"``; degree 2–6,
knots and alpha by cross-validation) or an affine map (``mapping="affine"``, the ablation).
Stage 2 (``residual=True``) fits, per task t, a ridge on the group's multi-hot membership to the
stage-1 residuals of the training groups that contain t, alpha by cross-validation.

Departures from the released code, each to avoid a known flaw: cross-validation folds are formed
over groups (row-level folds leak the other members of a group into the validation fold);
stage-2 learns from out-of-fold stage-1 residuals (in-sample residuals of a flexible spline are
too small); and each task's residual model is fit only on groups containing it (not on zeros of
non-members).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from taskrel.errors import ConfigError
from taskrel.predict.base import GainPredictor, group_affinity, membership
from taskrel.predict.regression import fit_ridge, fit_spline_ridge, ridge_path

MAPPINGS = ("spline", "affine")


class EtapPredictor(GainPredictor):
    """ETAP: stage 1 (spline or affine map of group affinity) + optional stage-2 residual ridge."""

    def __init__(self, mapping: str = "spline", residual: bool = True, max_splits: int = 5) -> None:
        self.mapping = mapping
        self.residual = residual
        self.max_splits = max_splits

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        if self.mapping not in MAPPINGS:
            raise ConfigError(f"mapping must be one of {MAPPINGS}, got {self.mapping!r}")
        z = group_affinity(self.affinity_, train)
        y = train["gain"].to_numpy(float)
        groups = train["group"].to_numpy()
        if self.mapping == "spline":
            self.stage1_ = fit_spline_ridge(z, y, groups, self.max_splits)
            oof = self.stage1_["oof"]
        else:
            coef, intercept = ridge_path(z[:, None], y, [0.0])
            self.stage1_ = {"slope": float(coef[0, 0]), "intercept": float(intercept[0])}
            oof = np.full(len(y), np.nan)
        fitted = self._stage1(z)
        residuals = y - np.where(np.isnan(oof), fitted, oof)
        self.stage2_ = {}
        if self.residual:
            u = membership(list(train["members"]), self.tasks_)
            for task in self.tasks_:
                rows = (train["task"] == task).to_numpy()
                if rows.any():
                    self.stage2_[task] = fit_ridge(u[rows], residuals[rows], groups[rows])

    def _stage1(self, z: np.ndarray) -> np.ndarray:
        if self.mapping == "affine":
            return self.stage1_["slope"] * z + self.stage1_["intercept"]
        return self.stage1_["basis"].transform(z[:, None]) @ self.stage1_["coef"] + self.stage1_["intercept"]

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        prediction = self._stage1(group_affinity(self.affinity_, rows))
        if self.stage2_:
            u = membership(list(rows["members"]), self.tasks_)
            for k, task in enumerate(rows["task"]):
                model = self.stage2_.get(task)
                if model is not None:
                    prediction[k] += u[k] @ model["coef"] + model["intercept"]
        return prediction
