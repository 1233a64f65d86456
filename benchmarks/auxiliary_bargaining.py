"""Why bargaining does not use the auxiliaries on MNIST parity: the update shares over training.

On `auxiliary_digits.py`'s problem (main task ``odd`` from scarce labels, six auxiliaries), Nash-MTL and
AuxiNash are trained as there, recording every 25 steps each task's gradient norm ‖g_i‖ on the shared
layers and its coefficient α_i (`taskrel.weighting.weighted.UpdateHistory`). Reported per method and
seed, at each quarter of the run: the main task's gradient norm over the auxiliaries' mean, its
coefficient over theirs, and its share α_main‖g_main‖ / Σ_i α_i‖g_i‖ of the shared update's magnitude;
AuxiNash's preference for the main task. Under linear scalarisation (all α_i = 1) that share would be
the main task's share of the gradient norms, Σ-normalised.

    TASKREL_DATA=../shared/external_data python benchmarks/auxiliary_bargaining.py --labels 100 --seeds 3
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from auxiliary_digits import MAIN, META_LR, TASKS, problem
from taskrel.weighting import NearStationaryWarning
from taskrel.weighting.weighted import WeightingSpec, train_weighted

from common import RESULTS, write_result

NAME = "auxiliary_bargaining"
METHODS = ("nash-mtl", "auxinash")


def trace(labels: int, seed: int, method: str) -> dict:
    options = {"meta_lr": META_LR} if method == "auxinash" else {}
    done = train_weighted(problem(labels, seed), list(TASKS), seed, WeightingSpec(method, MAIN, options))
    updates = done.updates
    main = list(done.method.tasks).index(MAIN)
    norms, alpha, shares = np.asarray(updates.gradient_norms), np.asarray(updates.coefficients), updates.shares()
    auxiliary = [k for k in range(len(TASKS)) if k != main]
    series = {
        "steps": updates.steps,
        "gradient_norm_ratio": (norms[:, main] / norms[:, auxiliary].mean(axis=1)).tolist(),
        "coefficient_ratio": (alpha[:, main] / alpha[:, auxiliary].mean(axis=1)).tolist(),
        "main_share": shares[:, main].tolist(),
        "norm_share": (norms[:, main] / norms.sum(axis=1)).tolist(),
    }
    if done.history is not None:
        series["main_preference"] = [p[main] for p in done.history.preferences]
        series["preference_steps"] = done.history.steps
    quarters = [min(len(updates.steps) - 1, round(q * (len(updates.steps) - 1))) for q in (0, 0.25, 0.5, 0.75, 1)]
    return {
        "test_accuracy": done.result.test_metric[MAIN],
        "steps": done.result.steps,
        "at_quarters": {key: [series[key][i] for i in quarters]
                        for key in ("steps", "gradient_norm_ratio", "coefficient_ratio", "main_share", "norm_share")},
        "series": series,
    }  # fmt: skip


def plot(runs: dict, labels: int, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    colours = {"nash-mtl": "tab:blue", "auxinash": "tab:red"}
    for seed, by_method in runs.items():
        for method, record in by_method.items():
            s = record["series"]
            label = method if seed == "0" else None
            axes[0].plot(s["steps"], s["gradient_norm_ratio"], color=colours[method], lw=1, label=label)
            axes[1].plot(s["steps"], s["main_share"], color=colours[method], lw=1, label=label)
            axes[1].plot(s["steps"], s["norm_share"], color=colours[method], lw=1, ls=":",
                         label=None if label is None else f"{method}: share under LS weights")  # fmt: skip
            if "main_preference" in s:
                axes[2].plot(s["preference_steps"], s["main_preference"], color=colours[method], lw=1, label=label)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("‖g_main‖ / mean auxiliary ‖g‖")
    axes[1].axhline(1 / len(TASKS), color="grey", lw=0.8, ls="--")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("main task's share of the update")
    axes[2].axhline(1 / len(TASKS), color="grey", lw=0.8, ls="--")
    axes[2].set_ylabel("AuxiNash's preference for the main task")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    fig.suptitle(f"MNIST parity from {labels} labels: bargaining keeps the memorised main task's share", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", NearStationaryWarning)
    runs: dict = {}
    for seed in range(args.seeds):
        for method in METHODS:
            record = runs.setdefault(str(seed), {})[method] = trace(args.labels, seed, method)
            q = record["at_quarters"]
            print(f"seed {seed} {method:9s} acc {record['test_accuracy']:.4f} steps {record['steps']} "
                  f"norm ratio {np.round(q['gradient_norm_ratio'], 4)} main share {np.round(q['main_share'], 3)} "
                  f"LS share {np.round(q['norm_share'], 4)}", flush=True)  # fmt: skip
    write_result(NAME, {"description": __doc__.split("\n\n")[0], "labels": args.labels, "tasks": list(TASKS),
                        "main": MAIN, "runs": runs})  # fmt: skip
    plot(runs, args.labels, RESULTS / f"{NAME}.png")


if __name__ == "__main__":
    main()
