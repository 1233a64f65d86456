"""PTG transfer gain (Wang et al.): does adding task i to j's update help j beyond j alone?

Per step, from the same parameters and mini-batch:

    S(i → j) = 1 − L_j(after a step on {i, j}) / L_j(after a step on the reference of j)

A step on a set of tasks applies the sum of their gradients to the shared parameters and each
member's own head gradient to its head, with the optimiser's rule. The reference of j is the
doubled step {j, j} (``reference="doubled"``, twice j's gradients: the same number of loss terms
as a pair, as PTG's collectors do) or the plain step {j} (``reference="single"``). The diagonal is
0. Costs K(K−1)/2 + K trial steps per collected step.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from taskrel.affinity.collector import AffinityCollector
from taskrel.affinity.lookahead import trial_step
from taskrel.errors import ConfigError
from taskrel.gradients import unflatten
from taskrel.train.callbacks import StepContext

REFERENCES = ("doubled", "single")


class PtgTransferGain(AffinityCollector):
    """PTG's pairwise transfer gain S[source, target], time-averaged."""

    method = "ptg"
    needs_task_gradients = True

    def __init__(self, every: int = 1, reference: str = "doubled") -> None:
        if reference not in REFERENCES:
            raise ConfigError(f"reference must be one of {REFERENCES}, got {reference!r}")
        super().__init__(every)
        self.reference = reference

    def _step_on(self, ctx: StepContext, weights: dict[int, float]) -> torch.Tensor:
        """Losses after a trial step on tasks `weights` (task index → multiple of its gradient)."""
        if ctx.task_parameters is None:
            raise ConfigError("PTG's trial steps update the members' heads: give task_parameters= in the StepContext")
        shared = ctx.shared_parameters
        total = sum(w * ctx.task_gradients[k] for k, w in weights.items())
        params, grads = list(shared), list(unflatten(total, shared))
        for k, w in weights.items():
            params += ctx.task_parameters[k]
            grads += [w * g for g in ctx.head_gradients[k]]
        return trial_step(ctx, params, grads)

    def collect(self, ctx: StepContext) -> np.ndarray:
        n = len(ctx.tasks)
        scale = 2.0 if self.reference == "doubled" else 1.0
        reference = torch.stack([self._step_on(ctx, {j: scale})[j] for j in range(n)])
        gain = np.zeros((n, n))
        for i, j in itertools.combinations(range(n), 2):
            after = self._step_on(ctx, {i: 1.0, j: 1.0})
            gain[i, j] = float(1.0 - after[j] / reference[j])
            gain[j, i] = float(1.0 - after[i] / reference[i])
        return gain
