"""Helpers shared by the benchmark scripts: where results go and what machine made them."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """Facts about the machine and software a timing was taken on."""
    import scipy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "scipy": scipy.__version__,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def command() -> str:
    """The command line that ran this benchmark, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, sys.argv[1:])])


def write_result(name: str, payload: dict) -> Path:
    """Write benchmarks/results/<name>.json with the command and machine facts added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {"command": command(), "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
