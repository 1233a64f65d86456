import json
import os

import pytest

from taskrel.cli import main

KEYS = {"laplacian_error", "laplacian_error_global", "msd_db"}
ALGOS = {"noncoop", "consensus", "learned", "true"}


def test_simulate_prints_the_contract_json(capsys):
    code = main(["gmrf", "simulate", "--agents", "5", "--dim", "12", "--mu", "0.01", "--iters", "400", "--runs", "2",
                 "--seed", "3", "--json"])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == KEYS and set(out["msd_db"]) == ALGOS
    assert all(isinstance(v, float) for v in [out["laplacian_error"], *out["msd_db"].values()])


def test_run_with_the_simulator_engine_matches_simulate(capsys):
    args = ["--agents", "4", "--dim", "8", "--mu", "0.01", "--iters", "300", "--seed", "1", "--json"]
    assert main(["gmrf", "simulate", *args]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["gmrf", "run", "--engine", "sim", *args]) == 0
    assert json.loads(capsys.readouterr().out) == a


def test_run_with_real_processes_prints_the_same_json(capsys, monkeypatch):
    src = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    args = ["--agents", "2", "--dim", "6", "--mu", "0.01", "--iters", "200", "--seed", "2", "--json"]
    assert main(["gmrf", "simulate", *args]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert main(["gmrf", "run", "--engine", "dist", "--timeout", "30", *args]) == 0
    dist = json.loads(capsys.readouterr().out)
    assert dist["laplacian_error"] == pytest.approx(sim["laplacian_error"], rel=1e-10)
    assert dist["laplacian_error_global"] == pytest.approx(sim["laplacian_error_global"], rel=1e-6)
    for name in ALGOS:
        assert dist["msd_db"][name] == pytest.approx(sim["msd_db"][name], abs=1e-10)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--agents", "1"], "at least 2 agents"), (["--dim", "0"], "M must be"), (["--mu", "0"], "mu must be > 0"),
     (["--mu", "-1"], "mu must be > 0"), (["--eta", "5000"], "unstable")],
)  # fmt: skip
def test_bad_arguments_get_a_clear_error(args, message, capsys):
    assert main(["gmrf", "simulate", "--iters", "20", *args, "--json"]) == 2
    assert message in capsys.readouterr().err


def test_disconnected_graph_gets_a_clear_error(tmp_path, capsys):
    path = tmp_path / "g.csv"
    path.write_text("0,1,0,0\n1,0,0,0\n0,0,0,1\n0,0,1,0\n")
    assert main(["gmrf", "run", "--engine", "sim", "--agents", "4", "--graph", str(path), "--json"]) == 2
    assert "disconnected" in capsys.readouterr().err


def test_plot(tmp_path, capsys):
    png = tmp_path / "msd.png"
    args = ["--agents", "4", "--dim", "6", "--iters", "300", "--plot", str(png), "--quiet"]
    assert main(["gmrf", "simulate", *args]) == 0
    assert png.stat().st_size > 10_000
    assert "MSD" in capsys.readouterr().out
