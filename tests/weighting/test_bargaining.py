"""The bargaining solver: Gα = p/α to 1e-9 on random and ill-conditioned Gram matrices, closed forms,
dα/dp against finite differences, and loud failures on bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskrel.errors import ConfigError, NonFiniteError, ShapeError, SolverError
from taskrel.weighting import NearStationaryWarning, solve_bargaining


def stationarity_error(gram: np.ndarray, alpha: np.ndarray, p: np.ndarray) -> float:
    """‖Gα − p/α‖∞ relative to p/α, entry by entry."""
    target = p / alpha
    return float(np.max(np.abs(gram @ alpha - target) / target))


@st.composite
def random_problems(draw):
    """Gaussian task gradients with row norms spread over 8 orders of magnitude."""
    k = draw(st.integers(1, 12))
    extra = draw(st.integers(0, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    grads = rng.normal(size=(k, k + extra)) * 10.0 ** rng.uniform(-4, 4, size=(k, 1))
    return grads @ grads.T, rng.uniform(0.05, 5.0, size=k)


@st.composite
def ill_conditioned_problems(draw):
    """Nearly parallel gradients (u + ε v_k, ε from 3e-4 down to 1e-6) with spread norms: cond(G) up to ~1e20."""
    k = draw(st.integers(2, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    epsilon = 10.0 ** draw(st.floats(-6, -3.5))
    rng = np.random.default_rng(seed)
    common = rng.normal(size=20)
    grads = (common + epsilon * rng.normal(size=(k, 20))) * 10.0 ** rng.uniform(-2, 2, size=(k, 1))
    return grads @ grads.T, rng.uniform(0.05, 5.0, size=k)


@settings(max_examples=150, deadline=None)
@given(random_problems())
def test_residual_below_1e9_on_random_gram_matrices(problem):
    gram, p = problem
    solution = solve_bargaining(gram, p)
    assert solution.ridge == 0.0
    assert (solution.alpha > 0).all()
    assert stationarity_error(gram, solution.alpha, p) < 1e-9


@settings(max_examples=150, deadline=None)
@given(ill_conditioned_problems())
def test_residual_below_1e9_on_ill_conditioned_gram_matrices(problem):
    gram, p = problem
    assert np.linalg.cond(gram) > 1e6
    solution = solve_bargaining(gram, p)
    assert solution.ridge == 0.0
    assert stationarity_error(gram, solution.alpha, p) < 1e-9


@given(st.floats(0.01, 100), st.floats(0.01, 100), st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_two_orthogonal_gradients_give_sqrt_p_over_norm(p1, p2, n1, n2):
    grads = np.array([[n1, 0.0, 0.0], [0.0, n2, 0.0]])
    solution = solve_bargaining(grads @ grads.T, np.array([p1, p2]))
    np.testing.assert_allclose(solution.alpha, [np.sqrt(p1) / n1, np.sqrt(p2) / n2], rtol=1e-10)


def test_nash_mtl_with_two_tasks_sums_the_normalised_gradients():
    # For K = 2 the symmetric solution makes the update the sum of unit gradients, scaled by 1/√(2 + 2cos).
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(2, 6)) * np.array([[0.01], [50.0]])
    solution = solve_bargaining(grads @ grads.T)
    update = solution.alpha @ grads
    units = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    expected = units.sum(axis=0)
    np.testing.assert_allclose(update / np.linalg.norm(update), expected / np.linalg.norm(expected), rtol=1e-9)
    np.testing.assert_allclose(update @ update, 2.0, rtol=1e-9)  # ‖Gα‖² = Σp


def test_scaling_preferences_scales_alpha_by_its_square_root():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(4, 9))
    p = rng.uniform(0.2, 2, size=4)
    base = solve_bargaining(grads @ grads.T, p).alpha
    np.testing.assert_allclose(solve_bargaining(grads @ grads.T, 9 * p).alpha, 3 * base, rtol=1e-10)


def test_alpha_jacobian_matches_central_finite_differences():
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(5, 8)) * rng.uniform(0.1, 10, size=(5, 1))
    gram = grads @ grads.T
    p = rng.uniform(0.3, 3, size=5)
    jacobian = solve_bargaining(gram, p).alpha_jacobian()
    step = 1e-6
    numeric = np.empty((5, 5))
    for j in range(5):
        bump = np.zeros(5)
        bump[j] = step * p[j]
        upper = solve_bargaining(gram, p + bump).alpha
        lower = solve_bargaining(gram, p - bump).alpha
        numeric[:, j] = (upper - lower) / (2 * bump[j])
    np.testing.assert_allclose(jacobian, numeric, rtol=1e-6, atol=1e-9 * np.abs(numeric).max())


def test_warm_start_reaches_the_same_solution_in_fewer_iterations():
    rng = np.random.default_rng(2)
    grads = rng.normal(size=(10, 30))
    gram = grads @ grads.T
    cold = solve_bargaining(gram)
    nearby = grads + 1e-3 * rng.normal(size=grads.shape)
    warm = solve_bargaining(nearby @ nearby.T, init=cold.alpha)
    fresh = solve_bargaining(nearby @ nearby.T)
    np.testing.assert_allclose(warm.alpha, fresh.alpha, rtol=1e-9)
    assert warm.iterations < fresh.iterations


def test_singular_gram_with_mixed_sign_null_vector_is_solved_exactly():
    # Three gradients in a plane: G is singular, yet no nonnegative combination vanishes.
    grads = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    gram = grads @ grads.T
    assert np.linalg.matrix_rank(gram) == 2
    solution = solve_bargaining(gram)
    assert solution.ridge == 0.0
    assert stationarity_error(gram, solution.alpha, np.ones(3)) < 1e-9


def near_stationary_gram(epsilon: float) -> np.ndarray:
    rng = np.random.default_rng(4)
    grads = rng.normal(size=(3, 12))
    grads[2] = -(grads[0] + grads[1]) + epsilon * rng.normal(size=12)
    return grads @ grads.T


def test_near_pareto_stationary_gradients_are_regularised_with_a_warning():
    gram = near_stationary_gram(1e-7)
    with pytest.warns(NearStationaryWarning, match="Pareto-stationary"):
        solution = solve_bargaining(gram)
    assert solution.ridge > 0
    assert np.isfinite(solution.alpha).all() and (solution.alpha > 0).all()
    assert solution.amplification <= 1.01e6
    assert stationarity_error(solution.gram, solution.alpha, np.ones(3)) < 1e-9
    np.testing.assert_allclose(solution.gram, gram + solution.ridge * np.diag(np.diag(gram)))


def test_moderately_conditioned_problem_is_not_regularised():
    with warnings.catch_warnings():
        warnings.simplefilter("error", NearStationaryWarning)
        solution = solve_bargaining(near_stationary_gram(0.1))
    assert solution.ridge == 0.0


def test_near_pareto_stationary_gradients_raise_when_asked():
    with pytest.raises(SolverError, match="Pareto-stationary"):
        solve_bargaining(near_stationary_gram(1e-7), on_near_stationary="raise")


def test_non_finite_gram_raises_naming_the_tasks():
    gram = np.eye(3)
    gram[1, 2] = gram[2, 1] = np.nan
    with pytest.raises(NonFiniteError, match="'b', 'c'"):
        solve_bargaining(gram, names=["a", "b", "c"])


def test_zero_gradient_task_raises_naming_it():
    gram = np.diag([1.0, 0.0, 2.0])
    with pytest.raises(SolverError, match="task 'depth' has a zero gradient"):
        solve_bargaining(gram, names=["seg", "depth", "normal"])


@pytest.mark.parametrize(
    ("gram", "error", "match"),
    [
        (np.ones((2, 3)), ShapeError, "square"),
        (np.array([[1.0, 0.5], [0.2, 1.0]]), ShapeError, "not symmetric"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), ShapeError, "Cauchy"),
        (np.array([[1.0, -0.9, -0.9], [-0.9, 1.0, -0.9], [-0.9, -0.9, 1.0]]), ShapeError, "indefinite"),
    ],
)
def test_malformed_gram_matrices_are_rejected(gram, error, match):
    with pytest.raises(error, match=match):
        solve_bargaining(gram)


def test_bad_preferences_and_init_are_rejected():
    with pytest.raises(ConfigError, match="positive"):
        solve_bargaining(np.eye(2), np.array([1.0, 0.0]))
    with pytest.raises(ShapeError, match="preferences"):
        solve_bargaining(np.eye(2), np.ones(3))
    with pytest.raises(ConfigError, match="initial"):
        solve_bargaining(np.eye(2), init=np.array([1.0, -1.0]))
    with pytest.raises(ConfigError, match="on_near_stationary"):
        solve_bargaining(np.eye(2), on_near_stationary="ignore")
