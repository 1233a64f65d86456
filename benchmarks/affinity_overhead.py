"""Wall time of training with each affinity collector, relative to the same run without one, and to each
method's cost floor, side by side in one run.

Two models:

* Chemical, all 10 tasks in the `Trainer` (one sub-batch of 264 rows per task, momentum SGD): every
  task's loss reads only its own rows;
* a single-input model: an ETTh1 forecaster built here (96 hours × 7 channels in, each channel's next
  24 hours out, a task each; MLP trunk, Adam) in a plain user loop, where every trial forward costs a
  whole batch.

The floor of a method is the training run plus only the forward passes its definition needs, made
through the same `ctx.evaluate` hook with the live parameters (so with none of the trial bookkeeping):
TAG, K forwards of all tasks' rows per step; PTG, one forward of the two members' rows per pair and
one of j's rows per reference (single input: one whole-batch forward per pair and per reference).
"floor" makes them one call each; "floor … batched" groups them the way the collector groups its
trials (one vmap call for TAG; per target for PTG), which removes per-call overhead the floor pays.
ETAP's aim is a ratio to plain training. Collectors never change training, so every run follows the
same trajectory and the sampled / every-k modes are compared with the full matrix of the same run
(Pearson r over the off-diagonal entries). Per collected step, the batched (vmap) and looped trial
evaluations are timed on one batch. Methods are interleaved within each repeat; medians are reported.
Run from the repository root (``--device cuda`` on a GPU; the clocks then wait for the device):

    python benchmarks/affinity_overhead.py --epochs 20 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from taskrel.affinity import EtapAffinity, PtgTransferGain, TagAffinity
from taskrel.data import load_chemical
from taskrel.models import MultiTaskModel
from taskrel.train import Callback, StepContext, TrainConfig, Trainer, TrialEvaluator

from common import RESULTS, write_result

FULL = {  # label -> collector factory; the timed methods
    "none": lambda: None,
    "etap": lambda: EtapAffinity(weighting="steps"),
    "etap+momentum": lambda: EtapAffinity(momentum=True, weighting="steps"),
    "tag": TagAffinity,
    "ptg": PtgTransferGain,
}
MODES = {  # label -> (full method, collector factory): the cheaper collection modes
    "tag sample=1/2": ("tag", lambda: TagAffinity(sample=0.5)),
    "tag sample=1/5": ("tag", lambda: TagAffinity(sample=0.2)),
    "tag every=4": ("tag", lambda: TagAffinity(every=4)),
    "ptg sample=1/3": ("ptg", lambda: PtgTransferGain(sample=1 / 3)),
    "ptg sample=1/10": ("ptg", lambda: PtgTransferGain(sample=0.1)),
    "ptg every=3": ("ptg", lambda: PtgTransferGain(every=3)),
    "ptg every=10": ("ptg", lambda: PtgTransferGain(every=10)),
}


class Floor(Callback):
    """Only the forward passes that `method`'s definition needs per step, with the live parameters.

    ``batched=False``: one `ctx.evaluate` call per forward; ``batched=True``: the same forwards grouped as
    the collector groups its trials, the live parameters stacked (so all but the trial bookkeeping).
    """

    def __init__(self, method: str, batched: bool) -> None:
        self.method, self.batched = method, batched

    def on_step(self, ctx: StepContext) -> None:
        k = len(ctx.tasks)
        n = k if self.method == "tag" else k * (k - 1) // 2 + k  # trial sets per step

        def stacked(count):
            return {"shared": [p.detach().expand(count, *p.shape) for p in ctx.shared_parameters]}

        if self.method == "tag" or not ctx.evaluator.separable:
            if self.batched:
                ctx.evaluate(**stacked(n))
            else:
                for _ in range(n):
                    ctx.evaluate()
        elif self.batched:  # per target j: its K − 1 pairs and its reference, on j's rows
            for j in range(k):
                ctx.evaluate(**stacked(k), tasks=(j,))
        else:  # per pair the two members' rows, per reference one task's rows
            for i in range(k):
                for j in range(i + 1, k):
                    ctx.evaluate(tasks=(i, j))
                ctx.evaluate(tasks=(i,))


def factories() -> dict:
    labels = {**FULL}
    for method in ("tag", "ptg"):
        labels[f"floor {method}"] = lambda method=method: Floor(method, batched=False)
        labels[f"floor {method} batched"] = lambda method=method: Floor(method, batched=True)
    return {**labels, **{label: make for label, (_, make) in MODES.items()}}


def synchronized() -> float:
    """`time.perf_counter()` once the GPU, if any, has finished its queued work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def off_diagonal_r(a: np.ndarray, b: np.ndarray) -> float:
    mask = ~np.eye(len(a), dtype=bool)
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def summarise(seconds: dict, matrices: dict) -> dict:
    median = {label: statistics.median(values) for label, values in seconds.items()}
    out = {}
    for label, values in seconds.items():
        entry = {"seconds": values, "median_seconds": median[label], "ratio_vs_plain": median[label] / median["none"]}
        method = label if label in ("tag", "ptg") else MODES.get(label, (None,))[0]
        if method is not None:
            entry["ratio_vs_floor"] = median[label] / median[f"floor {method}"]
            entry["ratio_vs_batched_floor"] = median[label] / median[f"floor {method} batched"]
        if label in MODES:
            entry["r_with_full"] = off_diagonal_r(matrices[label], matrices[method])
        out[label] = entry
    return out


