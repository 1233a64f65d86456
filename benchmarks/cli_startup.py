"""How fast the command line answers: ``taskrel --help``, every command's ``--help`` and ``taskrel problems``.

Each command is run `--repeats` times as a fresh ``python -m taskrel`` process and its median wall
time recorded, beside the same commands at the `--baseline` commit (checked out into a temporary git
worktree, run from its ``src``) and beside ``python -c "import torch"`` for scale. Writes
``results/cli_startup.json``.

    python benchmarks/cli_startup.py --repeats 7 --baseline 283fb29
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    ["--help"], ["train", "--help"], ["sweep", "--help"], ["gains", "--help"], ["problems", "--help"],
    ["affinity", "--help"], ["select", "--help"], ["evaluate-predictors", "--help"], ["auxinash", "run", "--help"],
    ["auxinash", "toy", "--help"], ["gmrf", "run", "--help"], ["gmrf", "simulate", "--help"], ["pipeline", "--help"],
    ["problems"],
]  # fmt: skip


def median_seconds(argv: list[str], src: Path, repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(src: Path, repeats: int) -> dict[str, float]:
    return {
        " ".join(c): round(median_seconds([sys.executable, "-m", "taskrel", *c], src, repeats), 3) for c in COMMANDS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", help="a commit to measure side by side (e.g. the last before a change)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"commit": commit, "repeats": args.repeats, "seconds": measure(ROOT / "src", args.repeats)}
    result["import_torch_seconds"] = round(
        median_seconds([sys.executable, "-c", "import torch"], ROOT, args.repeats), 3
    )
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.baseline], cwd=ROOT, check=True)
            try:
                result["baseline"] = {"commit": args.baseline, "seconds": measure(tree / "src", args.repeats)}
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
    result["slowest"] = max(result["seconds"].items(), key=lambda kv: kv[1])
    path = write_result("cli_startup", result)
    for name, seconds in result["seconds"].items():
        before = result.get("baseline", {}).get("seconds", {}).get(name)
        print(f"{name:28s} {seconds:6.3f} s" + (f"   (baseline {before:.3f} s)" if before is not None else ""))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
