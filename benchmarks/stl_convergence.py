"""Are single-task baselines trained to convergence? Learning curves of every Chemical task.

Each task is trained alone (seed 0) twice: with taskrel's protocol (patience of 20 epochs *and*
400 optimiser steps, no step cap below 30,000) and with ETAP's epoch-only patience of 20 epochs.
Small tasks have two batches per epoch, so epoch-only patience stops them after a few dozen
steps, near BCE = ln 2 (an under-trained reference inflates every gain measured against it).

    python benchmarks/stl_convergence.py
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from taskrel.data import load_chemical
from taskrel.train import TrainConfig, Trainer

from common import RESULTS, write_result

PROTOCOLS = {"taskrel": TrainConfig(), "epoch-only patience (ETAP)": TrainConfig(patience_steps=0)}


def main() -> None:
    dataset = load_chemical()
    runs = {}
    for label, config in PROTOCOLS.items():
        for task in dataset.task_names:
            result = Trainer(dataset, task, config, seed=0).fit()
            runs[(label, task)] = result
            print(
                f"{label:28s} {task}: {result.steps:6d} steps, val {result.val_loss[task]:.4f}, "
                f"test {result.test_loss[task]:.4f}",
                flush=True,
            )
    fig, axes = plt.subplots(2, 5, figsize=(15, 6), sharey=True)
    for ax, task in zip(axes.ravel(), dataset.task_names, strict=True):
        for (label, _), style in zip(PROTOCOLS.items(), ("-", "--"), strict=True):
            result = runs[(label, task)]
            steps = [h["step"] for h in result.history]
            ax.plot(steps, [h["val_loss"][task] for h in result.history], style, label=label)
            best = result.history[result.best_epoch]
            ax.plot(best["step"], best["val_loss"][task], "o", color=ax.lines[-1].get_color())
        ax.axhline(math.log(2), color="grey", lw=0.8, ls=":")
        ax.set_title(f"task {task} ({len(dataset.task(task).train)} train rows)")
        ax.set_xscale("log")
        ax.set_xlabel("optimiser step")
    axes[0, 0].set_ylabel("validation BCE")
    axes[1, 0].set_ylabel("validation BCE")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Chemical single-task learning curves (dot = restored best epoch; dotted = ln 2)")
    fig.tight_layout()
    fig.savefig(RESULTS / "stl_convergence.png", dpi=120)
    table = {
        task: {
            label: {
                "steps": runs[(label, task)].steps,
                "best_epoch": runs[(label, task)].best_epoch,
                "val_loss": runs[(label, task)].val_loss[task],
                "test_loss": runs[(label, task)].test_loss[task],
            }
            for label in PROTOCOLS
        }
        for task in dataset.task_names
    }
    path = write_result("stl_convergence", {"seed": 0, "tasks": table})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
