"""Training-step time: AuxiNash vs linear scalarisation (and Nash-MTL) on the same model and batches.

Two models: the Multi-MNIST LeNet (2 tasks, batch 128 of real two-digit images) and the Chemical MLP
(180→32→16, 10 tasks, 264 real rows per task). One step = forward, the method's backward, Adam step.
AuxiNash with learned preferences includes its meta step every 25 steps (amortised in the median
over a window of 100 steps). One torch thread; medians of 7 windows, taken round-robin over methods.

Run: TASKREL_DATA=../shared/external_data nice python benchmarks/bench_step_time.py
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import torch
from torch.nn import functional as F

from multimnist import LeNet, multimnist
from taskrel.data import load_chemical
from taskrel.models import chemical_model
from taskrel.train.loop import torch_threads
from taskrel.weighting import AuxiNash, LinearScalarisation, NashMTL, NearStationaryWarning

from common import write_result

WINDOW = 100
REPEATS = 7


def lenet_case():
    x, y, _, _ = multimnist(0)
    model = LeNet()
    rows = torch.arange(128)

    def losses():
        out = model(x[rows])
        return [F.cross_entropy(out[t], y[k, rows]) for k, t in enumerate(("left", "right"))]

    return "Multi-MNIST LeNet (K=2)", model, model.shared_parameters(), losses, ("left", "right")


def chemical_case():
    dataset = load_chemical()
    tasks = dataset.task_names
    model = chemical_model(tasks, seed=0)
    xs = [torch.from_numpy(t.train.x[:264]) for t in dataset.tasks]
    ys = [torch.from_numpy(t.train.y[:264]) for t in dataset.tasks]

    def losses():
        out = model.forward_tasks(dict(zip(tasks, xs, strict=True)))
        return [F.binary_cross_entropy_with_logits(out[t], y) for t, y in zip(tasks, ys, strict=True)]

    return "Chemical MLP (K=10)", model, model.shared_parameters(), losses, tasks


def window_seconds(model, shared, losses, method) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    for _ in range(WINDOW):
        optimizer.zero_grad()
        current = losses()
        if method is None:
            sum(current).backward()
        else:
            method.backward(current, shared)
        optimizer.step()
    return (time.perf_counter() - start) / WINDOW


def main() -> None:
    warnings.simplefilter("ignore", NearStationaryWarning)
    rows = []
    with torch_threads(1):
        for name, model, shared, losses, tasks in (lenet_case(), chemical_case()):
            methods = {
                "plain sum().backward()": lambda: None,
                "linear scalarisation": lambda t=tasks: LinearScalarisation(t),
                "Nash-MTL": lambda t=tasks: NashMTL(t),
                "AuxiNash, fixed p": lambda t=tasks: AuxiNash(t, np.linspace(2, 1, len(t))),
                "AuxiNash, learned p (meta step every 25)": lambda t=tasks, f=losses: AuxiNash(
                    t, meta_loss=lambda: f()[0]
                ),
            }
            times: dict[str, list[float]] = {label: [] for label in methods}
            for _ in range(REPEATS):  # round-robin, so a change in machine load hits every method alike
                for label, make in methods.items():
                    times[label].append(window_seconds(model, shared, losses, make()))
            for label, seconds in times.items():
                rows.append({"model": name, "method": label, "median_ms_per_step": 1e3 * float(np.median(seconds))})
                print(f"{name:26s} {label:42s} {rows[-1]['median_ms_per_step']:8.2f} ms/step", flush=True)
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"] and r["method"] == "linear scalarisation")
        row["relative_to_ls"] = row["median_ms_per_step"] / base["median_ms_per_step"]
    path = write_result(
        "step_time",
        {
            "description": "median time per training step (forward + weighting backward + Adam), one torch thread",
            "load_average_at_end": os.getloadavg(),
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
