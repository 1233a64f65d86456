"""Real data as real processes: each agent loads only its own data; same numbers as in-process; faults named."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from taskrel.cli import main
from taskrel.decentral.distributed import launch_real
from taskrel.decentral.graphs import make_graph
from taskrel.decentral.realdata import RealConfig, run_source
from taskrel.decentral.sources import DatasetSource, FileSource
from taskrel.errors import ConfigError, DistributedError

from ..images import assert_drawn
from .test_sources import DECENTRAL, write_agents

pytestmark = pytest.mark.slow

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))


@pytest.fixture(autouse=True)
def _importable_children(monkeypatch):
    """Agent processes import taskrel from the same source tree as the tests."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))


def assert_same_run(a: dict, b: dict, tol: float = 1e-10) -> None:
    assert a["algorithms"].keys() == b["algorithms"].keys() == {"noncoop", "consensus", "learned"}
    for name, scores in a["algorithms"].items():
        assert scores.keys() == b["algorithms"][name].keys()
        for metric, value in scores.items():
            assert abs(value - b["algorithms"][name][metric]) < tol, (name, metric)
    assert np.abs(np.array(a["laplacian"]) - np.array(b["laplacian"])).max() < tol


def test_school_agents_as_processes_equal_the_in_process_run(tmp_path):
    names = DatasetSource.open("school").names[:6]
    source = DatasetSource.open("school", names)
    adjacency = make_graph("random", 6, average_degree=3, weights=1.0, seed=1)
    config = RealConfig(mu=0.01, eta=1.0, iters=400, seed=1, **DECENTRAL)
    dist = launch_real(source, adjacency, config, tmp_path, timeout=30)
    sim = run_source(source, adjacency, config)
    assert_same_run(dist, sim)
    lap = np.array(dist["laplacian"])
    assert (lap[~np.eye(6, dtype=bool)] < 0).any()  # a graph was learned, not an all-zero L̂


def test_landmine_through_the_command_dist_equals_sim_and_saves_the_graph(tmp_path, capsys):
    args = ["gmrf", "run", "--dataset", "landmine", "--tasks", "2,5,11,17,23", "--iters", "400", "--mu", "0.05",
            "--degree", "2.4", "--seed", "3", "--json"]  # fmt: skip
    assert main([*args, "--engine", "dist", "--timeout", "30", "--out", str(tmp_path)]) == 0
    dist = json.loads(capsys.readouterr().out)
    assert main([*args, "--engine", "sim"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert set(dist) == {"algorithms", "laplacian"}
    assert all(set(v) == {"test_auc"} for v in dist["algorithms"].values())
    assert_same_run(dist, sim)
    header = (tmp_path / "learned_laplacian.csv").read_text().splitlines()[0]
    assert header == ",2,5,11,17,23"
    assert_drawn(tmp_path / "learned_graph.png", min_painted=0.005)


@pytest.mark.parametrize("fault", ["missing", "malformed"])
def test_a_bad_agent_file_stops_every_agent_naming_it(tmp_path, fault):
    paths = write_agents(tmp_path, k=3)
    if fault == "missing":
        paths[1].unlink()
        cause = r"a1\.npz is missing"
    else:
        paths[1].write_bytes(b"these bytes are not an npz archive")
        cause = r"a1\.npz: not a readable \.npz file"
    source = FileSource(paths)
    adjacency = make_graph("random", 3, average_degree=2, weights=1.0, seed=0)
    out = tmp_path / "run"
    with pytest.raises(DistributedError, match=rf"agent 1 \(a1\) could not start: DataError: .*{cause}"):
        launch_real(source, adjacency, RealConfig(mu=0.05, iters=100, **DECENTRAL), out, timeout=10)
    for k in range(3):
        report = json.loads((out / f"error_{k}.json").read_text())
        assert report["type"] == "DistributedError" and "agent 1 (a1) could not start: DataError" in report["message"]


def test_an_agents_unstable_step_is_its_own_config_error(tmp_path):
    source = FileSource(write_agents(tmp_path, k=3))
    adjacency = make_graph("random", 3, average_degree=2, weights=1.0, seed=0)
    with pytest.raises(ConfigError, match=r"agent \d \(a\d\): step size μ = 1.5 is unstable"):
        config = RealConfig(mu=1.5, eta=1.0, iters=100, **DECENTRAL)
        launch_real(source, adjacency, config, tmp_path / "run", timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary_line(*outputs: str) -> dict:
    lines = [line for out in outputs for line in out.splitlines() if line.startswith('{"algorithms"')]
    assert len(lines) == 1, outputs
    return json.loads(lines[0])


def test_two_torchrun_nodes_equal_one_launch_and_the_in_process_run(tmp_path):
    (tmp_path / "data").mkdir()
    write_agents(tmp_path / "data", k=4)
    spec = tmp_path / "run.json"
    common = ["--data", str(tmp_path / "data"), "--iters", "300", "--mu", "0.05", "--degree", "2", "--seed", "4"]
    assert main(["gmrf", "run", *common, "--spec", str(spec)]) == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    entry = ["-m", "taskrel.decentral.distributed", "--config", str(spec), "--timeout", "60", "--summary"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    one_node = [*torchrun, "--standalone", "--nnodes=1", "--nproc_per_node=4", *entry, "--out", str(tmp_path / "one")]
    single = subprocess.run(one_node, env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    endpoint = f"--rdzv-endpoint=127.0.0.1:{_free_port()}"
    nodes = [subprocess.Popen([*torchrun, "--nnodes=2", f"--node_rank={r}", "--nproc_per_node=2", "--rdzv-backend=c10d",
                               endpoint, *entry, "--out", str(tmp_path / "two")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    two = _summary_line(*(out for out, _ in outputs))
    one = _summary_line(single.stdout)
    assert_same_run(two, one, tol=1e-12)
    adjacency = make_graph("random", 4, average_degree=2, weights=1.0, seed=4)
    config = RealConfig(mu=0.05, eta=1.0, iters=300, seed=4, **DECENTRAL)
    sim = run_source(FileSource.from_directory(tmp_path / "data"), adjacency, config)
    assert_same_run(one, sim)
