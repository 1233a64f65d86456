"""Wall time of the all-task Chemical run with each affinity collector, relative to no collector.

Same seed, same fixed number of epochs, methods interleaved within each repeat; the median over
repeats is reported. ETAP collects at every step, TAG takes K trial steps per step and PTG
K(K−1)/2 + K. Run from the repository root:

    python benchmarks/affinity_overhead.py --epochs 10 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from taskrel.affinity.measure import measure_affinity
from taskrel.problem import load_problem

from common import RESULTS, write_result

METHODS = {  # label -> (collector method, options)
    "none": ("none", {}),
    "etap": ("etap", {}),
    "etap+momentum": ("etap", {"momentum": True}),
    "tag": ("tag", {}),
    "ptg": ("ptg", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = load_problem("chemical")
    measure_affinity(dataset, "etap", epochs=1)  # warm-up: imports, first-call allocations
    seconds: dict[str, list[float]] = {label: [] for label in METHODS}
    collecting: dict[str, list[float]] = {label: [] for label in METHODS}
    steps = 0
    for repeat in range(args.repeats):
        for label, (method, options) in METHODS.items():
            matrix, result = measure_affinity(dataset, method, epochs=args.epochs, seed=args.seed, **options)
            seconds[label].append(result.seconds)
            collecting[label].append(matrix.seconds if matrix else 0.0)
            steps = result.steps
            print(f"repeat {repeat} {label:14s} {result.seconds:7.3f} s", flush=True)
    median = {label: statistics.median(values) for label, values in seconds.items()}
    results = {
        label: {
            "train_seconds": values,
            "collect_seconds": collecting[label],
            "median_seconds": median[label],
            "ratio_vs_plain": median[label] / median["none"],
        }
        for label, values in seconds.items()
    }
    payload = {
        "dataset": "chemical",
        "tasks": len(dataset.tasks),
        "epochs": args.epochs,
        "steps": steps,
        "repeats": args.repeats,
        "results": results,
        "etap_vs_tag": median["etap"] / median["tag"],
        "etap_vs_ptg": median["etap"] / median["ptg"],
    }
    path = write_result("affinity_overhead", payload)
    labels = list(METHODS)
    ratios = [results[label]["ratio_vs_plain"] for label in labels]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    bars = ax.bar(labels, ratios, color=["#999999", "#1f77b4", "#6baed6", "#ff7f0e", "#d62728"])
    ax.bar_label(bars, [f"{r:.2f}×" for r in ratios])
    ax.set_yscale("log")
    ax.set_ylabel("wall time / plain training")
    ax.set_title(f"Affinity collection on Chemical ({len(dataset.tasks)} tasks, {steps} steps)")
    fig.tight_layout()
    fig.savefig(RESULTS / "affinity_overhead.png", dpi=130)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
