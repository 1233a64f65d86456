import json
import os
import resource
import subprocess
import sys

import pytest

from taskrel.cli import main

from ..images import assert_drawn

KEYS = {"laplacian_error", "laplacian_error_global", "msd_db"}
ALGOS = {"noncoop", "consensus", "learned", "true"}
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))


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
    assert_drawn(png)
    assert "MSD" in capsys.readouterr().out


def test_an_unstable_step_exits_2_at_once_through_the_real_command():
    """The issue's command: LMS would diverge (μ·tr(R_u) = 0.01·800 = 8); refused before any import of the engine."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "taskrel", "gmrf", "simulate", "--agents", "10", "--dim", "800", "--mu", "0.01"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of the command, not wall time: a shared machine's load is not the command's cost
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskrel gmrf: error: step size μ = 0.01 is unstable")
    assert "μ·tr(R_u) < 2" in lines[0] and "μ·tr(R_u) = 8 ≥ 2" in lines[0]
    assert "a stable choice is μ = 0.00125" in lines[0] and "μ'·η·λ_max(L) < 2" in lines[0]
    assert cpu < 1.0, cpu


def test_the_light_command_path_imports_neither_scipy_nor_torch():
    code = ("import sys\nfrom taskrel.cli import main\n"
            "assert main(['gmrf', 'simulate', '--dim', '800', '--mu', '0.01']) == 2\n"
            "print(sorted(m for m in ('scipy', 'torch', 'sklearn') if m in sys.modules))")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