# ---------------------------------------------------------------------------------------------- Chemical
def chemical(args) -> dict:
    dataset = load_chemical()
    config = TrainConfig(max_epochs=args.epochs, patience=args.epochs + 1, max_steps=10**9)
    makers = factories()
    seconds: dict[str, list[float]] = {label: [] for label in makers}
    matrices: dict[str, np.ndarray] = {}
    steps = 0
    warm = TrainConfig(max_epochs=1)
    Trainer(dataset, dataset.task_names, warm, callbacks=[TagAffinity()], device=args.device).fit()  # warm-up
    for repeat in range(args.repeats):
        for label, make in makers.items():
            collector = make()
            callbacks = [] if collector is None else [collector]
            trainer = Trainer(
                dataset, dataset.task_names, config, seed=args.seed, callbacks=callbacks, device=args.device
            )
            result = trainer.fit()
            seconds[label].append(result.seconds)
            if hasattr(collector, "matrix"):
                matrices[label] = collector.matrix("steps").values
            steps = result.steps
            print(f"chemical repeat {repeat} {label:16s} {result.seconds:7.3f} s", flush=True)
    return {
        "tasks": len(dataset.tasks),
        "epochs": args.epochs,
        "steps": steps,
        "per_step_ms": step_times(trainer),
        "results": summarise(seconds, matrices),
    }


def step_times(trainer: Trainer) -> dict:
    """Per collected step on one Chemical batch: TAG and PTG with vmap and with the loop, and one forward."""
    rows = next(iter(trainer.plan.epoch()))
    index = torch.from_numpy(trainer.offsets + np.stack(rows)).to(trainer.device)
    inputs = trainer.train_x.index_select(0, index.reshape(-1)).view(*index.shape, -1)
    targets = trainer.train_y.index_select(0, index.reshape(-1)).view(index.shape)

    def context(mode):
        losses = trainer._losses((inputs, targets))
        evaluator = TrialEvaluator(
            trainer.model, lambda m, t: trainer._losses((inputs, targets), m, t), separable=True, mode=mode
        )
        return StepContext(
            trainer.tasks, list(losses), trainer._shared, trainer.optimizer, evaluator,
            task_parameters=[trainer.model.task_parameters(t) for t in trainer.tasks],
        )  # fmt: skip

    return per_step(context)


def per_step(context) -> dict:
    times: dict[str, list[float]] = {}
    contexts = {mode: context(mode) for mode in ("vmap", "loop")}
    for ctx in contexts.values():
        _ = ctx.task_gradients, ctx.head_gradients
    for _ in range(7):
        for mode, ctx in contexts.items():
            for name, make in (("tag", TagAffinity), ("ptg", PtgTransferGain)):
                started = synchronized()
                make().collect(ctx)
                times.setdefault(f"{name} {mode}", []).append(synchronized() - started)
        started = synchronized()
        contexts["loop"].evaluate()
        times.setdefault("one forward", []).append(synchronized() - started)
    return {label: 1e3 * statistics.median(values) for label, values in times.items()}


# ---------------------------------------------------------------------------------------------- ETTh1
CHANNELS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


def ett_windows(lookback: int = 96, horizon: int = 24, train_rows: int = 12 * 30 * 24):
    """Standardised ETTh1 training windows: x (n, lookback · 7), y (n, 7, horizon)."""
    path = Path(os.environ.get("TASKREL_DATA", "../shared/external_data")) / "ett" / "ETTh1.csv"
    series = pd.read_csv(path, usecols=list(CHANNELS)).to_numpy(np.float32)[:train_rows]
    series = (series - series.mean(axis=0)) / series.std(axis=0)
    starts = np.arange(0, len(series) - lookback - horizon, 4)
    x = np.stack([series[s : s + lookback].reshape(-1) for s in starts])
    y = np.stack([series[s + lookback : s + lookback + horizon].T for s in starts])
    return torch.from_numpy(x), torch.from_numpy(y)


