"""ETAP affinity score (Ayman et al., eq. 5–6): first-order effect of task i's update on task j.

Per step, with g_j = ∂L_j/∂θ_shared and u_i the update direction task i alone would produce
(−Δθ_i / η under the optimiser's rule):

    z(i → j) = ⟨g_j, u_i⟩ / L_j          (``normalize=False``: without the division by L_j)

Without momentum u_i = g_i, so z(i → j) = ⟨g_j, g_i⟩ / L_j. With ``momentum=True`` u_i is the
optimiser's own direction read from its state (`taskrel.affinity.updates`: SGD's momentum buffer
with dampening, Nesterov and weight decay, or Adam's moments). This is the paper's eq. 5 divided
by η, i.e. on TAG's scale: it is the η → 0 limit of TAG's lookahead (1 − L_j(after i)/L_j) / η.
With ``momentum=False`` only the Gram matrix ⟨g_i, g_j⟩ is needed (`ctx.task_gram`), which a trainer
may compute without forming the per-task gradients (`taskrel.gradients.shared_input_backward`);
otherwise the per-task gradients themselves. Everything stays on the parameters' device.

**Which direction.** The default scores the raw gradient; ``momentum=True`` the optimiser's step.
Neither tracks measured pair gains better on every problem (docs/benchmarks.md, "Affinity vs
measured gain": Adam's step is ahead on ETTh1, the gradient on Chemical and on the planted-cluster
problem of the grouping tests, where Adam's step loses the clusters). The step carries the
optimiser's history, the same for every source task, into each u_i. The direction used is stated
in the matrix (`AffinityMatrix.update`).

The default aggregation is ``weighting="validation"``: its pairwise affinity tracks measured pair
gains where the plain time average (``weighting="steps"``, ETAP eq. 6) does not (docs/benchmarks.md).
Validation weighting needs the loop to call `on_epoch_end` with ``logs["val_loss"]``; in a loop that
does not, use ``weighting="steps"``.
"""

from __future__ import annotations

import dataclasses

import torch

from taskrel.affinity.collector import AffinityCollector
from taskrel.affinity.matrix import AffinityMatrix
from taskrel.affinity.updates import update_directions
from taskrel.train.callbacks import StepContext


class EtapAffinity(AffinityCollector):
    """ETAP's affinity score, aggregated over collected steps; A[source, target] (module docstring).

    `momentum`: False (default) scores the raw gradient, True the optimiser's own step.
    """

    method = "etap"
    default_weighting = "validation"  # the best-scoring variant on Chemical (module docstring)

    def __init__(
        self, every: int = 1, momentum: bool = False, normalize: bool = True, weighting: str | None = None
    ) -> None:
        super().__init__(every, weighting)
        self.momentum = momentum
        self.normalize = normalize
        self.needs_task_gradients = momentum
        self.needs_task_gram = not momentum

    def reset(self) -> None:
        super().reset()
        self.update = ""

    def state_dict(self) -> dict:
        return {**super().state_dict(), "update": self.update}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.update = state["update"]

    def collect(self, ctx: StepContext) -> tuple[torch.Tensor, None]:
        if self.momentum:
            self.update = f"{type(ctx.optimizer).__name__} step"
            grads = ctx.task_gradients.to(torch.float64)
            z = update_directions(ctx.optimizer, ctx.shared_parameters, grads) @ grads.T  # z[i, j] = <u_i, g_j>
        else:
            self.update = "gradient"
            z = ctx.task_gram
        if self.normalize:
            z = z / ctx.loss_values[None, :]
        return z, None

    def matrix(self, weighting: str | None = None) -> AffinityMatrix:
        return dataclasses.replace(super().matrix(weighting), update=self.update)
