"""Shared by the benchmark scripts: machine description and result files under benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


def write_result(name: str, payload: dict) -> Path:
    """Write benchmarks/results/<name>.json with the numbers, the machine and the exact command."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {"command": shlex.join([Path(sys.executable).name, *sys.argv]), "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2, default=float) + "\n")
    return path
