"""ETAP's ensemble gain predictor (Ayman et al., §3.2): affinity → gain map, then residual ridge.

Stage 1 maps the group affinity feature z(G → t) (mean affinity onto t from the other members,
eq. 7) to a gain with a B-spline basis and ridge regression (``mapping="spline"``; degree 2–6,
knots and alpha by cross-validation), an affine map (``mapping="affine"``, the ablation), or
whichever of the two has the lower cross-validated error (``mapping="auto"``).
Stage 2 (``residual=True``) fits one ridge to the stage-1 residuals of all (group, member task)
rows: residual(G → t) ≈ b_t + Σ_{i∈G} (s_i + w_{t,i}), a per-target offset, an effect s_i of having
i in the group shared by every target, and a target-specific effect w_{t,i} (the multi-hot
membership, per target); alpha by group-aware cross-validation.

Departures from the released code, each to avoid a known flaw: cross-validation folds are formed
over groups (row-level folds leak the other members of a group into the validation fold);
the spline setting is chosen by the one-standard-error rule (the plain minimum overfits a few
groups); stage-2 learns from out-of-fold stage-1 residuals (in-sample residuals of a flexible
spline are too small); and stage 2 learns only from rows of member tasks (not from zeros of
non-members), sharing member effects across targets so that a few groups inform every task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from taskrel.arguments import flag, integer
from taskrel.errors import ConfigError
from taskrel.predict.base import GainPredictor, group_affinity, membership
from taskrel.predict.regression import fit_affine, fit_ridge, fit_spline_ridge

MAPPINGS = ("spline", "affine", "auto")


class EtapPredictor(GainPredictor):
    """ETAP: stage 1 (spline or affine map of group affinity) + optional stage-2 residual ridge."""

    def __init__(self, mapping: str = "spline", residual: bool = True, max_splits: int = 5) -> None:
        self.mapping = mapping
        self.residual = residual
        self.max_splits = max_splits
        self._check_params()

    def _check_params(self) -> None:
        if self.mapping not in MAPPINGS:
            raise ConfigError(f"mapping must be one of {MAPPINGS}, got {self.mapping!r}")
        flag("residual", self.residual)
        integer("max_splits", self.max_splits, 2)  # cross-validation needs two folds

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        z = group_affinity(self.affinity_, train)
        y = train["gain"].to_numpy(float)
        groups = train["group"].to_numpy()
        candidates = []
        if self.mapping in ("spline", "auto"):
            candidates.append(fit_spline_ridge(z, y, groups, int(self.max_splits)))
        if self.mapping in ("affine", "auto"):
            candidates.append(fit_affine(z, y, groups, int(self.max_splits)))
        self.stage1_ = min(candidates, key=lambda c: c["cv_error"])
        oof = self.stage1_["oof"]
        fitted = self._stage1(z)
        residuals = y - np.where(np.isnan(oof), fitted, oof)
        self.stage2_ = fit_ridge(self._residual_features(train), residuals, groups) if self.residual else None

    def _stage1(self, z: np.ndarray) -> np.ndarray:
        if "slope" in self.stage1_:
            return self.stage1_["slope"] * z + self.stage1_["intercept"]
        return self.stage1_["basis"].transform(z[:, None]) @ self.stage1_["coef"] + self.stage1_["intercept"]

    def _residual_features(self, rows: pd.DataFrame) -> np.ndarray:
        """[target one-hot ⊗ membership | membership | target one-hot] for each (group, task) row."""
        members = membership(list(rows["members"]), self.tasks_)
        target = membership([[t] for t in rows["task"]], self.tasks_)
        specific = (target[:, :, None] * members[:, None, :]).reshape(len(rows), -1)
        return np.hstack([specific, members, target])

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        prediction = self._stage1(group_affinity(self.affinity_, rows))
        if self.stage2_ is not None:
            prediction += self._residual_features(rows) @ self.stage2_["coef"] + self.stage2_["intercept"]
        return prediction
