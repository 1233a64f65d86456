import numpy as np
import pytest
import scipy.optimize

from taskrel.decentral import estimators as est
from taskrel.decentral import graphs
from taskrel.errors import NonFiniteError, SolverError


def _exact_models(cov: np.ndarray, m: int) -> np.ndarray:
    """Models W (K, M) whose block-trace covariance W Wᵀ / M equals `cov` exactly."""
    k = cov.shape[0]
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((m, k)))  # (M, K) orthonormal columns
    return np.sqrt(m) * np.linalg.cholesky(cov) @ q.T


@pytest.fixture
def truth():
    a = graphs.random_graph(8, weights=(1.0, 5.0), seed=5)
    return a, graphs.laplacian(a, 1.0)


def test_neighbourhood_estimator_is_exact_at_the_true_covariance(truth):
    a, lap = truth
    w = _exact_models(np.linalg.inv(lap), 20)
    assert np.allclose(est.block_trace_covariance(w), np.linalg.inv(lap))
    assert np.allclose(est.neighbourhood_estimate(w, a), lap, atol=1e-9)


def test_ml_recovers_the_laplacian_from_its_inverse(truth):
    a, lap = truth
    for support in (a, None):
        fit = est.laplacian_ml(np.linalg.inv(lap), "ggl", support=support)
        assert np.allclose(fit.laplacian, lap, atol=1e-7)
    cgl = graphs.laplacian(a, None)
    fit = est.laplacian_ml(np.linalg.pinv(cgl), "cgl", support=a)
    assert np.allclose(fit.laplacian, cgl, atol=1e-7)
    assert np.allclose(fit.laplacian @ np.ones(8), 0)


def _objective(theta, pairs, k, s, cgl):
    lap = np.zeros((k, k))
    for (i, j), t in zip(pairs, theta[: len(pairs)], strict=True):
        lap[i, i] += t
        lap[j, j] += t
        lap[i, j] -= t
        lap[j, i] -= t
    if not cgl:
        lap += np.diag(theta[len(pairs):])
    sign, logdet = np.linalg.slogdet(lap + (np.ones((k, k)) / k if cgl else 0))
    return np.inf if sign <= 0 else float(np.trace(s @ lap) - logdet)


@pytest.mark.parametrize("kind", ["ggl", "cgl"])
def test_ml_satisfies_kkt_and_matches_a_generic_solver(kind):
    k = 5
    rng = np.random.default_rng(1)
    x = rng.standard_normal((k, 7))
    s = x @ x.T / 7  # a sample covariance: the constrained optimum is not the plain inverse
    fit = est.laplacian_ml(s, kind)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    theta = np.array([fit.weights[i, j] for i, j in pairs] + ([] if kind == "cgl" else list(fit.self_loops)))
    f = lambda t: _objective(t, pairs, k, s, kind == "cgl")  # noqa: E731
    assert np.isclose(f(theta), fit.objective)
    # KKT by central differences, independent of the solver's derivatives
    h = 1e-6
    for p in range(theta.size):
        e = np.zeros_like(theta)
        e[p] = h
        grad = (f(theta + e) - f(np.maximum(theta - e, 0))) / (h + min(h, theta[p]))
        if theta[p] > 1e-6:
            assert abs(grad) < 1e-4
        else:
            assert grad > -1e-4
    assert (theta == 0).any()  # the sign constraints are active for this sample
    # a generic bound-constrained solver (finite-difference gradients) reaches the same value
    start = np.r_[np.full(len(pairs), 0.1), np.ones(k)] if kind == "ggl" else np.full(len(pairs), 0.5)
    ref = scipy.optimize.minimize(f, start, method="L-BFGS-B", bounds=[(0, None)] * start.size,
                                  options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 5000})  # fmt: skip
    assert fit.objective <= ref.fun + 1e-7
    assert np.isclose(fit.objective, ref.fun, atol=1e-5)


def test_large_problems_use_lbfgsb_and_agree_with_newton(truth):
    _, lap = truth
    w = graphs.draw_models(lap, 40, seed=2)
    s = est.block_trace_covariance(w)
    newton = est.laplacian_ml(s, "ggl")
    lbfgs = est.laplacian_ml(s, "ggl", newton_max=0)
    assert np.isclose(newton.objective, lbfgs.objective, rtol=1e-8)
    assert np.allclose(newton.laplacian, lbfgs.laplacian, atol=1e-3)


def test_masked_inverse_keeps_the_support(truth):
    a, lap = truth
    s = est.block_trace_covariance(graphs.draw_models(lap, 100, seed=1))
    out = est.masked_inverse(s, a)
    inv = np.linalg.inv(s)
    on = (a != 0) | np.eye(8, dtype=bool)
    assert np.allclose(out[on], inv[on]) and np.all(out[~on] == 0)


def test_error_falls_with_model_dimension(truth):
    a, lap = truth

    def mean_error(m, estimator):
        errs = []
        for seed in range(6):
            w = graphs.draw_models(lap, m, seed=seed)
            errs.append(est.spectral_error(estimator(w), lap))
        return np.mean(errs)

    local = lambda w: est.neighbourhood_estimate(w, a)  # noqa: E731
    glob = lambda w: est.laplacian_ml(est.block_trace_covariance(w), "ggl", support=a).laplacian  # noqa: E731
    for estimator in (local, glob):
        small, large = mean_error(40, estimator), mean_error(640, estimator)
        assert large < small / 5  # ~1/M: 16× more dimensions


def test_small_m_needs_shrinkage_and_sign_projection_clips(truth):
    a, lap = truth
    w = graphs.draw_models(lap, 2, seed=0)
    with pytest.raises(SolverError, match="shrinkage"):
        est.neighbourhood_estimate(w, a)
    out = est.neighbourhood_estimate(w, a, shrinkage=0.5, project_sign=True)
    off = out[~np.eye(8, dtype=bool)]
    assert (off <= 0).all() and np.allclose(out, out.T)


def test_non_finite_inputs_are_rejected(truth):
    a, _ = truth
    w = np.ones((8, 10))
    w[3, 4] = np.inf
    with pytest.raises(NonFiniteError, match=r"models\[3, 4\] is inf"):
        est.neighbourhood_estimate(w, a)
    with pytest.raises(NonFiniteError, match=r"cov\[0, 0\] is nan"):
        est.laplacian_ml(np.full((3, 3), np.nan))
