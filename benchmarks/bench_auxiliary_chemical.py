"""Experiment 3: auxiliary learning on real data — one Chemical molecule as the main task, the other
nine as auxiliaries, trained with `taskrel.train.Trainer`.

Methods: the main task alone (STL), linear scalarisation, Nash-MTL and AuxiNash with learned
preferences (reference defaults; meta loss = main-task loss on another random training batch),
each over several seeds with the Trainer's protocol (SGD 1e-3 / momentum 0.9, batch 264 per task,
class-balanced upsampling, capped at --max-steps), early stopping and the restored weights driven by
the main task's validation loss alone (`Trainer(monitor=[main])`, what auxiliary learning selects
on). Reported: the main task's test loss (BCE) and accuracy, and Δ% vs STL with the AuxiNash paper's
sign convention (negative = better than STL): Δ%loss = 100 (L − L_STL)/L_STL,
Δ%acc = −100 (A − A_STL)/A_STL.

Run: TASKREL_DATA=../shared/external_data nice python benchmarks/bench_auxiliary_chemical.py [--main 55] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from taskrel.data import CHEMICAL_TASKS, load_chemical
from taskrel.models import loss_function, mlp_model
from taskrel.train import Trainer
from taskrel.train.config import TrainConfig
from taskrel.weighting import AuxiNash, NearStationaryWarning

from common import auxiliary_weighting, write_result

METHODS = ("stl", "ls", "nash_mtl", "auxinash")


def run(method: str, dataset, main: str, seed: int, config: TrainConfig) -> dict:
    # The Trainer keeps tasks in dataset order; the weighting method sees them in that order too.
    group = [main] if method == "stl" else list(dataset.task_names)
    model = mlp_model(group, dataset.n_features, config.hidden, seed=seed)
    loss_fn = loss_function(dataset.kind)
    train = dataset.task(main).train
    x_main, y_main = torch.from_numpy(train.x), torch.from_numpy(train.y)
    generator = torch.Generator().manual_seed(seed)

    def main_loss_on_fresh_batch() -> torch.Tensor:
        rows = torch.randperm(len(y_main), generator=generator)[: config.batch_size]
        return loss_fn(model(x_main[rows], main), y_main[rows])

    weighting = auxiliary_weighting(method, group, main_loss_on_fresh_batch)
    start = time.perf_counter()
    result = Trainer(dataset, group, config, seed=seed, weighting=weighting, model=model, monitor=[main]).fit()
    out = {
        "seed": seed,
        "test_loss": result.test_loss[main],
        "test_accuracy": result.test_metric[main],
        "selected_epoch": result.best_epoch,
        "steps": result.steps,
        "seconds": time.perf_counter() - start,
    }
    if isinstance(weighting, AuxiNash):
        shares = weighting.preferences / len(group)
        out["final_preferences"] = dict(zip(weighting.tasks, shares.tolist(), strict=True))
    return out


def plot(summary: dict, main: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in (
        (axes[0], "delta_pct_loss", "Δ% test loss vs STL"),
        (axes[1], "delta_pct_accuracy", "Δ% test accuracy vs STL (sign: lower better)"),
    ):
        names = [m for m in METHODS if m != "stl"]
        means = [summary[m][key]["mean"] for m in names]
        stds = [summary[m][key]["std"] for m in names]
        ax.bar(names, means, yerr=stds, color=["tab:gray", "tab:red", "tab:blue"])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(label)
    fig.suptitle(f"Chemical: main task {main}, nine molecules as auxiliaries (negative = better than STL)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main", default="55", choices=CHEMICAL_TASKS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=6000)
    args = parser.parse_args()
    warnings.simplefilter("ignore", NearStationaryWarning)
    dataset = load_chemical()
    config = TrainConfig(max_steps=args.max_steps)
    runs = {m: [] for m in METHODS}
    for seed in range(args.seeds):
        for method in METHODS:
            runs[method].append(run(method, dataset, args.main, seed, config))
            r = runs[method][-1]
            print(
                f"seed {seed} {method:9s} loss {r['test_loss']:.4f} acc {r['test_accuracy']:.4f} "
                f"steps {r['steps']} {r['seconds']:.0f} s",
                flush=True,
            )
    summary = {}
    for method, seed_runs in runs.items():
        stl = runs["stl"]
        d_loss = [100 * (r["test_loss"] - s["test_loss"]) / s["test_loss"] for r, s in zip(seed_runs, stl, strict=True)]
        d_acc = [
            -100 * (r["test_accuracy"] - s["test_accuracy"]) / s["test_accuracy"]
            for r, s in zip(seed_runs, stl, strict=True)
        ]
        summary[method] = {
            "test_loss_mean": float(np.mean([r["test_loss"] for r in seed_runs])),
            "test_accuracy_mean": float(np.mean([r["test_accuracy"] for r in seed_runs])),
            "delta_pct_loss": {"mean": float(np.mean(d_loss)), "std": float(np.std(d_loss, ddof=1))},
            "delta_pct_accuracy": {"mean": float(np.mean(d_acc)), "std": float(np.std(d_acc, ddof=1))},
        }
    path = write_result(
        f"auxiliary_chemical_{args.main}",
        {
            "description": f"Chemical main task {args.main} with the other nine molecules as auxiliary tasks",
            "config": config.to_dict(),
            "seeds": args.seeds,
            "summary": summary,
            "runs": runs,
        },
    )
    plot(summary, args.main, path.with_suffix(".png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
