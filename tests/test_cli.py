"""The `taskrel` command as a user runs it (in-process entry point and a real subprocess)."""

import json
import subprocess
import sys

from taskrel.affinity import AffinityMatrix
from taskrel.cli import main
from taskrel.data import CHEMICAL_TASKS

from .images import assert_drawn


def run_json(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_affinity_writes_matrix_heat_map_and_json(tmp_path, capsys):
    code, payload = run_json(
        capsys,
        "affinity",
        "--dataset",
        "chemical",
        "--method",
        "etap",
        "--weighting",
        "steps",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert code == 0
    assert set(payload) == {"method", "tasks", "steps", "seconds", "train_seconds", "stalled", "update"}
    assert payload["stalled"] == []  # steps weighting: no column needs the validation fallback
    assert payload["update"] == "gradient"  # ETAP's default direction, stated
    assert payload["tasks"] == list(CHEMICAL_TASKS) and payload["steps"] == 6  # 1491 rows / 264 per batch
    assert 0 < payload["seconds"] < payload["train_seconds"]
    matrix = AffinityMatrix.read_csv(tmp_path / "affinity.csv")
    assert matrix.tasks == CHEMICAL_TASKS
    assert (matrix.values.diagonal() > 0).all()  # ⟨g_i, g_i⟩ / L_i
    assert_drawn(tmp_path / "affinity.png", min_painted=0.2)  # a heat map: colour over most of the picture


def test_affinity_none_runs_the_same_training_without_collector(tmp_path, capsys):
    code, payload = run_json(
        capsys,
        "affinity",
        "--dataset",
        "chemical",
        "--method",
        "none",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert code == 0 and payload["steps"] == 0 and payload["seconds"] == 0
    assert not (tmp_path / "affinity.csv").exists()


def test_train_prints_per_task_test_losses(capsys):
    code, payload = run_json(
        capsys, "train", "--dataset", "chemical", "--group", "83|78", "--seed", "0", "--max-steps", "30", "--json"
    )
    assert code == 0 and set(payload["test_loss"]) == {"83", "78"}
    assert all(0 < v < 1.5 for v in payload["test_loss"].values())


def test_errors_exit_2_with_one_line(capsys):
    assert main(["train", "--dataset", "chemical", "--group", "83|99"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown task(s) '99'" in err


def test_console_entry_point_runs_as_a_process():
    result = subprocess.run([sys.executable, "-m", "taskrel", "--help"], capture_output=True, text=True, check=True)
    for command in ("affinity", "train", "sweep", "gains"):
        assert command in result.stdout
