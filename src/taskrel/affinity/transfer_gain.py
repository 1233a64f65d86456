"""PTG transfer gain (Wang et al.): does adding task i to j's update help j beyond j alone?

Per step, from the same parameters and mini-batch:

    S(i → j) = 1 − L_j(after a step on {i, j}) / L_j(after a step on the reference of j)

A step on a set of tasks applies the sum of their gradients to the shared parameters and each
member's own head gradient to its head, with the optimiser's rule read from its state
(`taskrel.affinity.updates`). The reference of j is the doubled step {j, j} (``reference="doubled"``,
twice j's gradients: the same number of loss terms as a pair, as PTG's collectors do) or the plain
step {j} (``reference="single"``). The diagonal is 0.

Trial parameters are new tensors evaluated with `ctx.evaluate` (nothing live is written); trials
run in evaluation mode: BatchNorm normalises with its running statistics, frozen (read, never
written), Dropout is off. Cost per collected step: the losses of the two members after each of the
K(K−1)/2 pair steps and of j after its reference step. When each task's loss reads only its own
rows (``ctx.evaluator.separable``, multi-input data) that is ≈ K all-task forwards, evaluated per
target j in one batched call; otherwise one forward per trial step.

PTG's cheaper collection modes (seed 000): ``sample`` < 1 takes a random subset of the pairs at each
collected step (the collector's own seeded generator; entries are averaged over the steps that
observed them), ``every`` = k collects every k-th step only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from taskrel.affinity.collector import AffinityCollector
from taskrel.affinity.lookahead import SubsetSampler
from taskrel.affinity.updates import split_rows, trial_parameters
from taskrel.errors import ConfigError
from taskrel.train.callbacks import StepContext

REFERENCES = ("doubled", "single")


class PtgTransferGain(AffinityCollector):
    """PTG's pairwise transfer gain S[source, target], aggregated over collected steps (module docstring)."""

    method = "ptg"
    needs_task_gradients = True

    def __init__(
        self,
        every: int = 1,
        reference: str = "doubled",
        weighting: str | None = None,
        sample: float = 1.0,
        seed: int = 0,
    ) -> None:
        if reference not in REFERENCES:
            raise ConfigError(f"reference must be one of {REFERENCES}, got {reference!r}")
        super().__init__(every, weighting)
        self.reference = reference
        self.sampler = SubsetSampler(sample, seed)

    def collect(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        if ctx.task_parameters is None:
            raise ConfigError("PTG's trial steps update the members' heads: give task_parameters= in the StepContext")
        k, opt, shared = len(ctx.tasks), ctx.optimizer, ctx.shared_parameters
        if k < 2:  # no pair: the diagonal is 0
            return ctx.loss_values.new_zeros(k, k), None
        pairs = list(itertools.combinations(range(k), 2))
        chosen = self.sampler(len(pairs))
        if chosen is not None:
            pairs = [pairs[c] for c in chosen]
        targets = sorted({t for pair in pairs for t in pair})
        scale = 2.0 if self.reference == "doubled" else 1.0
        g = ctx.task_gradients
        first, second = ([pair[side] for pair in pairs] for side in (0, 1))
        trials = _Trials(
            trial_parameters(opt, shared, split_rows(g[first] + g[second], shared)),
            trial_parameters(opt, shared, split_rows(scale * g[targets], shared)),
            {t: self._head_trials(ctx, t, scale) for t in targets},
            {t: [p.detach() for p in ctx.task_parameters[t]] for t in targets},
            {t: r for r, t in enumerate(targets)},
        )
        gain = g.new_zeros(k, k, dtype=torch.float64)
        observed = torch.eye(k, dtype=torch.bool, device=g.device)
        if ctx.evaluator is not None and ctx.evaluator.separable:
            for t in targets:  # the trials whose loss on t is needed, evaluated on t's rows only
                rows = [n for n, pair in enumerate(pairs) if t in pair]
                losses = ctx.evaluate(**trials.for_target(t, rows), tasks=(t,))[:, 0].to(torch.float64)
                sources = [i if j == t else j for i, j in (pairs[n] for n in rows)]
                gain[sources, t] = 1.0 - losses[:-1] / losses[-1]
                observed[sources, t] = True
            return gain, observed
        losses = ctx.evaluate(**trials.all(pairs)).to(torch.float64)  # rows: pairs, then references; columns: tasks
        m = len(pairs)
        pair_rows = torch.arange(m, device=g.device)
        for source, target in ((first, second), (second, first)):
            reference = [m + trials.position[t] for t in target]
            gain[source, target] = 1.0 - losses[pair_rows, target] / losses[reference, target]
            observed[source, target] = True
        return gain, observed

    @staticmethod
    def _head_trials(ctx: StepContext, task: int, scale: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Head `task`'s trial values (1, *shape) after its own gradient, and after `scale` times it."""
        params, grads = ctx.task_parameters[task], ctx.head_gradients[task]
        one = trial_parameters(ctx.optimizer, params, [x.unsqueeze(0) for x in grads])
        ref = one if scale == 1 else trial_parameters(ctx.optimizer, params, [scale * x.unsqueeze(0) for x in grads])
        return one, ref


@dataclass(frozen=True)
class _Trials:
    """One step's trial parameters: shared after each pair and each reference step, heads after theirs."""

    pairs: list[torch.Tensor]  # per shared parameter (pairs, *shape)
    references: list[torch.Tensor]  # per shared parameter (targets, *shape)
    heads: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]]  # task -> (after one step, after the reference)
    live: dict[int, list[torch.Tensor]]  # task -> its head's live values
    position: dict[int, int]  # task -> its row in `references`

    def for_target(self, task: int, rows: list[int]) -> dict:
        """`ctx.evaluate` arguments: the pair steps `rows` (all containing `task`), then `task`'s reference."""
        index = torch.tensor(rows, device=self.pairs[0].device)
        r = self.position[task]
        one, ref = self.heads[task]
        return {
            "shared": [torch.cat([p[index], q[r : r + 1]]) for p, q in zip(self.pairs, self.references, strict=True)],
            "heads": {task: [torch.cat([o.expand(len(rows), *o.shape[1:]), h]) for o, h in zip(one, ref, strict=True)]},
        }

    def all(self, pairs: list[tuple[int, int]]) -> dict:
        """`ctx.evaluate` arguments: every pair step, then every reference step; heads of non-members live."""
        heads = {}
        for t, (one, ref) in self.heads.items():
            member = torch.tensor([t in pair for pair in pairs], device=self.pairs[0].device)
            heads[t] = []
            for live, o, h in zip(self.live[t], one, ref, strict=True):
                after_pairs = torch.where(member.view(-1, *[1] * (o.dim() - 1)), o, live)
                refs = live.expand(len(self.position), *o.shape[1:]).clone()
                refs[self.position[t]] = h[0]
                heads[t].append(torch.cat([after_pairs, refs]))
        shared = [torch.cat([p, q]) for p, q in zip(self.pairs, self.references, strict=True)]
        return {"shared": shared, "heads": heads}
