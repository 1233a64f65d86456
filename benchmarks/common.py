"""Helpers shared by the benchmark scripts: where results go and what machine made them."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import subprocess
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


def commit() -> str:
    """The repository's HEAD commit (short), with "+changes" when tracked files (results aside) differ from it."""
    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
                           cwd=root, capture_output=True, text=True)  # fmt: skip
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


#: The commit of the code this benchmark imported (taken when it started, not when it writes).
COMMIT = commit()


def write_result(name: str, payload: dict) -> Path:
    """Write benchmarks/results/<name>.json with the command, the commit it started at and machine facts added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {"command": command(), "commit": COMMIT, "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def correlation_curves(result: dict, sizes: list[int], path: Path, title: str, ylabel: str) -> None:
    """Plot Pearson r (mean ± sd over draws) against |G_train| for every method of `evaluate_predictors`."""
    from taskrel.plots import curves

    series = {
        name: ([by_size[str(s)]["pearson"] for s in sizes], [by_size[str(s)]["pearson_std"] for s in sizes])
        for name, by_size in result["methods"].items()
    }
    curves(sizes, series, path, title=title, xlabel="|G_train| (trained groups)", ylabel=ylabel)


def etap_with_other_affinities(table, matrices: dict, primary: str, sizes: list[int], repeats: int,
                               test_size: float) -> dict:  # fmt: skip
    """ETAP's scores of `evaluate_predictors` with every affinity matrix of `matrices` but the primary one."""
    from taskrel.predict import PREDICTORS
    from taskrel.predict.evaluation import evaluate_predictors

    etap = {"etap": PREDICTORS["etap"]}
    return {
        name: evaluate_predictors(table, matrix, etap, sizes, repeats, test_size, progress=False)["methods"]["etap"]
        for name, matrix in matrices.items()
        if name != primary
    }


def save_affinity_means(per_method: dict[str, list], prefix: str, dataset: str) -> None:
    """Seed-mean matrix of every collector, time-averaged and validation-weighted: CSV and heat map each."""
    from taskrel.affinity import AffinityMatrix

    for name, collectors in per_method.items():
        for weighting, suffix in (("steps", ""), ("validation", "_validation")):
            mean = AffinityMatrix.mean([c.matrix(weighting) for c in collectors])
            mean.to_csv(RESULTS / f"{prefix}_{name}{suffix}.csv")
            title = f"{dataset} {name} affinity ({weighting}-weighted), mean of {len(collectors)} seeds"
            mean.plot(RESULTS / f"{prefix}_{name}{suffix}.png", title=title)


def auxiliary_weighting(method: str, group, meta_loss):
    """The weighting of an auxiliary-learning run by name: "stl" (none), "ls", "nash_mtl" or "auxinash"."""
    from taskrel.weighting import AuxiNash, LinearScalarisation, NashMTL

    if method == "stl":
        return None
    return {
        "ls": lambda: LinearScalarisation(group),
        "nash_mtl": lambda: NashMTL(group),
        "auxinash": lambda: AuxiNash(group, meta_loss=meta_loss),
    }[method]()
