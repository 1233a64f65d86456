"""The real multi-process engine: same iterates as the simulator, and no hang when an agent dies."""

import json
import os
import signal
import time

import numpy as np
import pytest

from taskrel.decentral import GMRFConfig, simulate
from taskrel.decentral.algorithms import ALGORITHMS
from taskrel.decentral.distributed import EXIT_ERROR, LocalRun, launch
from taskrel.decentral.world import build_world
from taskrel.errors import ConfigError, DistributedError

from .reference import baselines


@pytest.fixture(autouse=True)
def _importable_children(monkeypatch):
    """Agent processes import taskrel from the same source tree as the tests."""
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.abspath(src), os.environ.get("PYTHONPATH", "")]))


def test_processes_reproduce_the_simulator(tmp_path):
    config = GMRFConfig(agents=3, dim=8, iters=400, switch=150, update_every=100, seed=7, average_degree=1.4)
    dist = launch(config, tmp_path, timeout=30)
    sim = simulate(config)
    assert np.abs(dist.msd - sim.msd).max() < 1e-10
    assert np.abs(dist.final_models - sim.final_models).max() < 1e-10
    assert np.abs(dist.learned_laplacian - sim.learned_laplacian).max() < 1e-10
    assert dist.summary()["laplacian_error"] == pytest.approx(sim.summary()["laplacian_error"], rel=1e-10)
    assert sorted(p.name for p in tmp_path.glob("agent_*.npz")) == [f"agent_{k}.npz" for k in range(3)]
    world = build_world(config, 0)  # and both equal plain loops written from the equations alone
    for name, (models, msd) in baselines(config, world.adjacency, world.laplacian, world.models[None]).items():
        assert np.abs(dist.final_models[ALGORITHMS.index(name)] - models).max() < 1e-10
        assert np.abs(dist.msd[:, ALGORITHMS.index(name)] - msd).max() < 1e-10 * msd.max()


def test_an_agents_own_error_is_reported_as_such(tmp_path):
    with pytest.raises(ConfigError, match="unstable"):
        launch(GMRFConfig(agents=2, dim=4, iters=50, eta=1000.0), tmp_path, timeout=30)


def _path_graph(tmp_path, k: int) -> str:
    """A path 0 - 1 - ... - (k-1) as a graph file: agent k-1 is no neighbour of agent 1."""
    a = np.zeros((k, k))
    for i in range(k - 1):
        a[i, i + 1] = a[i + 1, i] = 1.0
    path = tmp_path / "path.csv"
    np.savetxt(path, a, delimiter=",")
    return str(path)


def _wait_joined(run, out, ranks, limit=180):
    start = time.monotonic()
    while not all((out / f"joined_{k}").exists() for k in ranks):
        assert time.monotonic() - start < limit, "agents did not start"
        assert all(p.poll() is None for p in run.procs.values()), "an agent ended during start-up"
        time.sleep(0.05)


@pytest.mark.slow
def test_killing_one_agent_stops_every_other_naming_it(tmp_path):
    timeout = 5.0
    config = GMRFConfig(agents=4, dim=4, iters=10**7, switch=10**7 - 1, seed=1, graph=_path_graph(tmp_path, 4))
    out = tmp_path / "run"
    with LocalRun(config.to_dict(), 4, out, timeout=timeout) as run:
        _wait_joined(run, out, range(4))
        time.sleep(0.5)  # well inside the iteration loop
        run.procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(DistributedError, match=r"agent\(s\) \[1\] died"):
            run.wait(deadline=120, grace=timeout + 20)
        elapsed = time.monotonic() - killed
    assert elapsed < timeout + 20
    for k in (0, 2, 3):  # 0 and 2 are neighbours of 1; 3 learns of it through the store
        assert run.procs[k].returncode == EXIT_ERROR  # ended by itself, with a report
        report = json.loads((out / f"error_{k}.json").read_text())
        assert report["type"] == "DistributedError" and report["message"].startswith(f"agent {k}: ")
        assert "agent 1 was lost during iteration" in report["message"], report["message"]


@pytest.mark.slow
def test_a_neighbour_that_never_joins_is_named_by_every_agent(tmp_path):
    timeout = 5.0
    config = GMRFConfig(agents=3, dim=4, iters=50, average_degree=2)
    expected = r"agent 0: agent\(s\) \[1\] never joined within 5 s"
    with LocalRun(config.to_dict(), 3, tmp_path, timeout=timeout, ranks=[0, 2]) as run, pytest.raises(
        DistributedError, match=expected
    ):
        run.wait(deadline=180, grace=timeout + 20)
    for k in (0, 2):
        assert run.procs[k].returncode == EXIT_ERROR
        report = json.loads((tmp_path / f"error_{k}.json").read_text())
        assert report == {"agent": k, "type": "DistributedError",
                          "message": f"agent {k}: agent(s) [1] never joined within 5 s"}  # fmt: skip
