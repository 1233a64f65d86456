import numpy as np
import pytest

from taskrel.decentral import graphs
from taskrel.errors import ConfigError, NonFiniteError, ShapeError


@pytest.mark.parametrize("topology", graphs.TOPOLOGIES)
def test_topologies_are_connected_symmetric_with_requested_degree(topology):
    a = graphs.make_graph(topology, 12, average_degree=4, weights=1.0, seed=3)
    assert a.shape == (12, 12)
    assert np.array_equal(a, a.T) and np.all(np.diag(a) == 0) and (a >= 0).all()
    assert graphs.is_connected(a)
    degree = (a != 0).sum(axis=1).mean()
    assert abs(degree - 4) <= 0.5


def test_regular_and_hub_shapes():
    reg = graphs.regular_graph(10, 4, seed=1)
    assert set((reg != 0).sum(axis=1)) == {4}
    hub = graphs.hub_graph(10, 3.0, seed=1)
    assert (hub != 0).sum(axis=1).max() == 9


def test_random_graph_respects_degree_cap_and_weight_set():
    a = graphs.random_graph(30, edges=50, max_degree=5, weights=(1.0, 5.0), seed=0)
    assert (a != 0).sum(axis=1).max() <= 5
    assert set(np.unique(a[a != 0])) <= {1.0, 5.0}
    assert (a != 0).sum() // 2 == 50


def test_laplacians():
    a = graphs.random_graph(8, seed=2)
    cgl = graphs.laplacian(a, None)
    assert np.allclose(cgl @ np.ones(8), 0)
    ggl = graphs.laplacian(a, 1.0)
    assert np.allclose(ggl - cgl, np.eye(8))
    assert np.linalg.eigvalsh(ggl).min() > 0
    # quadratic form: ½ Σ a_kl (x_k - x_l)² + Σ v_k x_k²
    x = np.random.default_rng(0).standard_normal(8)
    expected = 0.5 * np.sum(a * (x[:, None] - x[None, :]) ** 2) + np.sum(x**2)
    assert np.isclose(x @ ggl @ x, expected)


def test_metropolis_is_doubly_stochastic_on_the_support():
    a = graphs.random_graph(9, seed=4)
    c = graphs.metropolis_weights(a)
    assert np.allclose(c.sum(axis=0), 1) and np.allclose(c.sum(axis=1), 1) and np.allclose(c, c.T)
    assert np.all(c[(a == 0) & ~np.eye(9, dtype=bool)] == 0) and (c >= 0).all()


def test_model_draws_have_covariance_inverse_laplacian():
    lap = graphs.laplacian(graphs.random_graph(5, seed=1), 1.0)
    w = graphs.draw_models(lap, 200_000, seed=0)
    assert np.allclose(w @ w.T / w.shape[1], np.linalg.inv(lap), atol=0.01)
    cgl = graphs.laplacian(graphs.random_graph(5, seed=1), None)
    w = graphs.draw_models(cgl, 200_000, seed=0)
    assert np.allclose(w @ w.T / w.shape[1], np.linalg.pinv(cgl), atol=0.01)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="at least 2 agents"):
        graphs.random_graph(1)
    disconnected = np.zeros((4, 4))
    disconnected[0, 1] = disconnected[1, 0] = 1
    with pytest.raises(ConfigError, match="disconnected"):
        graphs.require_connected(disconnected)
    bad = np.ones((3, 3)) - np.eye(3)
    bad[0, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"adjacency\[0, 1\] is nan"):
        graphs.laplacian(bad)
    with pytest.raises(ShapeError, match=r"square \(K, K\) matrix, got shape \(2, 3\)"):
        graphs.laplacian(np.ones((2, 3)))
    with pytest.raises(ConfigError, match="negative"):
        graphs.laplacian(-(np.ones((3, 3)) - np.eye(3)))
    with pytest.raises(ConfigError, match="M must be"):
        graphs.draw_models(np.eye(3), 0)
    with pytest.raises(ConfigError, match="unknown topology"):
        graphs.make_graph("star", 5)
