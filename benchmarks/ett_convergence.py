"""Are ETTh1's single-channel forecasters trained to convergence? Learning curves of every channel.

Each channel is trained alone (seed 0) with the `ett` problem's protocol (Adam 5e-4, 256 windows
per step, early stopping after 5 epochs without a better validation MSE) and again with a patience
of 15 epochs, to show that the shorter patience stops at the same minimum. For context, two
references on the same windows: persistence (every future hour = the last observed value) and the
protocol's default single-input model (an MLP over the flattened window without the forecaster's
last-value level), both trained the same way.

    TASKREL_DATA=../shared/external_data python benchmarks/ett_convergence.py
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from taskrel.problems.builtin import ETT_CONFIG, ETT_HIDDEN, ett
from taskrel.problems.torch_problem import TorchProblem

from common import RESULTS, write_result


def main() -> None:
    problem = ett()
    variants = {
        "ett protocol (patience 5)": problem,
        "patience 15": problem.with_config(patience=15),
        "MLP without level (patience 5)": TorchProblem(
            problem.data, None, name="etth1-mlp", loss="mse", config=replace(problem.config, hidden=(ETT_HIDDEN,))
        ),
    }
    runs = {}
    for label, variant in variants.items():
        for task in problem.tasks:
            result = variant.train([task], 0)
            runs[(label, task)] = result
            print(
                f"{label:32s} {task:5s}: {result.epochs:3d} epochs, best {result.best_epoch:3d}, "
                f"val {result.val_loss[task]:.4f}, test {result.test_loss[task]:.4f}, {result.seconds:.1f} s",
                flush=True,
            )
    persistence = {}
    for which in ("val", "test"):
        split = problem.data.split(which)
        last = split.x[:, -1, :]  # (n, 7)
        persistence[which] = ((split.y - last[:, :, None]) ** 2).mean(axis=(0, 2))
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for k, (ax, task) in enumerate(zip(axes.ravel(), problem.tasks, strict=False)):
        for (label, _), style in zip(variants.items(), ("-", "--", ":"), strict=True):
            result = runs[(label, task)]
            epochs = [h["epoch"] for h in result.history]
            ax.plot(epochs, [h["val_loss"][task] for h in result.history], style, label=label)
            ax.plot(result.best_epoch, result.history[result.best_epoch]["val_loss"][task], "o",
                    color=ax.lines[-1].get_color())  # fmt: skip
        ax.axhline(persistence["val"][k], color="grey", lw=0.8, ls="-.", label="persistence")
        ax.set_title(task)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation MSE (standardised)")
    axes[0, 0].legend(fontsize=7)
    axes[-1, -1].axis("off")
    fig.suptitle("ETTh1 single-channel learning curves, 96 → 24 (dot = restored best epoch)")
    fig.tight_layout()
    fig.savefig(RESULTS / "ett_convergence.png", dpi=120)
    table = {
        task: {
            **{
                label: {
                    "epochs": runs[(label, task)].epochs,
                    "best_epoch": runs[(label, task)].best_epoch,
                    "val_mse": runs[(label, task)].val_loss[task],
                    "test_mse": runs[(label, task)].test_loss[task],
                    "seconds": runs[(label, task)].seconds,
                }
                for label in variants
            },
            "persistence": {"val_mse": float(persistence["val"][k]), "test_mse": float(persistence["test"][k])},
        }
        for k, task in enumerate(problem.tasks)
    }
    mean_test = {label: float(np.mean([runs[(label, t)].test_loss[t] for t in problem.tasks])) for label in variants}
    mean_test["persistence"] = float(persistence["test"].mean())
    path = write_result(
        "ett_convergence",
        {"seed": 0, "config": ETT_CONFIG.to_dict(), "mean_test_mse_over_channels": mean_test, "channels": table},
    )
    print(f"mean test MSE over channels: {mean_test}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
