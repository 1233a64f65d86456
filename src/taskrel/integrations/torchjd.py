"""torchjd: affinity from torchjd's own Jacobian (no second backward), and torchjd aggregators as a weighting.

**Observing a torchjd step.** ``torchjd.autojac.mtl_backward(losses, features)`` (or ``backward``) leaves
the Jacobian of the K task losses with respect to the shared parameters in their ``.jac`` fields (row k:
task k's gradient), and ``jac_to_grad(shared, aggregator)`` then aggregates it into ``.grad``. Between the
two, `step_context` builds the step's `StepContext` from those Jacobians, so ``ctx.task_gradients`` (K, P)
*is* torchjd's Jacobian and collectors (ETAP, TAG, PTG) run no backward of their own::

    optimizer.zero_grad()
    losses = [loss_fn(head(features), y) for ...]          # one scalar per task, in task order
    mtl_backward(losses, features)
    ctx = step_context(tasks, losses, shared, optimizer)    # legal until jac_to_grad frees .jac
    for collector in collectors:
        collector.on_step(ctx)
    jac_to_grad(shared, aggregator)
    optimizer.step()

The callback contract calls ``on_step`` before the loop's backward; here it comes after torchjd's backward
and before the update, which is what the contract protects: the parameters, buffers and optimiser state
are still those of the step, and the collectors write none of them, so training is bit-identical with and
without them. A lookahead collector (TAG, PTG) also needs ``evaluator=`` (a `TrialEvaluator` of the model
and the batch's losses), as in any loop; PTG also needs ``task_parameters=`` (each task's head), whose
gradients it reads from their ``.grad`` where ``mtl_backward`` put them (so ``.grad`` must have been
zeroed before ``mtl_backward``, and no head shared by two tasks).

**Training with an aggregator.** `AggregatorWeighting(aggregator)` is a taskrel weighting: its
``backward(losses, shared_parameters)`` fills ``.grad`` as ``mtl_backward`` + ``jac_to_grad`` do, the
shared parameters receiving the aggregated Jacobian and every other parameter in the losses' graph (the
heads) the gradient of the summed loss. It serves any group, so one object can be given to
``TorchProblem(..., weighting=AggregatorWeighting(UPGrad()))``, whose sweeps and pipeline then train every
group with it (each run with a fresh copy of the aggregator).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

try:
    from torchjd.aggregation import Aggregator
    from torchjd.autojac import backward as jacobian_backward
    from torchjd.autojac import jac_to_grad
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError("taskrel.integrations.torchjd needs torchjd: pip install 'taskrel[torchjd]'") from exc

from taskrel.errors import ConfigError, ShapeError
from taskrel.gradients import check_finite_losses
from taskrel.train.callbacks import StepContext, TrialEvaluator
from taskrel.weighting.methods import task_specific_parameters


def step_context(
    tasks: Sequence[str],
    losses: Sequence[torch.Tensor] | torch.Tensor,
    shared_parameters: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    evaluator: TrialEvaluator | None = None,
    *,
    task_parameters: Sequence[Sequence[torch.Tensor]] | None = None,
    step: int = 0,
    epoch: int = 0,
) -> StepContext:
    """The `StepContext` of a torchjd step, its per-task gradients read from the shared parameters' ``.jac``.

    Call it after ``mtl_backward`` / ``backward`` and before ``jac_to_grad`` (or after
    ``jac_to_grad(..., retain_jac=True)``) and ``optimizer.step()``; see the module docstring.
    """
    shared = list(shared_parameters)
    missing = [i for i, p in enumerate(shared) if getattr(p, "jac", None) is None]
    if missing:
        raise ConfigError(
            f"shared parameter(s) {missing} have no .jac: call step_context after torchjd's mtl_backward (or "
            "backward) and before jac_to_grad (or give jac_to_grad retain_jac=True)"
        )
    rows = {p.jac.shape[0] for p in shared}
    if rows != {len(tasks)}:
        raise ShapeError(f"the .jac fields have {sorted(rows)} rows for {len(tasks)} tasks {tuple(tasks)}")
    gradients = torch.cat([p.jac.detach().reshape(len(tasks), -1) for p in shared], dim=1)
    heads = None
    if task_parameters is not None:  # mtl_backward put each task's head gradient in the head's .grad
        heads = [[torch.zeros_like(p) if p.grad is None else p.grad for p in params] for params in task_parameters]
    return StepContext(
        tasks, losses, shared, optimizer, evaluator, task_parameters=task_parameters, task_gradients=gradients,
        head_gradients=heads, step=step, epoch=epoch,
    )  # fmt: skip


class AggregatorWeighting:
    """A torchjd aggregator (e.g. ``UPGrad()``) as a taskrel weighting (module docstring).

    ``backward(losses, shared_parameters)`` adds to ``.grad`` like ``Tensor.backward`` and returns the
    aggregator's weights of the K Jacobian rows (None for an aggregator without weights, e.g. ``GradDrop``).
    """

    def __init__(self, aggregator: Aggregator) -> None:
        if not isinstance(aggregator, Aggregator):
            raise ConfigError(
                f"AggregatorWeighting takes a torchjd.aggregation.Aggregator (e.g. UPGrad()), got "
                f"{type(aggregator).__name__}"
            )
        self.aggregator = aggregator

    def backward(
        self, losses: Sequence[torch.Tensor], shared_parameters: Sequence[torch.Tensor]
    ) -> torch.Tensor | None:
        losses, shared = list(losses), list(shared_parameters)
        check_finite_losses(losses)
        heads = task_specific_parameters(losses, shared)
        jacobian_backward(losses, inputs=shared, retain_graph=bool(heads))
        weights = jac_to_grad(shared, self.aggregator)
        if heads:
            torch.autograd.backward(torch.stack([loss.reshape(()) for loss in losses]).sum(), inputs=heads)
        return weights

    def __repr__(self) -> str:
        return f"AggregatorWeighting({self.aggregator!r})"
