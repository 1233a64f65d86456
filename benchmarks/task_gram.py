"""ETAP's Gram matrix on a single-input model: the generic engine against the linear-layer routes.

ETAP without momentum needs only G Gᵀ, the Gram matrix of the per-task gradients on the shared
parameters. On an ETTh1 forecaster (96 hours × 7 channels in, MLP trunk 672 → 64 → 32, Adam; each
task is one channel over one block of the next 24 hours, so K = 7, 14 or 28 tasks read the same
rows), per training step and side by side:

* ``plain``: forward and backward of the summed loss (no collector);
* ``generic``: plain, plus the per-task gradients from the graph (`taskrel.gradients.task_gradients`,
  batched backward) and G Gᵀ: what a user loop gets;
* ``gradients`` / ``gram``: the two routes of `taskrel.gradients.shared_input_backward` (one backward
  batched over tasks to the linear layers' outputs; then the per-task weight gradients, or the Gram
  matrix directly from the layers' inputs without forming them);
* ``auto``: the route the single-input trainer takes (`taskrel.gradients.cheaper_route`).

Each variant's G Gᵀ is checked against the generic one (largest relative difference reported). Then
whole training runs of `SharedInputTrainer` with `EtapAffinity` against the same runs without it.
Medians over interleaved repeats. Run from the repository root:

    python benchmarks/task_gram.py
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from affinity_overhead import CHANNELS, ett_windows, synchronized
from taskrel import gradients as engine
from taskrel.affinity import EtapAffinity
from taskrel.data.single import SingleInputDataset
from taskrel.models import MultiTaskModel
from taskrel.train import TrainConfig
from taskrel.train.single_input import SharedInputTrainer

from common import write_result


def dataset(blocks: int) -> SingleInputDataset:
    """ETTh1 windows, a task per channel and block of 24 / `blocks` hours; 60 / 20 / 20 split in time."""
    x, y = ett_windows()
    n, horizon = len(x), y.shape[2] // blocks
    y = y.reshape(n, len(CHANNELS) * blocks, horizon).numpy()
    tasks = [f"{c}@{b}" for c in CHANNELS for b in range(blocks)]
    cut = [int(0.6 * n), int(0.8 * n)]
    parts = [(x[a:b].numpy(), y[a:b]) for a, b in ((0, cut[0]), (cut[0], cut[1]), (cut[1], n))]
    return SingleInputDataset(f"etth1-{len(tasks)}", tasks, *parts)


def model(tasks, horizon: int, seed: int) -> MultiTaskModel:
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(96 * 7, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
    return MultiTaskModel(trunk, {t: nn.Linear(32, horizon) for t in tasks})


def trainer(data, callbacks, batch: int, epochs: int, device: str, seed: int = 0) -> SharedInputTrainer:
    horizon = data.split("train").y.shape[2]
    config = TrainConfig(optimizer="adam", lr=1e-3, batch_size=batch, max_epochs=epochs, patience=epochs + 1)
    network = model(data.task_names, horizon, seed)
    return SharedInputTrainer(data, data.task_names, network, config, callbacks=callbacks, device=device)


def per_step(data, batch: int, repeats: int, device: str) -> dict:
    """Milliseconds per step of each variant (median over `repeats` interleaved steps) and G Gᵀ agreement."""
    t = trainer(data, [EtapAffinity(weighting="steps")], batch, 1, device)
    batches = list(t._epoch())
    layers = engine.shared_linear_layers(t.model, t._shared)
    k = len(t.tasks)

    def plain(b):
        t._losses(b).sum().backward()

    def generic(b):
        losses = t._losses(b)
        grams.append(engine.gram(engine.task_gradients(list(losses), t._shared)))
        losses.sum().backward()

    def route(name):
        def run(b):
            with engine.LinearCapture(layers) as capture:
                losses = t._losses(b)
            grams.append(engine.shared_input_backward(
                losses, capture, t._shared, t._heads, t.tasks, gram_only=True, route=name
            ).gram)  # fmt: skip

        return run

    variants = {"plain": plain, "generic": generic, **{name: route(name) for name in ("gradients", "gram", "auto")}}
    seconds = {name: [] for name in variants}
    differences = {name: 0.0 for name in variants if name != "plain"}
    for step in range(repeats):
        b = batches[step % len(batches)]
        reference = None
        for name, run in variants.items():
            grams = []
            for p in t._params:
                p.grad = None
            started = synchronized()
            run(b)
            seconds[name].append(synchronized() - started)
            if name == "generic":
                reference = grams[0]
            elif grams:
                scale = reference.abs().max()
                differences[name] = max(differences[name], float((grams[0] - reference).abs().max() / scale))
    rows = len(batches[0][0])
    shapes = [(rows, m.in_features, m.out_features, m.bias is not None) for m in layers]
    costs = engine.gram_route_cost(k, shapes)
    ms = {name: 1e3 * statistics.median(values) for name, values in seconds.items()}
    return {
        "ms_per_step": ms,
        "ratio_vs_plain": {name: value / ms["plain"] for name, value in ms.items()},
        "auto_takes": engine.cheaper_route(k, shapes),
        "multiply_adds": costs,
        "max_relative_difference_vs_generic": differences,
    }


def training(data, batch: int, epochs: int, repeats: int, device: str) -> dict:
    """Whole `SharedInputTrainer` runs with and without `EtapAffinity` (medians over interleaved repeats)."""
    seconds = {"none": [], "etap": []}
    for _ in range(repeats):
        for name in seconds:
            callbacks = [EtapAffinity(weighting="steps")] if name == "etap" else []
            seconds[name].append(trainer(data, callbacks, batch, epochs, device).fit().seconds)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {"seconds": seconds, "median_seconds": median, "etap_ratio_vs_plain": median["etap"] / median["none"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4], help="horizon blocks: K = 7 × blocks")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256], help="rows per step")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per training run")
    parser.add_argument("--repeats", type=int, default=5, help="training runs per variant")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for blocks in args.blocks:
        data = dataset(blocks)
        for batch in args.batches:
            entry = {"tasks": len(data.task_names), "rows_per_step": batch}
            entry.update(per_step(data, batch, args.steps, args.device))
            entry["training"] = training(data, batch, args.epochs, args.repeats, args.device)
            results.append(entry)
            ratios = {name: round(r, 2) for name, r in entry["ratio_vs_plain"].items()}
            print(f"K={entry['tasks']:2d} rows={batch:3d} {ratios} fit ×{entry['training']['etap_ratio_vs_plain']:.2f}",
                  flush=True)  # fmt: skip
    name = "task_gram" if args.device == "cpu" else f"task_gram_{args.device}"
    print(f"wrote {write_result(name, {'threads': 1, 'device': args.device, 'results': results})}")


if __name__ == "__main__":
    main()
