"""Auxiliary learning on ETTh1: one channel is the main task, the other six are auxiliaries.

Methods, all on the `ett` problem (`TorchProblem.trainer` with ``monitor=[main]``: early stopping and
the restored weights follow the main channel's validation MSE alone): the main channel alone (STL),
linear scalarisation of all seven losses (LS), Nash-MTL, and AuxiNash with preferences learned from
the main channel's MSE on a fresh training batch (the reference defaults). Reported: the main
channel's test MSE (standardised) per seed, Δ% = 100 (L − L_STL) / L_STL (negative = better than
STL), and AuxiNash's preferences after every epoch (share p_k / Σp, plotted for the first main).

    TASKREL_DATA=../shared/external_data python benchmarks/ett_auxiliary.py --main OT [--main HUFL ...]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from taskrel.problems.builtin import ett
from taskrel.train.callbacks import Callback
from taskrel.weighting import AuxiNash, NearStationaryWarning

from common import RESULTS, auxiliary_weighting, write_result

METHODS = ("stl", "ls", "nash_mtl", "auxinash")


class PreferenceLog(Callback):
    """Records AuxiNash's preference shares after every epoch."""

    def __init__(self, method: AuxiNash) -> None:
        self.method = method
        self.shares: list[list[float]] = []

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.shares.append((self.method.preferences / self.method.n_tasks).tolist())


def run(problem, method: str, main: str, seed: int) -> dict:
    group = [main] if method == "stl" else list(problem.tasks)
    train = problem.data.train
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y[:, problem.tasks.index(main)])
    generator = torch.Generator().manual_seed(seed)
    trainer = None

    def main_loss_on_fresh_batch() -> torch.Tensor:
        rows = torch.randperm(len(x), generator=generator)[: problem.config.batch_size]
        return (trainer.model(x[rows], main) - y[rows]).pow(2).mean()

    weighting = auxiliary_weighting(method, group, main_loss_on_fresh_batch)
    log = [PreferenceLog(weighting)] if isinstance(weighting, AuxiNash) else []
    trainer = problem.trainer(group, seed, weighting=weighting, monitor=[main], callbacks=log)
    result = trainer.fit()
    out = {
        "seed": seed,
        "test_mse": result.test_loss[main],
        "val_mse": result.val_loss[main],
        "best_epoch": result.best_epoch,
        "steps": result.steps,
        "seconds": result.seconds,
    }
    if log:
        out["preference_shares"] = {"tasks": list(weighting.tasks), "by_epoch": log[0].shares}
    return out


def plot(results: dict, first: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mains = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.25
    for j, method in enumerate(("ls", "nash_mtl", "auxinash")):
        means = [results[m]["summary"][method]["delta_pct"]["mean"] for m in mains]
        stds = [results[m]["summary"][method]["delta_pct"]["std"] for m in mains]
        axes[0].bar(np.arange(len(mains)) + (j - 1) * width, means, width, yerr=stds, label=method)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_xticks(range(len(mains)), mains)
    axes[0].set_xlabel("main channel (the other six are auxiliaries)")
    axes[0].set_ylabel("Δ% test MSE vs STL (negative = better)")
    axes[0].legend()
    seed_runs = results[first]["runs"]["auxinash"]
    tasks = seed_runs[0]["preference_shares"]["tasks"]
    for k, task in enumerate(tasks):
        for i, r in enumerate(seed_runs):
            shares = np.asarray(r["preference_shares"]["by_epoch"])
            axes[1].plot(np.arange(1, len(shares) + 1), shares[:, k], color=f"C{k}", alpha=0.8,
                         lw=2.5 if task == first else 1.2, label=task if i == 0 else None)  # fmt: skip
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("preference share p_k / Σp")
    axes[1].set_title(f"AuxiNash learned preferences, main = {first} (one line per seed)")
    axes[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main", action="append", help="main channel (repeatable; default OT)")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore", NearStationaryWarning)
    problem = ett()
    mains = args.main or ["OT"]
    results = {}
    for main_task in mains:
        runs = {m: [] for m in METHODS}
        for seed in range(args.seeds):
            for method in METHODS:
                runs[method].append(run(problem, method, main_task, seed))
                r = runs[method][-1]
                print(f"main {main_task} seed {seed} {method:9s} test MSE {r['test_mse']:.4f} "
                      f"epoch {r['best_epoch']} {r['seconds']:.0f} s", flush=True)  # fmt: skip
        summary = {}
        for method, seed_runs in runs.items():
            stl = runs["stl"]
            delta = [100 * (r["test_mse"] - s["test_mse"]) / s["test_mse"] for r, s in zip(seed_runs, stl, strict=True)]
            spread = float(np.std(delta, ddof=1)) if len(delta) > 1 else 0.0
            summary[method] = {
                "test_mse_mean": float(np.mean([r["test_mse"] for r in seed_runs])),
                "delta_pct": {"mean": float(np.mean(delta)), "std": spread},
            }
        results[main_task] = {"summary": summary, "runs": runs}
    name = "ett_auxiliary" if mains == ["OT"] else "ett_auxiliary_" + "_".join(mains)
    path = write_result(name, {"problem": problem.fingerprint(), "seeds": args.seeds, "mains": results})
    plot(results, mains[0], RESULTS / f"{name}.png")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