def ett_model(inputs: int, horizon: int, seed: int) -> MultiTaskModel:
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(inputs, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
    return MultiTaskModel(trunk, {c: nn.Linear(32, horizon) for c in CHANNELS})


def ett_losses(x, y):
    def losses(module, tasks):
        features = module.trunk(x)
        return torch.stack([((module.head(CHANNELS[k])(features) - y[:, k]) ** 2).mean() for k in tasks])

    return losses


def ett_train(x, y, collector, steps: int, batch: int, seed: int) -> float:
    """A user's own loop: losses → collector → backward of the sum → Adam step; returns seconds."""
    started = synchronized()
    model = ett_model(x.shape[1], y.shape[2], seed).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    shared, heads = model.shared_parameters(), [model.task_parameters(c) for c in CHANNELS]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    everything = tuple(range(len(CHANNELS)))
    for step in range(steps):
        rows = order[(step * batch) % (len(x) - batch) :][:batch]
        losses_of = ett_losses(x[rows], y[rows])
        optimizer.zero_grad()
        losses = losses_of(model, everything)
        if collector is not None:
            evaluator = TrialEvaluator(model, losses_of)
            collector.on_step(StepContext(CHANNELS, list(losses), shared, optimizer, evaluator, task_parameters=heads))
        losses.sum().backward()
        optimizer.step()
    return synchronized() - started


def ett(args) -> dict:
    x, y = (t.to(args.device) for t in ett_windows())
    makers = factories()
    seconds: dict[str, list[float]] = {label: [] for label in makers}
    matrices: dict[str, np.ndarray] = {}
    ett_train(x, y, TagAffinity(), 5, args.batch, args.seed)  # warm-up
    for repeat in range(args.repeats):
        for label, make in makers.items():
            collector = make()
            seconds[label].append(ett_train(x, y, collector, args.ett_steps, args.batch, args.seed))
            if hasattr(collector, "matrix"):
                matrices[label] = collector.matrix("steps").values
            print(f"etth1 repeat {repeat} {label:16s} {seconds[label][-1]:7.3f} s", flush=True)
    rows = torch.arange(args.batch, device=x.device)
    losses_of = ett_losses(x[rows], y[rows])
    model = ett_model(x.shape[1], y.shape[2], args.seed).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def context(mode):
        losses = losses_of(model, tuple(range(len(CHANNELS))))
        evaluator = TrialEvaluator(model, losses_of, mode=mode)
        heads = [model.task_parameters(c) for c in CHANNELS]
        return StepContext(
            CHANNELS, list(losses), model.shared_parameters(), optimizer, evaluator, task_parameters=heads
        )

    return {
        "tasks": len(CHANNELS),
        "windows": len(x),
        "batch": args.batch,
        "steps": args.ett_steps,
        "per_step_ms": per_step(context),
        "results": summarise(seconds, matrices),
    }


def plot(payload: dict, name: str) -> None:
    fig, grid = plt.subplots(2, 2, figsize=(11, 8))
    for ax, name in zip(grid[0], ("chemical", "etth1"), strict=True):
        results = payload[name]["results"]
        labels = [label for label in results if label in FULL or label.startswith("floor")]
        ratios = [results[label]["ratio_vs_plain"] for label in labels]
        bars = ax.bar(labels, ratios, color=["#999999" if label.startswith("floor") else "#1f77b4" for label in labels])
        ax.bar_label(bars, [f"{r:.2f}×" for r in ratios], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("wall time / plain training")
        ax.set_title(f"{name}: {payload[name]['tasks']} tasks, {payload[name]['steps']} steps")
        ax.tick_params(axis="x", rotation=35, labelsize=8)
    for ax, name in zip(grid[1], ("chemical", "etth1"), strict=True):  # cost against agreement with the full matrix
        results = payload[name]["results"]
        for method, colour in (("tag", "#1f77b4"), ("ptg", "#d62728")):
            labels = [method, *(label for label, (full, _) in MODES.items() if full == method)]
            cost = [results[label]["ratio_vs_plain"] for label in labels]
            r = [results[label].get("r_with_full", 1.0) for label in labels]
            ax.scatter(cost, r, color=colour, label=method.upper())
            for label, x, y in zip(labels, cost, r, strict=True):
                ax.annotate(label.removeprefix(method).strip() or "full", (x, y), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")  # fmt: skip
        ax.set_xlabel("wall time / plain training")
        ax.set_ylabel("Pearson r with the full matrix (off-diagonal)")
        ax.set_title(f"{name}: cheaper collection modes")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20, help="Chemical: epochs per run (6 steps each)")
    parser.add_argument("--ett-steps", type=int, default=100, help="ETTh1: steps per run")
    parser.add_argument("--batch", type=int, default=64, help="ETTh1: windows per step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (timings then wait for the device)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    payload = {
        "threads": 1,
        "device": args.device,
        "repeats": args.repeats,
        "chemical": chemical(args),
        "etth1": ett(args),
    }
    name = "affinity_overhead" if args.device == "cpu" else f"affinity_overhead_{args.device}"
    path = write_result(name, payload)
    plot(payload, name)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
