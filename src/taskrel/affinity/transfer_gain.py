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
from taskrel.affinity.updates import flat_trial_parameters, split_rows
from taskrel.choices import PTG_REFERENCES as REFERENCES
from taskrel.errors import ConfigError
from taskrel.train.callbacks import StepContext


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

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sampler.load_state_dict(state["sampler"])

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
        g = ctx.task_gradients
        scale = 2.0 if self.reference == "doubled" else 1.0
        plan = _Plan.of(k, pairs, scale, g)
        steps = plan.selection @ g  # rows: the pairs' summed gradients, then the references'
        trial = flat_trial_parameters(opt, shared, steps)
        head_params, head_trial, own = self._head_trials(ctx, plan.target_list, scale)
        gain = g.new_zeros(k, k, dtype=torch.float64)
        observed = torch.eye(k, dtype=torch.bool, device=g.device)
        if ctx.evaluator is not None and ctx.evaluator.separable:
            # per target: its pairs, then its reference; one contiguous copy per parameter (vmap runs faster on them)
            by_target = [p.index_select(0, plan.gather) for p in split_rows(trial, shared)]
            heads_for = {}  # trials n -> every head's values: after its own step n − 1 times, then after its reference
            values = []
            for t, (start, end) in zip(plan.target_list, plan.spans, strict=True):  # on t's rows only
                n = end - start
                if n not in heads_for:
                    heads_for[n] = split_rows(head_trial.index_select(0, plan.head_rows[n]), head_params)
                losses = ctx.evaluate(
                    shared=[p[start:end] for p in by_target], heads={t: heads_for[n][own[t]]}, tasks=(t,)
                )[:, 0].to(torch.float64)
                values.append(1.0 - losses[:-1] / losses[-1])
            gain[plan.sources, plan.columns] = torch.cat(values)
        else:
            per_parameter = split_rows(head_trial, head_params)
            heads = self._all_heads(ctx, pairs, plan, {t: per_parameter[own[t]] for t in plan.target_list})
            trials = [p.contiguous() for p in split_rows(trial, shared)]
            losses = ctx.evaluate(shared=trials, heads=heads).to(torch.float64)
            m = len(pairs)
            pair_rows = torch.arange(m, device=g.device)
            for source, target in ((plan.first, plan.second), (plan.second, plan.first)):
                reference = m + plan.position[target]
                gain[source, target] = 1.0 - losses[pair_rows, target] / losses[reference, target]
        observed[plan.sources, plan.columns] = True
        return gain, observed

    @staticmethod
    def _head_trials(ctx: StepContext, targets: list[int], scale: float) -> tuple[list, torch.Tensor, dict]:
        """The targets' head parameters, their trial values flattened (2, P_heads): after each head's own
        step, after its reference step; and each target's slice of the parameter list."""
        params, own = [], {}
        for t in targets:
            own[t] = slice(len(params), len(params) + len(ctx.task_parameters[t]))
            params += ctx.task_parameters[t]
        if not params:  # the tasks have no parameters of their own
            return params, ctx.loss_values.new_zeros(2, 0), own
        grads = torch.cat([x.reshape(-1) for t in targets for x in ctx.head_gradients[t]])
        return params, flat_trial_parameters(ctx.optimizer, params, torch.stack([grads, scale * grads])), own

    @staticmethod
    def _all_heads(ctx: StepContext, pairs, plan: _Plan, heads: dict[int, list[torch.Tensor]]) -> dict:
        """Every target's head for every trial row: after its step in the pairs it belongs to and in its own
        reference, live elsewhere."""
        m, count = len(pairs), len(plan.target_list)
        out = {}
        for t, values in heads.items():
            member = torch.tensor([t in pair for pair in pairs] + [False] * count, device=plan.first.device)
            reference = m + plan.target_list.index(t)
            out[t] = []
            for live, h in zip(ctx.task_parameters[t], values, strict=True):
                rows = torch.where(member.view(-1, *[1] * live.dim()), h[:1], live.detach().unsqueeze(0))
                rows[reference] = h[1]
                out[t].append(rows)
        return out


@dataclass(frozen=True)
class _Plan:
    """Index tensors of one set of pairs: trial rows are the pairs, then one reference per target."""

    selection: torch.Tensor  # (pairs + targets, K): each trial step's gradient as a combination of the tasks'
    first: torch.Tensor  # (m,) first member of each pair
    second: torch.Tensor  # (m,) second member
    target_list: list[int]  # the tasks in some pair, ascending
    position: torch.Tensor  # task -> its reference's index among the targets
    gather: torch.Tensor  # trial rows target by target: the pairs containing it, then its reference
    spans: list[tuple[int, int]]  # each target's slice of `gather`
    head_rows: dict[int, torch.Tensor]  # trials n -> rows of a head's (one step, reference) values: n − 1 × 0, then 1
    sources: torch.Tensor  # per observed entry (source, target), target by target as in `gather`
    columns: torch.Tensor

    @classmethod
    def of(cls, k: int, pairs: list[tuple[int, int]], scale: float, like: torch.Tensor) -> _Plan:
        key = (k, tuple(pairs), scale, like.device, like.dtype)
        if key not in _PLANS:
            m = len(pairs)
            targets = sorted({t for pair in pairs for t in pair})
            selection = torch.zeros(m + len(targets), k, dtype=like.dtype)
            for n, (i, j) in enumerate(pairs):
                selection[n, [i, j]] = 1.0
            selection[m + torch.arange(len(targets)), targets] = scale
            position = torch.zeros(k, dtype=torch.long)
            position[targets] = torch.arange(len(targets))
            gather, spans, sources, columns = [], [], [], []
            for r, t in enumerate(targets):
                mine = [n for n, pair in enumerate(pairs) if t in pair]
                spans.append((len(gather), len(gather) + len(mine) + 1))
                gather += [*mine, m + r]
                sources += [i if j == t else j for i, j in (pairs[n] for n in mine)]
                columns += [t] * len(mine)
            tensor = lambda values: torch.tensor(values, device=like.device)  # noqa: E731
            head_rows = {b - a: tensor([0] * (b - a - 1) + [1]) for a, b in spans}
            _PLANS[key] = cls(
                selection.to(like.device), tensor([i for i, _ in pairs]), tensor([j for _, j in pairs]), targets,
                position.to(like.device), tensor(gather), spans, head_rows, tensor(sources), tensor(columns),
            )  # fmt: skip
            if len(_PLANS) > 64:  # sampled pairs change every step: keep the cache small
                _PLANS.pop(next(iter(_PLANS)))
        return _PLANS[key]


_PLANS: dict[tuple, _Plan] = {}
