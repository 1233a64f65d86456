import numpy as np
import pytest

from taskrel.decentral import GMRFConfig, simulate
from taskrel.decentral import algorithms as alg
from taskrel.decentral.algorithms import ALGORITHMS
from taskrel.decentral.world import build_world, graph_of
from taskrel.errors import ConfigError

from .reference import baselines


def test_vectorised_and_per_agent_engines_agree():
    config = GMRFConfig(agents=6, dim=12, iters=700, runs=2, seed=4, update_every=150, average_degree=2.5)
    vec = simulate(config)
    loop = simulate(config, vectorised=False)
    assert np.abs(vec.msd - loop.msd).max() < 1e-10
    assert np.abs(vec.final_models - loop.final_models).max() < 1e-10
    assert np.abs(vec.learned_laplacian - loop.learned_laplacian).max() < 1e-10
    assert vec.msd.shape == (2, len(ALGORITHMS), 700)


def test_same_seed_same_numbers_other_seed_other_numbers():
    config = GMRFConfig(agents=4, dim=6, iters=300, runs=2)
    a, b = simulate(config), simulate(config)
    assert np.array_equal(a.msd, b.msd)
    c = simulate(config.replace(seed=1))
    assert not np.allclose(a.msd, c.msd)


def test_phase_one_of_learned_is_non_cooperative():
    config = GMRFConfig(agents=5, dim=8, iters=400, switch=200, runs=2)
    r = simulate(config)
    noncoop, learned = ALGORITHMS.index("noncoop"), ALGORITHMS.index("learned")
    assert np.array_equal(r.msd[:, noncoop, :200], r.msd[:, learned, :200])
    assert not np.allclose(r.msd[:, noncoop, 200:], r.msd[:, learned, 200:])


def test_noise_free_true_diffusion_settles_near_the_regularised_optimum():
    config = GMRFConfig(agents=5, dim=10, mu=0.002, eta=0.5, sigma_v=0.0, iters=15000, runs=1, seed=2)
    r = simulate(config)
    lap, w_true = r.laplacian, r.true_models[0]
    w_opt = np.linalg.solve(np.eye(5) + config.eta * lap, w_true)  # σ_u = 1
    w_final = r.final_models[ALGORITHMS.index("true"), 0]
    assert np.linalg.norm(w_final - w_opt) < 0.1 * np.linalg.norm(w_opt - w_true)


def test_learned_graph_helps_where_gradient_noise_dominates():
    """Calibrated regime (noise variance comparable to the prior spread, η ≈ μσ_v²/σ_u² order):
    learned-L̂ diffusion beats non-cooperative and consensus, and is close to the true-L oracle."""
    config = GMRFConfig(agents=10, dim=50, mu=0.01, eta=0.1, sigma_v=4.0, iters=3000, runs=4, seed=0)
    msd = simulate(config).steady_state_db()
    assert msd["learned"] < msd["noncoop"] - 0.5
    assert msd["learned"] < msd["consensus"] - 0.5
    assert abs(msd["learned"] - msd["true"]) < abs(msd["noncoop"] - msd["true"])


def test_laplacian_error_falls_with_dimension():
    """Phase-I LMS iterates (μ·M fixed so that LMS stays stable), error of L̂ at the switch."""
    base = GMRFConfig(agents=8, sigma_v=0.2, iters=3000, switch=2900, runs=3, average_degree=3)
    small = simulate(base.replace(dim=30, mu=0.5 / 30)).laplacian_error.mean()
    large = simulate(base.replace(dim=240, mu=0.5 / 240)).laplacian_error.mean()
    assert large < small / 3


@pytest.mark.parametrize(
    ("change", "message"),
    [({"agents": 1}, "at least 2 agents"), ({"dim": 0}, "M must be"), ({"mu": 0.0}, "mu must be > 0"),
     ({"mu": -0.1}, "mu must be > 0"), ({"eta": 0.0}, "eta must be > 0"), ({"switch": 0}, "switch")],
)  # fmt: skip
def test_bad_arguments(change, message):
    with pytest.raises(ConfigError, match=message):
        GMRFConfig(**change)


def test_disconnected_graph_file(tmp_path):
    a = np.zeros((4, 4))
    a[0, 1] = a[1, 0] = a[2, 3] = a[3, 2] = 1.0
    path = tmp_path / "g.csv"
    np.savetxt(path, a, delimiter=",")
    with pytest.raises(ConfigError, match="disconnected"):
        simulate(GMRFConfig(agents=4, graph=str(path), iters=10))


def test_unstable_coupling_and_divergence_fail_loudly():
    with pytest.raises(ConfigError, match="unstable"):
        simulate(GMRFConfig(agents=5, dim=4, eta=1000.0, iters=10))


def test_a_step_beyond_the_lms_bound_is_refused_before_any_iteration():
    with pytest.raises(ConfigError, match=r"μ·tr\(R_u\) = 50 ≥ 2; a stable choice is μ = 0.02"):
        GMRFConfig(agents=4, dim=50, mu=1.0, eta=0.01, iters=2000)
    with pytest.raises(ConfigError, match=r"μ' = 0.05 is unstable"):
        GMRFConfig(agents=4, dim=50, mu=0.02, mu_coop=0.05)
    # the bound is real: plain LMS at the refused μ blows up, at the suggested μ it converges
    rng = np.random.default_rng(0)
    target = rng.standard_normal(50)
    for mu, converges in ((1.0, False), (0.02, True)):
        w = np.zeros(50)
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(2000):
                u = rng.standard_normal(50)
                w = alg.adapt(w, u, u @ target, mu, "squared")
        assert bool(np.all(np.abs(w - target) < 0.1)) == converges


def test_phase_one_models_equal_the_simulators_non_cooperative_iterates():
    from taskrel.decentral.simulator import phase_one_models

    config = GMRFConfig(agents=5, dim=8, iters=301, switch=300, runs=2)
    models, _ = phase_one_models(config, iters=301)
    assert np.abs(simulate(config).final_models[ALGORITHMS.index("noncoop")] - models).max() < 1e-12


def test_skipping_the_global_reference_changes_nothing_else():
    config = GMRFConfig(agents=5, dim=8, iters=300, runs=2)
    full, bare = simulate(config), simulate(config, reference=False)
    assert np.isnan(bare.laplacian_error_global).all() and np.isfinite(full.laplacian_error_global).all()
    assert np.array_equal(full.msd, bare.msd) and np.array_equal(full.laplacian_error, bare.laplacian_error)


def test_both_engines_equal_a_from_scratch_reference_of_the_baselines():
    """LMS, Metropolis ATC and true-L diffusion written as plain loops (tests/decentral/reference.py)."""
    config = GMRFConfig(agents=5, dim=8, iters=300, runs=2, seed=3, mu=0.02, mu_coop=0.015, eta=0.7)
    adjacency = graph_of(config)  # the inputs: graph, true Laplacian and each run's true models
    worlds = [build_world(config, r, adjacency) for r in range(config.runs)]
    models = np.stack([w.models for w in worlds])
    reference = baselines(config, adjacency, worlds[0].laplacian, models)
    for engine in (simulate(config), simulate(config, vectorised=False)):
        for name, (models, msd) in reference.items():
            a = ALGORITHMS.index(name)
            assert np.abs(engine.final_models[a] - models).max() < 1e-10
            assert np.abs(engine.msd[:, a] - msd).max() < 1e-10 * msd.max()
