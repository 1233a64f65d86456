"""The real multi-process engine: same iterates as the simulator, and no hang when an agent dies."""

import json
import os
import signal
import time

import numpy as np
import pytest

from taskrel.decentral import GMRFConfig, simulate
from taskrel.decentral.distributed import EXIT_ERROR, launch, spawn_agents, wait_agents
from taskrel.errors import ConfigError, DistributedError


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


def test_an_agents_own_error_is_reported_as_such(tmp_path):
    with pytest.raises(ConfigError, match="unstable"):
        launch(GMRFConfig(agents=2, dim=4, iters=50, eta=1000.0), tmp_path, timeout=30)


def test_killing_one_agent_stops_all_others_with_an_error(tmp_path):
    timeout = 5.0
    config = GMRFConfig(agents=3, dim=4, iters=10**7, switch=10**7 - 1, seed=1)
    procs = spawn_agents(config, tmp_path, timeout=timeout)
    try:
        start = time.monotonic()
        while not all((tmp_path / f"joined_{k}").exists() for k in range(3)):
            assert time.monotonic() - start < 120, "agents did not start"
            assert all(p.poll() is None for p in procs), "an agent ended during start-up"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the iteration loop
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(DistributedError, match=r"agent\(s\) \[1\] died"):
            wait_agents(procs, tmp_path, deadline=120, grace=timeout + 20)
        elapsed = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert elapsed < timeout + 20
    for k in (0, 2):
        assert procs[k].returncode == EXIT_ERROR  # ended by itself, with a report
        report = json.loads((tmp_path / f"error_{k}.json").read_text())
        assert report["type"] == "DistributedError" and f"agent {k}" in report["message"]
