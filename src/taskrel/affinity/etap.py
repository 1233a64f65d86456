"""ETAP affinity score (Ayman et al., eq. 5–6): first-order effect of task i's update on task j.

Per step, with g_j = ∂L_j/∂θ_shared and u_i the update direction task i alone would produce
(−Δθ_i / η under the optimiser's rule):

    z(i → j) = ⟨g_j, u_i⟩ / L_j          (``normalize=False``: without the division by L_j)

Without momentum u_i = g_i, so z(i → j) = ⟨g_j, g_i⟩ / L_j. With momentum (SGD), u_i = g_i + μ b
(b the momentum buffer; PyTorch's dampening, Nesterov and weight decay are honoured). This is the
paper's eq. 5 divided by η, i.e. on TAG's scale: it is the η → 0 limit of TAG's lookahead
(1 − L_j(after i)/L_j) / η. Costs one set of per-task gradients and a K×K product per step.
"""

from __future__ import annotations

import numpy as np
import torch

from taskrel.affinity.collector import AffinityCollector
from taskrel.errors import ConfigError
from taskrel.train.callbacks import StepContext


def update_directions(
    optimizer: torch.optim.Optimizer, params: list[torch.Tensor], grads: torch.Tensor
) -> torch.Tensor:
    """Rows u_k = −Δθ/lr that `optimizer` (SGD) would apply to `params` for gradient rows `grads` (K, P).

    SGD's direction is affine in the gradient, u = a·g + c, with a and c set by momentum,
    dampening, Nesterov, weight decay and the current momentum buffer.
    """
    if not isinstance(optimizer, torch.optim.SGD):
        raise ConfigError(
            f"the momentum variant of ETAP follows SGD's update rule; got {type(optimizer).__name__} "
            "(use momentum=False)"
        )
    settings = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    scales, offsets = [], []
    for p in params:
        group = settings.get(id(p))
        if group is None:
            raise ConfigError("a shared parameter is not managed by the optimizer")
        mu, damp, wd, nesterov = group["momentum"], group["dampening"], group["weight_decay"], group["nesterov"]
        decay = wd * p.detach().reshape(-1)
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        if mu == 0:
            a, c = 1.0, decay
        elif buffer is None:  # first step: the buffer starts as the gradient itself
            a = 1.0 + mu if nesterov else 1.0
            c = a * decay
        else:
            b = buffer.detach().reshape(-1)
            a = 1.0 + mu * (1 - damp) if nesterov else 1 - damp
            c = a * decay + (mu * mu * b if nesterov else mu * b)
        scales.append(torch.full((p.numel(),), float(a), dtype=grads.dtype))
        offsets.append(c.to(grads.dtype) if torch.is_tensor(c) else torch.zeros(p.numel(), dtype=grads.dtype))
    return grads * torch.cat(scales) + torch.cat(offsets)


class EtapAffinity(AffinityCollector):
    """ETAP's affinity score, time-averaged over collected steps; A[source, target]."""

    method = "etap"
    needs_task_gradients = True

    def __init__(self, every: int = 1, momentum: bool = False, normalize: bool = True) -> None:
        super().__init__(every)
        self.momentum = momentum
        self.normalize = normalize

    def collect(self, ctx: StepContext) -> np.ndarray:
        grads = ctx.task_gradients.to(torch.float64)
        updates = update_directions(ctx.optimizer, ctx.shared_parameters, grads) if self.momentum else grads
        z = updates @ grads.T  # z[i, j] = <u_i, g_j>
        if self.normalize:
            z = z / ctx.loss_values[None, :]
        return z.numpy()
