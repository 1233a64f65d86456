"""TAG's lookahead affinity (Fifty et al.): the effect of one trial step on task i on every task j.

    Z(i → j) = (1 − L_j(θ_s after a step on task i) / L_j(θ_s)) / η          A[source i, target j]

The trial step is the optimiser's own rule read from its state (`taskrel.affinity.updates`: SGD
with momentum, dampening, Nesterov and weight decay; Adam/AdamW), applied to the shared
parameters only (the heads stay). Trial parameters are new tensors; all K lookaheads and the
reference L_j(θ_s) are evaluated in one `ctx.evaluate` call (`torch.func.functional_call`, vmap or
loop), so nothing of the live model or optimiser is touched. Trials run in evaluation mode:
BatchNorm normalises with its running statistics, frozen (read, never written), Dropout is off;
the reference L_j(θ_s) is measured the same way, so both sides of the ratio see the same function.

``sample`` < 1 takes the lookaheads of a random subset of the source tasks per collected step (a
`torch.Generator` of the collector's own, seeded by ``seed``: the global random state is not used).
"""

from __future__ import annotations

import torch

from taskrel.affinity.collector import AffinityCollector
from taskrel.affinity.updates import flat_trial_parameters, split_rows
from taskrel.errors import ConfigError
from taskrel.train.callbacks import StepContext


class SubsetSampler:
    """Draws ⌈fraction · n⌉ of n items per call from its own seeded generator (None when fraction is 1)."""

    def __init__(self, fraction: float, seed: int) -> None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"sample must be a fraction in (0, 1], got {fraction}")
        self.fraction = fraction
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, n: int) -> list[int] | None:
        if self.fraction == 1:
            return None
        size = max(1, round(self.fraction * n))
        return sorted(torch.randperm(n, generator=self.generator)[:size].tolist())

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class TagAffinity(AffinityCollector):
    """TAG's lookahead inter-task affinity on the shared parameters, A[source, target] (module docstring)."""

    method = "tag"
    needs_task_gradients = True

    def __init__(self, every: int = 1, weighting: str | None = None, sample: float = 1.0, seed: int = 0) -> None:
        super().__init__(every, weighting)
        self.sampler = SubsetSampler(sample, seed)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sampler.load_state_dict(state["sampler"])

    def collect(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        k = len(ctx.tasks)
        sources = self.sampler(k)
        grads = ctx.task_gradients if sources is None else ctx.task_gradients[sources]
        shared = ctx.shared_parameters
        live = torch.cat([p.detach().reshape(1, -1) for p in shared], dim=1)
        trial = torch.cat([flat_trial_parameters(ctx.optimizer, shared, grads), live])
        stacked = [p.contiguous() for p in split_rows(trial, shared)]  # rows: the trials, then the live parameters
        losses = ctx.evaluate(shared=stacked).to(torch.float64)
        rows = (1.0 - losses[:-1] / losses[-1]) / ctx.lr
        if sources is None:
            return rows, None
        values = rows.new_zeros(k, k)
        observed = torch.zeros(k, k, dtype=torch.bool, device=rows.device)
        values[sources], observed[sources] = rows, True
        return values, observed
