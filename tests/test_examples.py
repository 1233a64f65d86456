"""The README's own-problem example runs as written, through the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = "examples/etth1_problem.py:problem"


def taskrel(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "taskrel", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_the_example_problem_trains_a_group_from_the_command_line():
    result = taskrel("train", "--problem", SPEC, "--group", "MUFL|OT", "--max-steps", "30", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["problem"] == "etth1-next-hour" and payload["steps"] == 30
    assert set(payload["test_loss"]) == {"MUFL", "OT"} and all(0 < v < 10 for v in payload["test_loss"].values())


def test_problems_lists_the_builtins():
    result = taskrel("problems", "--json")
    assert result.returncode == 0 and {"chemical", "landmine"} <= set(json.loads(result.stdout))
