import numpy as np
import pytest

from taskrel.decentral import algorithms as alg
from taskrel.decentral import graphs
from taskrel.errors import ConfigError, NonFiniteError


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_gradient_matches_finite_differences(loss):
    rng = np.random.default_rng(0)
    w, u = rng.standard_normal(4), rng.standard_normal(4)
    d = 1.0 if loss == "logistic" else 0.7

    def j(w):
        z = u @ w
        return 0.5 * (d - z) ** 2 if loss == "squared" else np.log1p(np.exp(z)) - d * z

    numeric = np.array([(j(w + 1e-6 * e) - j(w - 1e-6 * e)) / 2e-6 for e in np.eye(4)])
    assert np.allclose(alg.gradient(loss, w, u, d), numeric, atol=1e-7)
    with pytest.raises(ConfigError, match="unknown loss 'hinge'"):
        alg.gradient("hinge", w, u, d)


def test_combine_on_full_matrix_equals_per_agent_rows():
    rng = np.random.default_rng(1)
    a = graphs.random_graph(6, seed=1)
    lap = graphs.laplacian(a)
    c = alg.laplacian_combination(lap, np.eye(6), 0.01, 2.0)
    psi = rng.standard_normal((6, 3))
    full = alg.combine(c, psi)
    for k in range(6):
        idx = graphs.neighbourhood(a, k)
        row = alg.laplacian_combination(lap[k, idx][None], np.eye(len(idx))[:1], 0.01, 2.0)
        assert np.allclose(alg.combine(row, psi[idx])[0], full[k], rtol=0, atol=1e-14)


def test_stability_check_fails_loudly():
    lap = graphs.laplacian(graphs.random_graph(6, seed=1))
    lam = np.linalg.eigvalsh(lap).max()
    assert alg.check_stability(lap, 0.1, 1.0 / lam) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="unstable"):
        alg.check_stability(lap, 1.0, 2.0 / lam)
    row = lap[0]
    with pytest.raises(ConfigError, match="agent 0"):
        alg.local_stability_bound(row, 1.0, 2.0 / np.abs(row).sum(), 0)


def test_laplacian_diffusion_fixed_point_matches_regularised_solution():
    """Deterministic gradients of J_k = ½σ²‖w - w°‖²: the recursion's fixed point, and its O(μ) distance to
    the regularised optimum W_L° = (σ² I + η L)⁻¹ σ² W°."""
    a = graphs.random_graph(7, seed=2)
    lap = graphs.laplacian(a, 1.0)
    w_true = graphs.draw_models(lap, 3, seed=0)
    sigma2, eta = 1.5, 0.8
    w_opt = np.linalg.solve(sigma2 * np.eye(7) + eta * lap, sigma2 * w_true)
    gaps = []
    for mu in (0.02, 0.01, 0.005):
        c = alg.laplacian_combination(lap, np.eye(7), mu, eta)
        w = np.zeros_like(w_true)
        for _ in range(20000):
            w = alg.combine(c, w - mu * sigma2 * (w - w_true))
        fixed = np.linalg.solve(np.eye(7) - (1 - mu * sigma2) * c, mu * sigma2 * c @ w_true)
        assert np.allclose(w, fixed, atol=1e-10)
        gaps.append(np.linalg.norm(w - w_opt))
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[0] / gaps[1] == pytest.approx(2, rel=0.1) and gaps[1] / gaps[2] == pytest.approx(2, rel=0.1)


def test_schedule():
    s = alg.Schedule(iters=100, switch=40, mu=0.01, mu_coop=0.005, update_every=25)
    assert [i for i in range(1, 101) if s.estimate_before(i)] == [41, 66, 91]
    assert list(s.steps(40)) == [0.01, 0.005, 0.01, 0.005]
    assert list(s.steps(41)) == [0.01, 0.005, 0.005, 0.005]
    two_phase = alg.Schedule(iters=100, switch=40, mu=0.01, mu_coop=0.01)
    assert [i for i in range(1, 101) if two_phase.estimate_before(i)] == [41]
    for bad in ({"switch": 0}, {"switch": 100}, {"mu": 0.0}, {"mu_coop": -1.0}, {"update_every": 0}):
        message = {"switch": "switch must be in", "mu": "step size μ must", "mu_coop": "step size μ' must",
                   "update_every": "update_every must"}[next(iter(bad))]  # fmt: skip
        with pytest.raises(ConfigError, match=f"{message}.*got {next(iter(bad.values()))}"):
            alg.Schedule(**{"iters": 100, "switch": 40, "mu": 0.01, "mu_coop": 0.01, **bad})


def test_non_finite_models_are_reported_by_algorithm_and_agent():
    state = np.zeros((len(alg.ALGORITHMS), 3, 2))
    alg.check_finite(state, 7)  # finite: nothing raised
    state[alg.LEARNED, 1, 0] = np.inf
    with pytest.raises(NonFiniteError, match=r"agent 4: models of \['learned'\] became non-finite by iteration 7"):
        alg.check_finite(state, 7, "agent 4: ")
