"""AuxiNash's preference learning: the hypergradient against finite differences of the bilevel problem
solved in closed form, the Neumann inverse-HVP against a direct solve, and the preference update."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskrel.errors import ConfigError
from taskrel.gradients import task_gradients
from taskrel.weighting import AuxiNash, neumann_inverse_hvp, preference_hypergradient, solve_bargaining
from taskrel.weighting.auxinash import project_preferences


class QuadraticTasks:
    """ℓ_i(θ) = ‖A_i θ − b_i‖² / 2n for three tasks and a validation loss of the same form."""

    def __init__(self, seed: int, d: int = 3, n: int = 12) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.normal(size=(4, n, d))
        self.b = rng.normal(size=(4, n))
        self.n = n
        grads = rng.normal(size=(3, 7))
        self.gram = grads @ grads.T  # held fixed: the bilevel derivative treats G as given

    def optimum(self, alpha: np.ndarray) -> np.ndarray:
        """θ*(α) = argmin Σ α_i ℓ_i(θ), in closed form."""
        hessian = sum(w * a.T @ a for w, a in zip(alpha, self.a[:3], strict=True))
        rhs = sum(w * a.T @ b for w, a, b in zip(alpha, self.a[:3], self.b[:3], strict=True))
        return np.linalg.solve(hessian, rhs)

    def meta_objective(self, p: np.ndarray) -> float:
        theta = self.optimum(solve_bargaining(self.gram, p).alpha)
        return float(np.sum((self.a[3] @ theta - self.b[3]) ** 2) / (2 * self.n))

    def torch_losses(self, theta: torch.Tensor) -> list[torch.Tensor]:
        a, b = torch.from_numpy(self.a), torch.from_numpy(self.b)
        return [torch.sum((a[k] @ theta - b[k]) ** 2) / (2 * self.n) for k in range(4)]


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000))
def test_hypergradient_matches_finite_differences_of_the_bilevel_problem(seed):
    tasks = QuadraticTasks(seed)
    p = np.random.default_rng(seed).uniform(0.5, 2.0, size=3)
    solution = solve_bargaining(tasks.gram, p)
    theta = torch.tensor(tasks.optimum(solution.alpha), requires_grad=True)
    *losses, meta_loss = tasks.torch_losses(theta)
    grads = task_gradients(losses, [theta])
    hessian = sum(w * a.T @ a for w, a in zip(solution.alpha, tasks.a[:3], strict=True)) / tasks.n
    eigenvalues = np.linalg.eigvalsh(hessian)
    scale = 2.0 / (eigenvalues[0] + eigenvalues[-1])  # fastest-converging Neumann step
    estimate = preference_hypergradient(
        meta_loss, losses, [theta], grads, solution, neumann_scale=scale, neumann_terms=600
    )
    step = 1e-5
    numeric = np.array(
        [(tasks.meta_objective(p + step * e) - tasks.meta_objective(p - step * e)) / (2 * step) for e in np.eye(3)]
    )
    np.testing.assert_allclose(estimate, numeric, rtol=1e-5, atol=1e-8)


def test_neumann_series_converges_to_the_inverse_hessian_product():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(5, 5))
    hessian = matrix @ matrix.T + np.eye(5)
    theta = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * theta @ torch.from_numpy(hessian) @ theta + torch.sin(theta).sum() * 0  # quadratic in θ
    vector = torch.from_numpy(rng.normal(size=5))
    scale = 1.0 / np.linalg.eigvalsh(hessian).max()
    estimate = neumann_inverse_hvp(loss, [theta], vector, scale, terms=4000)
    np.testing.assert_allclose(estimate.numpy(), np.linalg.solve(hessian, vector.numpy()), rtol=1e-8)
    truncated = neumann_inverse_hvp(loss, [theta], vector, 1e-4, terms=3)  # reference defaults: ≈ 4ηv
    np.testing.assert_allclose(truncated.numpy(), 4e-4 * vector.numpy(), rtol=1e-2)
    with pytest.raises(ConfigError, match="Neumann"):
        neumann_inverse_hvp(loss, [theta], vector, 0.0, terms=3)


def toy_auxiliary_problem(seed: int):
    """A shared linear model; task 0 is the main task, task 2 contradicts it."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1, bias=False).double()
    x = torch.randn(64, 3, dtype=torch.float64)
    truth = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    targets = [x @ truth, x @ truth + 0.1 * torch.randn(64, dtype=torch.float64), -(x @ truth)]

    def losses(rows=slice(None)):
        out = model(x[rows]).squeeze(-1)
        return [torch.mean((out - y[rows]) ** 2) for y in targets]

    return model, losses


@pytest.mark.filterwarnings("ignore::taskrel.weighting.NearStationaryWarning")
@pytest.mark.parametrize("meta_lr", [5e-3, 5.0])
def test_learned_preferences_stay_positive_and_normalised(meta_lr):
    model, losses = toy_auxiliary_problem(0)
    generator = torch.Generator().manual_seed(0)
    method = AuxiNash(
        3,
        meta_loss=lambda: losses(torch.randperm(64, generator=generator)[:16])[0],
        hypergrad_every=2,
        meta_lr=meta_lr,
        min_preference=1e-3,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    seen = []
    for _ in range(60):
        optimizer.zero_grad()
        method.backward(losses(), list(model.parameters()))
        optimizer.step()
        seen.append(method.preferences)
    seen = np.array(seen)
    assert (seen >= 1e-3 - 1e-12).all()
    np.testing.assert_allclose(seen.sum(axis=1), 3.0, rtol=1e-12)
    assert method.last_hypergradient is not None
    assert seen[-1, 2] < 1.0  # the contradicting task loses bargaining power
    if meta_lr > 1:
        assert seen[:, 2].min() == pytest.approx(1e-3)  # large steps drive it onto the floor


@given(st.lists(st.floats(-5, 5), min_size=2, max_size=8), st.floats(1e-4, 0.2))
def test_preference_projection_is_the_nearest_feasible_point(values, floor):
    p = np.array(values)
    total = float(len(p))
    projected = project_preferences(p, floor, total)
    assert (projected >= floor - 1e-12).all()
    assert projected.sum() == pytest.approx(total, rel=1e-12)
    # optimality (KKT): free entries share one shift, clamped ones would have gone lower
    free = projected > floor + 1e-12
    shifts = p[free] - projected[free]
    np.testing.assert_allclose(shifts, shifts[0] if free.any() else shifts, atol=1e-9)
    if free.any():
        assert (p[~free] - shifts[0] <= floor + 1e-9).all()


def test_fixed_preferences_do_not_move_and_state_round_trips():
    model, losses = toy_auxiliary_problem(1)
    fixed = AuxiNash(3, [3.0, 2.0, 1.0])
    for _ in range(30):
        model.zero_grad()
        fixed.backward(losses(), list(model.parameters()))
    np.testing.assert_allclose(fixed.preferences, [1.5, 1.0, 0.5])

    learner = AuxiNash(3, meta_loss=lambda: losses()[0], hypergrad_every=1, meta_lr=0.1)
    for _ in range(3):
        model.zero_grad()
        learner.backward(losses(), list(model.parameters()))
    state = learner.state_dict()
    clone = AuxiNash(3, meta_loss=lambda: losses()[0], hypergrad_every=1, meta_lr=0.1)
    clone.load_state_dict(state)
    for method in (learner, clone):
        model.zero_grad()
        method.backward(losses(), list(model.parameters()))
    np.testing.assert_allclose(clone.preferences, learner.preferences, rtol=1e-12)
