"""AuxiNash: asymmetric Nash bargaining with preferences learned for a main task.

The shared update is Σ α_i g_i with Gα = p/α (see `bargaining`); p says how much bargaining power
each task has. With ``meta_loss`` given, p is learned: every `hypergrad_every` steps the
hypergradient of the main-task loss on a separate batch (``meta_loss()``) with respect to p is
estimated (`hypergradient.preference_hypergradient`) and p takes one SGD step, then is projected
onto {p ≥ `min_preference`, Σp = K} (so uniform preferences are all ones and give Nash-MTL
exactly; the reference clamps and rescales instead, which can leave entries below the floor).
Defaults are those of the reference implementation: N_p = 25, SGD(lr 5e-3, momentum 0.9),
meta-gradient clipped to norm 1, Neumann series of 3 terms with η = 1e-4, p ≥ 1e-4.

As in the reference, the meta-optimiser is fed the Neumann sum without its η factor, i.e. the
hypergradient divided by η; its learning rate and clipping are on that scale. Unlike the
reference, the hypergradient is first projected onto the plane Σp = K (its mean is removed): the
renormalisation discards the other component anyway, and left in, it dominates the clipped norm
near Pareto-stationary points, where changing p mostly rescales α without turning the update.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from taskrel.errors import ConfigError, ShapeError
from taskrel.weighting.bargaining import positive_vector
from taskrel.weighting.hypergradient import preference_hypergradient
from taskrel.weighting.methods import NashMTL


class AuxiNash(NashMTL):
    """Nash bargaining with preferences p (fixed, or learned from ``meta_loss``).

    ``meta_loss``: a callable returning the main-task loss on a fresh batch (graph attached),
    called every `hypergrad_every` steps; None keeps p fixed. `preferences`: initial p (any
    positive vector, renormalised to sum K; default uniform).
    """

    def __init__(
        self,
        tasks: Sequence[str] | int,
        preferences: Sequence[float] | None = None,
        *,
        meta_loss: Callable[[], torch.Tensor] | None = None,
        hypergrad_every: int = 25,
        meta_lr: float = 5e-3,
        meta_momentum: float = 0.9,
        meta_max_norm: float = 1.0,
        neumann_scale: float = 1e-4,
        neumann_terms: int = 3,
        min_preference: float = 1e-4,
        max_norm: float | None = 1.0,
        update_every: int = 1,
        max_amplification: float = 1e6,
        on_near_stationary: str = "regularise",
    ) -> None:
        super().__init__(
            tasks,
            max_norm=max_norm,
            update_every=update_every,
            max_amplification=max_amplification,
            on_near_stationary=on_near_stationary,
        )
        if hypergrad_every < 1:
            raise ConfigError(f"hypergrad_every must be ≥ 1, got {hypergrad_every}")
        if not 0 < min_preference < 1:
            raise ConfigError(f"min_preference must be in (0, 1), got {min_preference}")
        if not (meta_lr > 0 and 0 <= meta_momentum < 1 and meta_max_norm > 0):
            raise ConfigError(
                f"meta optimiser needs meta_lr > 0, 0 ≤ meta_momentum < 1 and meta_max_norm > 0, "
                f"got {meta_lr}, {meta_momentum} and {meta_max_norm}"
            )
        if not (neumann_scale > 0 and neumann_terms >= 0):
            raise ConfigError(f"Neumann series needs scale > 0 and terms ≥ 0, got {neumann_scale} and {neumann_terms}")
        initial = (
            np.ones(self.n_tasks) if preferences is None else positive_vector(preferences, self.n_tasks, "preferences")
        )
        self.meta_loss = meta_loss
        self.hypergrad_every = int(hypergrad_every)
        self.meta_max_norm = meta_max_norm
        self.neumann_scale = neumann_scale
        self.neumann_terms = neumann_terms
        self.min_preference = min_preference
        self._p = torch.tensor(self.n_tasks * initial / initial.sum(), dtype=torch.float64)
        self.meta_optimizer = torch.optim.SGD([self._p], lr=meta_lr, momentum=meta_momentum)
        self.last_hypergradient: np.ndarray | None = None

    @property
    def learns_preferences(self) -> bool:
        return self.meta_loss is not None

    @property
    def preferences(self) -> np.ndarray:
        """Current preferences p (positive, summing to K)."""
        return self._p.detach().numpy().copy()

    def bargaining_preferences(self) -> np.ndarray:
        return self.preferences

    def _due_extra_step(self) -> bool:
        return self.learns_preferences and self.step % self.hypergrad_every == 0

    def _extra_step(self, losses: list[torch.Tensor], shared: list[torch.Tensor], grads: torch.Tensor | None) -> None:
        if self._due_extra_step():
            self.update_preferences(self.meta_loss(), losses, shared, grads)

    def update_preferences(
        self,
        meta_loss: torch.Tensor,
        losses: Sequence[torch.Tensor],
        shared_parameters: Sequence[torch.Tensor],
        grads: torch.Tensor,
    ) -> np.ndarray:
        """One meta step on p from the main-task loss `meta_loss`; returns the new p.

        `losses`/`grads` are the current training batch's task losses and their (K, P) gradients
        on `shared_parameters`; the bargaining solution of the last `combine` call weights them.
        """
        if self.solution is None:
            if self.step > 0 and not self.active.any():
                return self.preferences  # every gradient vanished: nothing to learn from this step
            raise ConfigError("update_preferences needs a bargaining solution: call backward first")
        index = np.flatnonzero(self.active)  # tasks that sat the step out keep their preference
        hypergradient = np.zeros(self.n_tasks)
        hypergradient[index] = preference_hypergradient(
            meta_loss,
            [losses[i] for i in index],
            shared_parameters,
            grads[torch.from_numpy(index).to(grads.device)],
            self.solution,
            neumann_scale=self.neumann_scale,
            neumann_terms=self.neumann_terms,
        )
        self.last_hypergradient = hypergradient
        tangent = np.zeros(self.n_tasks)  # p is renormalised to sum K: only the part along that plane acts
        tangent[index] = hypergradient[index] - hypergradient[index].mean()
        self._p.grad = torch.from_numpy(tangent / self.neumann_scale)
        torch.nn.utils.clip_grad_norm_([self._p], self.meta_max_norm)
        self.meta_optimizer.step()
        projected = project_preferences(self.preferences, self.min_preference, float(self.n_tasks))
        with torch.no_grad():
            self._p.copy_(torch.from_numpy(projected))
        return self.preferences

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "preferences": self.preferences.tolist(),
            "meta_optimizer": copy.deepcopy(self.meta_optimizer.state_dict()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        preferences = np.asarray(state["preferences"], dtype=np.float64)
        if preferences.shape != (self.n_tasks,):
            raise ShapeError(f"state has {preferences.size} preferences for {self.n_tasks} tasks")
        with torch.no_grad():
            self._p.copy_(torch.from_numpy(preferences))
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])


def project_preferences(p: np.ndarray, floor: float, total: float) -> np.ndarray:
    """Euclidean projection of p onto {q : q_i ≥ floor, Σ q = total} (needs floor·K < total).

    Entries are shifted down by a common amount; those that would fall below the floor are held
    at it and the shift is recomputed over the rest (Michelot's algorithm, at most K rounds).
    """
    free = np.ones(len(p), dtype=bool)
    while True:
        shift = (p[free].sum() - (total - floor * np.count_nonzero(~free))) / np.count_nonzero(free)
        below = free & (p - shift < floor)
        if not below.any():
            return np.where(free, p - shift, floor)
        free &= ~below
