import numpy as np
import pytest

from taskrel.decentral.graphs import random_graph
from taskrel.decentral.realdata import RealConfig, learn_graph, predict, run_real
from taskrel.errors import ConfigError

from .reference import real_baselines


def _two_clusters(n=60, k=8, d=3, seed=0):
    """Tasks 0..k/2-1 share one model and the rest another (plus small task-specific parts)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2, d)) * 2
    train, truth = [], []
    for j in range(k):
        w = centres[j * 2 // k] + 0.1 * rng.standard_normal(d)
        x = rng.standard_normal((n, d))
        train.append((x, x @ w + 0.5 * rng.standard_normal(n)))
        truth.append(w)
    return train, np.array(truth)


def test_learned_graph_links_tasks_of_the_same_cluster():
    train, _ = _two_clusters()
    complete = 1.0 - np.eye(8)
    result = run_real(train, complete, "squared", RealConfig(mu=0.05, eta=1.0, iters=1500))
    a = -(result.learned_laplacian - np.diag(np.diag(result.learned_laplacian)))
    same = (np.arange(8)[:, None] < 4) == (np.arange(8)[None, :] < 4)
    off = ~np.eye(8, dtype=bool)
    assert a[same & off].sum() > 0.8 * a[off].sum()
    assert np.isclose(np.linalg.eigvalsh(result.learned_laplacian).max(), 1.0)


def test_eta_grid_runs_side_by_side_on_the_same_samples():
    train, _ = _two_clusters(k=6)
    graph = random_graph(6, seed=0)
    config = RealConfig(mu=0.05, eta=3.0, iters=600)
    single = run_real(train, graph, "squared", config)
    grid = run_real(train, graph, "squared", config, etas=[1.0, 3.0])
    assert np.allclose(single.models["learned"], grid.models["learned@3"], atol=1e-12)
    assert np.allclose(single.models["noncoop"], grid.models["noncoop"], atol=1e-12)
    scores = predict(single.models["learned"], [x for x, _ in train])
    assert len(scores) == 6 and scores[0].shape == (60,)


def test_real_data_arguments():
    train, _ = _two_clusters(k=4)
    with pytest.raises(ConfigError, match="disconnected"):
        run_real(train, np.zeros((4, 4)), "squared", RealConfig())
    with pytest.raises(ConfigError, match="estimator must be 'global' or 'neighbourhood', got 'magic'"):
        RealConfig(estimator="magic")
    with pytest.raises(ConfigError, match="unstable"):
        run_real(train, 1.0 - np.eye(4), "squared", RealConfig(mu=0.5, eta=10.0, iters=100))
    models = np.random.default_rng(0).standard_normal((4, 5))
    lap = learn_graph(models, 1.0 - np.eye(4), RealConfig(estimator="neighbourhood", shrinkage=0.1))
    assert np.allclose(lap @ np.ones(4), 0)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_real_data_baselines_equal_a_from_scratch_reference(loss):
    """SGD and Metropolis ATC on the agents' own rows, written as plain loops (tests/decentral/reference.py)."""
    train, _ = _two_clusters(k=5)
    if loss == "logistic":
        train = [(x, (y > 0).astype(float)) for x, y in train]
    graph = random_graph(5, seed=2)
    config = RealConfig(mu=0.02, eta=1.0, iters=600, seed=4)
    result = run_real(train, graph, loss, config)
    reference = real_baselines(train, graph, loss, config)
    for name, models in reference.items():
        assert np.abs(result.models[name] - models).max() < 1e-10
