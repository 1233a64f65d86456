"""Experiment 1: AuxiNash's illustrative linear-regression problem (main, helpful, harmful task).

Setting (AuxiNash paper, illustrative example): x ~ N(0, I₂), one shared linear map; main task
W* = (1, 1) with noise σ = 5, helpful auxiliary task W* with σ = 0.25, harmful auxiliary task
(−1, −4) with σ = 0.25; 1000 training samples, Adam(1e-2), batch 256, 1000 epochs, start
w = (4, −4). Methods: main task alone (STL), linear scalarisation, Nash-MTL, AuxiNash with learned
preferences (meta lr 5e-2, the `taskrel auxinash toy` default, and the reference's 5e-3).
Reported per seed: main-task test MSE on 10,000 fresh samples, final w, preference trajectories.

Run: python benchmarks/bench_auxinash_toy.py [--seeds 5] [--epochs 1000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from taskrel.choices import TOY_META_LR
from taskrel.weighting import NearStationaryWarning
from taskrel.weighting.toy import TASKS, toy_data, train_toy

from common import write_result

VARIANTS = {
    "stl": ("stl", None),
    "ls": ("ls", None),
    "nash_mtl": ("nash_mtl", None),
    "auxinash": ("auxinash", {"meta_lr": TOY_META_LR}),
    "auxinash_lr5e-3": ("auxinash", {"meta_lr": 5e-3}),
}


def plot(runs: dict, summary: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = dict(zip(TASKS, ("tab:blue", "tab:green", "tab:red"), strict=True))
    for seed_runs in runs["auxinash"]:
        steps = np.array(seed_runs["preference_steps"])
        prefs = np.array(seed_runs["preferences"])
        for k, task in enumerate(TASKS):
            left.plot(
                steps, prefs[:, k], color=colours[task], alpha=0.6, label=task if seed_runs["seed"] == 0 else None
            )
    left.set_xlabel("training step")
    left.set_ylabel("preference p (normalised to sum 1)")
    left.set_title(f"AuxiNash learned preferences ({len(runs['auxinash'])} seeds)")
    left.legend()
    names = list(summary)
    means = [summary[n]["main_test_mse_mean"] for n in names]
    stds = [summary[n]["main_test_mse_std"] for n in names]
    right.bar(names, means, yerr=stds, color="tab:gray")
    right.set_ylim(24, max(means) + 2)
    right.axhline(25.0, color="k", linestyle=":", label="noise floor σ² = 25")
    right.set_ylabel("main-task test MSE")
    right.set_title("main task (lower is better)")
    right.legend()
    right.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1000)
    args = parser.parse_args()
    warnings.simplefilter("ignore", NearStationaryWarning)  # 3 gradients in 2-D: Pareto-stationary regions
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for seed in range(args.seeds):
        data = toy_data(seed)
        for name, (method, options) in VARIANTS.items():
            start = time.perf_counter()
            run = train_toy(method, data, seed, epochs=args.epochs, auxinash_options=options)
            runs[name].append({"seed": seed, "seconds": time.perf_counter() - start, **vars(run)})
            print(f"seed {seed} {name:16s} main test MSE {run.main_test_mse:.3f}  w = {np.round(run.w, 3)}", flush=True)
    summary = {}
    for name, seed_runs in runs.items():
        mse = np.array([r["main_test_mse"] for r in seed_runs])
        summary[name] = {
            "main_test_mse_mean": float(mse.mean()),
            "main_test_mse_std": float(mse.std(ddof=1)) if len(mse) > 1 else 0.0,
            "w_error_mean": float(np.mean([np.hypot(r["w"][0] - 1, r["w"][1] - 1) for r in seed_runs])),
        }
        if seed_runs[0]["preferences"]:
            final = np.array([r["preferences"][-1] for r in seed_runs])
            summary[name]["final_preferences_mean"] = dict(zip(TASKS, final.mean(axis=0).tolist(), strict=True))
    wins = {
        base: int(
            sum(a["main_test_mse"] < b["main_test_mse"] for a, b in zip(runs["auxinash"], runs[base], strict=True))
        )
        for base in ("ls", "nash_mtl", "stl")
    }
    path = write_result(
        "auxinash_toy",
        {
            "description": "AuxiNash illustrative problem: main + helpful + harmful task, shared 2-D linear map",
            "epochs": args.epochs,
            "seeds": args.seeds,
            "auxinash_beats": {base: f"{n}/{args.seeds} seeds" for base, n in wins.items()},
            "summary": summary,
            "runs": runs,
        },
    )
    plot(runs, summary, path.with_suffix(".png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
