"""The bilevel hypergradient of a main-task loss with respect to the bargaining preferences p.

Lower level: θ*(α) minimises L_T(θ) = Σ_i α_i ℓ_i(θ) with α = α(p) the bargaining weights of the
Gram matrix G. Upper level: L_V(θ*) is the main-task loss on other data. By the implicit function
theorem (AuxiNash, Shamsian et al. 2023, Eq. 6)

    dL_V/dα_i = −⟨H⁻¹ ∇_θL_V, g_i⟩,      dL_V/dp = (dα/dp)ᵀ dL_V/dα,

with H the Hessian of L_T in θ, g_i = ∇_θ ℓ_i, and dα/dp = (G + diag(p/α²))⁻¹ diag(1/α) from the
bargaining solution. H⁻¹v is approximated by the truncated Neumann series
η Σ_{j=0}^{n} (I − ηH)^j v (Lorraine et al., 2020) built from Hessian-vector products; it
converges to H⁻¹v as n grows when 0 < η < 2 / λ_max(H). Everything is over the shared parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from taskrel.errors import ConfigError
from taskrel.gradients import check_finite_losses, flatten
from taskrel.weighting.bargaining import BargainingSolution


def neumann_inverse_hvp(
    loss: torch.Tensor, params: Sequence[torch.Tensor], vector: torch.Tensor, scale: float, terms: int
) -> torch.Tensor:
    """Approximate H⁻¹ v, H = ∇²_θ loss, by η Σ_{j=0}^{terms} (I − ηH)^j v (flat vectors, float64)."""
    if not scale > 0 or terms < 0:
        raise ConfigError(f"Neumann series needs scale > 0 and terms ≥ 0, got {scale} and {terms}")
    params = list(params)
    first = flatten(torch.autograd.grad(loss, params, create_graph=True, allow_unused=True), params)

    def hessian_times(u: torch.Tensor) -> torch.Tensor:
        if not first.requires_grad:  # loss linear in θ
            return torch.zeros_like(u)
        parts = torch.autograd.grad(first, params, grad_outputs=u.to(first.dtype), retain_graph=True, allow_unused=True)
        return flatten(parts, params).double()

    term = vector.double()
    total = term.clone()
    for _ in range(terms):
        term = term - scale * hessian_times(term)
        total = total + term
    return scale * total


def preference_hypergradient(
    meta_loss: torch.Tensor,
    losses: Sequence[torch.Tensor],
    shared_parameters: Sequence[torch.Tensor],
    grads: torch.Tensor,
    solution: BargainingSolution,
    *,
    neumann_scale: float = 1e-4,
    neumann_terms: int = 3,
) -> np.ndarray:
    """dL_V/dp (K,) at the current parameters.

    `meta_loss` is L_V (the main-task loss on a separate batch), `losses` the K task losses of the
    training batch (graph attached), `grads` (K, P) their gradients on the shared parameters, and
    `solution` the bargaining solution whose α weights them.
    """
    check_finite_losses([meta_loss], ["meta (main-task) loss"])
    params = list(shared_parameters)
    validation_gradient = flatten(torch.autograd.grad(meta_loss, params, allow_unused=True), params).double()
    weights = torch.from_numpy(solution.alpha)
    train_loss = sum(w.to(loss.dtype) * loss for w, loss in zip(weights, losses, strict=True))
    inverse = neumann_inverse_hvp(train_loss, params, validation_gradient, neumann_scale, neumann_terms)
    d_alpha = -(grads.double() @ inverse.to(grads.device)).cpu().numpy()
    return solution.alpha_jacobian().T @ d_alpha
